"""Errors of the AI analyzers, placed in the :mod:`quant.errors` tree.

::

    PermanentError
    ├── AiRequestRejected      the provider refused the request (HTTP 400/401/403/404/…)
    └── ValidationError
        └── InvalidAiOutput    the answer is not JSON, is empty/blocked, or breaks the schema

Transient failures use :class:`quant.errors.RateLimited` (HTTP 429) and
:class:`quant.errors.ServiceUnavailable` (5xx, timeouts, connection errors) directly.

Messages name the model, the HTTP code/status and a short excerpt of the problem; they never
contain the API key or the prompt. Every keyword argument has a default so the exceptions
survive pickling (Celery's result backend, multiprocessing).
"""

from __future__ import annotations

from quant.errors import PermanentError, ValidationError


class AiRequestRejected(PermanentError):
    """The AI provider rejected the request and will reject it again (bad argument, bad or
    unauthorised key, unknown model). ``code`` is the HTTP status code, ``status`` the
    provider's status name (e.g. ``"INVALID_ARGUMENT"``), ``model`` the model asked."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        status: str | None = None,
        model: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.model = model


class InvalidAiOutput(ValidationError):
    """The provider answered, but the answer cannot be used: not JSON, no text (an empty or
    blocked candidate, ``finish_reason`` saying why), or JSON that breaks the
    :class:`quant.ai.Analysis` schema (``field`` names the first offending field, ``value``
    its value)."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        value: object = None,
        model: str | None = None,
        finish_reason: str | None = None,
    ) -> None:
        super().__init__(message, field=field, value=value)
        self.model = model
        self.finish_reason = finish_reason
