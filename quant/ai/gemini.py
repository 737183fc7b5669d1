"""News analysis by Google Gemini through the ``google-genai`` SDK (``domain.md`` §6).

One ``generateContent`` call per :meth:`GeminiAnalyzer.analyze`: the prompt of
:func:`quant.ai.prompt.build_prompt`, JSON output constrained by
``Analysis.model_json_schema()`` (``responseMimeType: application/json`` +
``responseJsonSchema``), the answer validated with :class:`~quant.ai.models.Analysis`.

With google-genai 3.4.0 and an API key the request is
``POST {base_url}/v1/models/{model}:generateContent`` with the key in the ``x-goog-api-key``
header (``base_url`` defaults to ``https://generativelanguage.googleapis.com/``). The API
version is pinned here (:data:`API_VERSION`) and Vertex AI is switched off explicitly, so the
SDK's ``GOOGLE_GENAI_API_VERSION`` / ``GOOGLE_GENAI_USE_VERTEXAI`` environment variables cannot
change where requests go.

**No retries here.** The SDK's own retry is off (``HttpRetryOptions(attempts=1)``): exactly one
HTTP request per call. quantbeat's tasks own retries and backoff, driven by the exception type:

=====================================================  ========================================
what happened                                          raised
=====================================================  ========================================
HTTP 429                                               :class:`~quant.errors.RateLimited`
HTTP 408, 500, 502, 503, 504 (any 5xx but 501)         :class:`~quant.errors.ServiceUnavailable`
timeout, connection refused/reset, protocol error      :class:`~quant.errors.ServiceUnavailable`
HTTP 400, 401, 403, 404, 501, any other status         :class:`~quant.ai.errors.AiRequestRejected`
body not JSON, no candidate, no text, finishReason     :class:`~quant.ai.errors.InvalidAiOutput`
other than STOP, JSON not matching the schema
a ``base_url`` with an unsupported scheme              :class:`~quant.errors.ConfigError`
=====================================================  ========================================

``retry_after`` (seconds) on the transient errors comes from the response's ``Retry-After``
header (delta-seconds or an HTTP date), read from ``APIError.response.headers`` — the SDK keeps
the raw ``httpx``/``httpx2`` response on its ``ClientError``/``ServerError``; without the
header, from a ``google.rpc.RetryInfo`` ``retryDelay`` in the error body's ``details`` (the
Gemini API sends one with quota errors); else ``None``.

Messages name the model, the HTTP code and status, and a short excerpt (≤ 200 characters) of
the provider's message or of the bad output; never the API key (masked out of any excerpt)
and never the prompt (a provider message quoting 24+ characters of it is replaced by a note).
HTTP errors are raised ``from None``: the SDK's own exception text is the raw error body.
"""

from __future__ import annotations

import functools
import importlib
import json
import math
import os
import re
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import pydantic

from quant.ai._text import clean_text
from quant.ai.errors import AiRequestRejected, InvalidAiOutput
from quant.ai.models import Analysis, AnalysisOutcome, AnalysisRequest
from quant.ai.prompt import PROMPT_VERSION, build_prompt
from quant.errors import ConfigError, QuantbeatError, RateLimited, ServiceUnavailable
from quant.retry_after import parse_retry_after

if TYPE_CHECKING:
    from google import genai
    from google.genai import errors as genai_errors
    from google.genai import types as genai_types

#: The Gemini REST API version requests use (google-genai 3.4.0's default for API keys).
API_VERSION = "v1"
#: Characters of a provider message or bad output quoted in an exception message.
EXCERPT_CHARS = 200

_Output = TypeVar("_Output", bound=pydantic.BaseModel)


@functools.cache
def _schema(output: type[pydantic.BaseModel]) -> dict[str, Any]:
    """The JSON schema Gemini is asked to follow for ``output`` (built once per model)."""
    return output.model_json_schema()


_ACCEPTED_FINISH = frozenset({"STOP", "FINISH_REASON_UNSPECIFIED"})
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL | re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def _classes(names: tuple[str, ...]) -> tuple[type[BaseException], ...]:
    """The named exception classes of httpx and httpx2 (whichever is installed): the SDK uses
    httpx2 when available, httpx otherwise, or what ``GOOGLE_GENAI_HTTP_CLIENT`` says."""
    found: list[type[BaseException]] = []
    for module_name in ("httpx", "httpx2"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name in names:
            cls = getattr(module, name, None)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                found.append(cls)
    return tuple(found)


_ErrorTypes = tuple[type[BaseException], ...]


@functools.cache
def _transport_errors() -> tuple[_ErrorTypes, _ErrorTypes, _ErrorTypes]:
    """(timeouts, unsupported-URL errors, other transport errors), looked up on first use so
    importing :mod:`quant.ai` stays cheap."""
    timeouts = (*_classes(("TimeoutException",)), TimeoutError)
    unsupported = _classes(("UnsupportedProtocol",))
    transport = (*_classes(("TransportError",)), ConnectionError)
    return timeouts, unsupported, transport


def _header(headers: object, name: str) -> str | None:
    if headers is None:
        return None
    getter = getattr(headers, "get", None)
    if callable(getter):
        for key in (name, name.lower(), name.title()):
            value = getter(key)
            if isinstance(value, str):
                return value
    items = getattr(headers, "items", None)
    if callable(items):
        for key, value in items():
            if isinstance(key, str) and key.lower() == name.lower() and isinstance(value, str):
                return value
    return None


def _retry_info_delay(details: object) -> float | None:
    """``retryDelay`` (e.g. ``"37s"``) of a ``google.rpc.RetryInfo`` in a Google error body."""
    body = details[0] if isinstance(details, list) and len(details) == 1 else details
    if not isinstance(body, Mapping):
        return None
    error = body.get("error", body)
    entries = error.get("details") if isinstance(error, Mapping) else None
    if not isinstance(entries, list):
        return None
    for entry in entries:
        if (
            isinstance(entry, Mapping)
            and str(entry.get("@type", "")).endswith("google.rpc.RetryInfo")
            and isinstance(entry.get("retryDelay"), str)
        ):
            match = _DURATION.match(entry["retryDelay"])
            if match:
                return float(match.group(1))
    return None


def retry_after_from_error(error: BaseException) -> float | None:
    """Seconds the provider asked us to wait, from a google-genai ``APIError``.

    The ``Retry-After`` header of ``error.response`` (the raw HTTP response the SDK attaches)
    wins; otherwise a ``RetryInfo.retryDelay`` in ``error.details``; otherwise ``None``.
    """
    response = getattr(error, "response", None)
    header = _header(getattr(response, "headers", None), "Retry-After")
    if header is not None:
        seconds = parse_retry_after(header)
        if seconds is not None:
            return seconds
    return _retry_info_delay(getattr(error, "details", None))


class GeminiAnalyzer:
    """:class:`~quant.ai.models.Analyzer` backed by a Gemini model (``name = "gemini"``).

    ``api_key`` — a Gemini API key (sent only as the ``x-goog-api-key`` header, never logged
    or put in messages); ``model`` — e.g. ``"gemini-3.5-flash"``; ``base_url`` — another
    endpoint (a proxy, or the local fake in tests), default Google's; ``timeout`` — seconds
    allowed for each phase of the HTTP exchange (connect, send, wait for the answer), also sent
    as ``X-Server-Timeout``.

    Raises :class:`~quant.errors.ConfigError` at construction for an empty key or model or a
    non-positive timeout. The SDK client is created on first use and again in a forked child
    (a client's connection pool must not be shared across processes); an instance may be used
    from several threads.
    """

    name: str = "gemini"
    model: str

    def __init__(
        self,
        api_key: str,
        model: str,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise ConfigError("GeminiAnalyzer needs a non-empty Gemini API key")
        if not isinstance(model, str) or not model.strip():
            raise ConfigError("GeminiAnalyzer needs a non-empty model name, e.g. gemini-3.5-flash")
        if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
            raise ConfigError(
                f"GeminiAnalyzer timeout must be a positive number of seconds, got {timeout!r}"
            )
        self.model = model.strip()
        self.base_url = base_url
        self.timeout = float(timeout)
        self._api_key = api_key.strip()
        self._lock = threading.Lock()
        self._client_instance: genai.Client | None = None
        self._client_pid: int | None = None

    def __repr__(self) -> str:
        return (
            f"GeminiAnalyzer(model={self.model!r}, base_url={self.base_url!r}, "
            f"timeout={self.timeout:g})"
        )

    # -- the SDK client ----------------------------------------------------------------------

    def _client(self) -> genai.Client:
        from google import genai  # noqa: PLC0415 (google-genai: heavy, optional)
        from google.genai import types  # noqa: PLC0415 (google-genai: heavy, optional)

        pid = os.getpid()
        with self._lock:
            if self._client_instance is None or self._client_pid != pid:
                options = types.HttpOptions(
                    base_url=self.base_url,
                    api_version=API_VERSION,
                    timeout=max(1, round(self.timeout * 1000)),  # milliseconds
                    retry_options=types.HttpRetryOptions(attempts=1),  # the tasks retry
                )
                try:
                    self._client_instance = genai.Client(
                        api_key=self._api_key, vertexai=False, http_options=options
                    )
                except ValueError as exc:
                    raise ConfigError(
                        f"cannot set up the Gemini client for model {self.model!r}: "
                        f"{self._excerpt(str(exc))}"
                    ) from None
                self._client_pid = pid
            return self._client_instance

    def prepare(self) -> None:
        """Set up this process's SDK client now. The first set-up in a process imports
        google-genai and builds the client (seconds on a busy host); a caller that paces
        requests calls this before taking its slot, so the request leaves when its slot comes.

        Raises:
            quant.errors.ConfigError: the client cannot be set up.
        """
        self._client()

    def close(self) -> None:
        """Close the HTTP connections of this process's client (a later call reopens them)."""
        with self._lock:
            client, self._client_instance = self._client_instance, None
            if client is not None and self._client_pid == os.getpid():
                client.close()

    @staticmethod
    def _config(schema: dict[str, Any]) -> genai_types.GenerateContentConfig:
        from google.genai import types  # noqa: PLC0415 (google-genai: heavy, optional)

        return types.GenerateContentConfig(
            response_mime_type="application/json",
            response_json_schema=schema,
            candidate_count=1,
        )

    # -- analysis ----------------------------------------------------------------------------

    def analyze(self, request: AnalysisRequest) -> AnalysisOutcome:
        """Ask Gemini about ``request``; one HTTP request, no retry.

        Returns the validated analysis, the requested model name, the prompt version, token
        counts from ``usageMetadata`` (``output_tokens`` = ``candidatesTokenCount``, thinking
        tokens excluded; ``total_tokens`` includes them; ``None`` when not reported) and the
        call's wall time ``latency_ms`` in milliseconds.

        Raises :class:`~quant.errors.RateLimited`, :class:`~quant.errors.ServiceUnavailable`
        (transient: retry, not before ``retry_after`` seconds when set),
        :class:`~quant.ai.errors.AiRequestRejected`, :class:`~quant.ai.errors.InvalidAiOutput`
        (permanent) or :class:`~quant.errors.ConfigError`, as tabled in the module docstring.
        """
        analysis, usage, latency_ms = self.generate(build_prompt(request), Analysis)
        return AnalysisOutcome(
            analysis=analysis,
            analyzer=self.name,
            model=self.model,
            prompt_version=PROMPT_VERSION,
            prompt_tokens=usage.get("prompt_tokens"),
            output_tokens=usage.get("output_tokens"),
            total_tokens=usage.get("total_tokens"),
            latency_ms=latency_ms,
        )

    def generate(
        self, prompt: str, output: type[_Output]
    ) -> tuple[_Output, dict[str, int | None], float]:
        """One ``generateContent`` call for ``prompt`` with JSON output constrained by
        ``output``'s JSON schema, validated with ``output``; one HTTP request, no retry.

        Returns the validated answer, the token counts (``prompt_tokens``,
        ``output_tokens``, ``total_tokens``; ``None`` when not reported) and the call's wall
        time in milliseconds. Raises as :meth:`analyze` (the table of the module docstring).
        """
        from google.genai import errors as genai_errors  # noqa: PLC0415 (google-genai: heavy, optional)

        timeouts, unsupported, transport = _transport_errors()
        client = self._client()
        started = time.perf_counter()
        try:
            response = client.models.generate_content(
                model=self.model, contents=prompt, config=self._config(_schema(output))
            )
        except genai_errors.APIError as exc:
            # Not chained: the SDK error's text is the raw error body, which could quote the
            # request; the mapped message carries the code, status and a vetted excerpt.
            raise self._api_error(exc, prompt) from None
        except timeouts as exc:
            raise ServiceUnavailable(
                f"Gemini model {self.model!r} timed out after {self.timeout:g} s "
                f"({type(exc).__name__})"
            ) from exc
        except unsupported as exc:
            raise ConfigError(
                f"Gemini base_url {self.base_url!r} is not usable for model {self.model!r}: "
                f"{self._excerpt(str(exc))}"
            ) from exc
        except transport as exc:
            raise ServiceUnavailable(
                f"Gemini model {self.model!r} could not be reached: {type(exc).__name__}: "
                f"{self._excerpt(str(exc))}"
            ) from exc
        except (genai_errors.UnknownApiResponseError, json.JSONDecodeError) as exc:
            raise InvalidAiOutput(
                f"Gemini model {self.model!r} answered HTTP 200 with a body that is not JSON",
                field="response",
                model=self.model,
            ) from exc
        except pydantic.ValidationError as exc:
            raise InvalidAiOutput(
                f"Gemini model {self.model!r} answered HTTP 200 with a body not in the "
                f"generateContent format: {self._excerpt(_first_error(exc))}",
                field="response",
                model=self.model,
            ) from exc
        latency_ms = (time.perf_counter() - started) * 1000.0
        answer = self._parse(response, output)
        usage = response.usage_metadata
        counts: dict[str, int | None] = {
            "prompt_tokens": usage.prompt_token_count if usage else None,
            "output_tokens": usage.candidates_token_count if usage else None,
            "total_tokens": usage.total_token_count if usage else None,
        }
        return answer, counts, latency_ms

    def _parse(
        self, response: genai_types.GenerateContentResponse, output: type[_Output]
    ) -> _Output:
        candidates = response.candidates or []
        if not candidates:
            feedback = response.prompt_feedback
            reason = _enum_name(feedback.block_reason) if feedback else None
            raise InvalidAiOutput(
                f"Gemini model {self.model!r} returned no candidate"
                + (f" (promptFeedback.blockReason={reason})" if reason else ""),
                field="candidates",
                model=self.model,
                finish_reason=reason,
            )
        finish = _enum_name(candidates[0].finish_reason)
        text = response.text
        if finish is not None and finish not in _ACCEPTED_FINISH:
            raise InvalidAiOutput(
                f"Gemini model {self.model!r} stopped with finishReason={finish}"
                + ("" if text else " and no text"),
                field="finishReason",
                value=finish,
                model=self.model,
                finish_reason=finish,
            )
        if text is None or not text.strip():
            raise InvalidAiOutput(
                f"Gemini model {self.model!r} returned an empty answer "
                f"(finishReason={finish or 'unset'})",
                field="text",
                model=self.model,
                finish_reason=finish,
            )
        body = text.strip()
        fenced = _FENCE.match(body)
        if fenced:
            body = fenced.group(1)
        try:
            return output.model_validate_json(body)
        except pydantic.ValidationError as exc:
            raise self._output_error(exc, body, finish, output.__name__) from None

    def _output_error(
        self, exc: pydantic.ValidationError, body: str, finish: str | None, schema: str
    ) -> InvalidAiOutput:
        problems = exc.errors(include_url=False)
        if any(p["type"] == "json_invalid" for p in problems):
            return InvalidAiOutput(
                f"Gemini model {self.model!r} returned output that is not valid JSON: "
                f"{self._excerpt(body)!r}",
                field="text",
                value=self._excerpt(body),
                model=self.model,
                finish_reason=finish,
            )
        first = problems[0]
        field = ".".join(str(part) for part in first["loc"]) or "(root)"
        value = None if first["type"] == "missing" else first.get("input")
        described = "; ".join(
            f"{'.'.join(str(x) for x in p['loc']) or '(root)'}: {p['msg']}"
            + (
                ""
                if p["type"] == "missing"
                else f" (got {self._excerpt(repr(p.get('input')), 60)})"
            )
            for p in problems[:3]
        )
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        return InvalidAiOutput(
            f"Gemini model {self.model!r} returned JSON that violates the {schema} schema: "
            f"{described}{more}",
            field=field,
            value=value,
            model=self.model,
            finish_reason=finish,
        )

    def _api_error(self, exc: genai_errors.APIError, prompt: str) -> QuantbeatError:
        code = exc.code if isinstance(exc.code, int) else None
        status = exc.status if isinstance(exc.status, str) else None
        message = exc.message if isinstance(exc.message, str) else ""
        what = f"HTTP {code if code is not None else '?'}{' ' + status if status else ''}"
        excerpt = self._excerpt(message)
        if _quotes(excerpt, prompt):
            excerpt = "(the provider's message quotes the prompt; omitted)"
        if excerpt:
            what += f": {excerpt}"
        if code == 429:
            retry_after = retry_after_from_error(exc)
            suffix = f"; retry after {retry_after:g} s" if retry_after is not None else ""
            return RateLimited(
                f"Gemini model {self.model!r} rate-limited the request ({what}){suffix}",
                retry_after=retry_after,
            )
        if code is None or code == 408 or (500 <= code < 600 and code != 501):
            retry_after = retry_after_from_error(exc)
            suffix = f"; retry after {retry_after:g} s" if retry_after is not None else ""
            return ServiceUnavailable(
                f"Gemini model {self.model!r} is unavailable ({what}){suffix}",
                retry_after=retry_after,
            )
        return AiRequestRejected(
            f"Gemini model {self.model!r} rejected the request ({what})",
            code=code,
            status=status,
            model=self.model,
        )

    def _excerpt(self, text: str, limit: int = EXCERPT_CHARS) -> str:
        """``text`` cleaned to one line, the API key masked, cut to ``limit`` characters."""
        return clean_text(text.replace(self._api_key, "***"), limit)


def _quotes(text: str, prompt: str, window: int = 24) -> bool:
    """Whether ``text`` contains a ``window``-character stretch of ``prompt``."""
    prompt_text = clean_text(prompt)
    return any(text[i : i + window] in prompt_text for i in range(len(text) - window + 1))


def _enum_name(value: object) -> str | None:
    if value is None:
        return None
    raw = getattr(value, "value", value)
    return str(raw) if raw is not None else None


def _first_error(exc: pydantic.ValidationError) -> str:
    problems = exc.errors(include_url=False)
    if not problems:
        return str(exc)
    first = problems[0]
    return f"{'.'.join(str(x) for x in first['loc'])}: {first['msg']}"
