"""Export a backtest run's artifacts (report, CSVs, metrics) to S3-compatible object storage.

Objects are written with boto3 under ``{prefix}/{run_id}/{name}`` in one bucket, for example
``s3://research/quantbeat/backtests/bt-42/report.html``. Exporting is idempotent: the keys
depend only on the target, the run id and the artifact names, so exporting a run again
overwrites the same objects. Any S3-compatible store works (AWS, MinIO, Ceph, R2 ...) through
``endpoint_url``.

Credentials come from boto's usual chain (environment, shared config/credentials files,
instance or container roles); this module never reads or logs them, and error messages carry
only the bucket, the key and boto's own error text (masked again for safety).

A failed upload raises an :class:`ExportError` in the error tree (:mod:`quant.errors`), by
cause: :class:`ExportDenied` (a :class:`~quant.errors.ConfigError`: credentials, permissions
or the bucket must be fixed by an operator), :class:`ExportUnavailable` (a
:class:`~quant.errors.ServiceUnavailable`: the store could not be reached or asked us to slow
down; retrying later may work) and :class:`ExportFailed` (a
:class:`~quant.errors.PermanentError`: anything else).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import numpy as np

from quant.errors import ConfigError, PermanentError, QuantbeatError, ServiceUnavailable
from quantbeat.infra.masking import mask_text
from quantbeat.infra.settings import get_settings

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "DEFAULT_PREFIX",
    "ExportDenied",
    "ExportError",
    "ExportFailed",
    "ExportUnavailable",
    "S3Target",
    "artifacts_for",
    "content_type_for",
    "export_artifacts",
]

DEFAULT_PREFIX: Final = "quantbeat/backtests"
DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"

#: Content type by file extension (lower case, without the dot).
CONTENT_TYPES: Final[Mapping[str, str]] = {
    "html": "text/html; charset=utf-8",
    "htm": "text/html; charset=utf-8",
    "png": "image/png",
    "csv": "text/csv",
    "json": "application/json",
    "txt": "text/plain; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}

# S3 bucket naming rules (also what MinIO enforces): 3-63 characters, lower-case letters,
# digits, dots and hyphens, starting and ending with a letter or digit.
_BUCKET: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_MAX_SEGMENT: Final = 255


#: S3 error codes meaning the operator must fix credentials, permissions or the bucket.
DENIED_CODES: Final = frozenset(
    {
        "AccessDenied",
        "AccountProblem",
        "AllAccessDisabled",
        "AuthorizationHeaderMalformed",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidBucketName",
        "InvalidToken",
        "NoSuchBucket",
        "PermanentRedirect",
        "SignatureDoesNotMatch",
    }
)
#: S3 error codes of a store that is overloaded or briefly failing (also: any HTTP 5xx).
UNAVAILABLE_CODES: Final = frozenset(
    {"InternalError", "RequestTimeout", "ServiceUnavailable", "SlowDown", "Throttling"}
)


class ExportError(QuantbeatError):
    """Writing to object storage failed; raised as :class:`ExportDenied`,
    :class:`ExportUnavailable` or :class:`ExportFailed` (catch this class for all three).

    The message names the bucket and key (``s3://bucket/key``) and boto's error message;
    credentials never appear in it. Attributes: ``bucket``, ``key`` (``None`` when the client
    could not even be built), ``code`` (the S3 error code such as ``NoSuchBucket`` or
    ``AccessDenied``, when the service returned one) and ``uploaded`` (the URIs written before
    the failure; exporting again overwrites them, so a retry is safe).
    """

    def __init__(
        self,
        message: str,
        *,
        bucket: str,
        key: str | None = None,
        code: str | None = None,
        uploaded: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.bucket = bucket
        self.key = key
        self.code = code
        self.uploaded = uploaded


class ExportDenied(ExportError, ConfigError):
    """The store refused us (access denied, bad or missing credentials, no such bucket): an
    operator must fix the credentials, the bucket policy or the target (CLI exit code 3)."""


class ExportUnavailable(ExportError, ServiceUnavailable):
    """The store could not be reached, timed out or asked us to slow down: retrying later may
    work (CLI exit code 4)."""


class ExportFailed(ExportError, PermanentError):
    """Any other refusal of the store (an invalid request): retrying will not help (CLI exit
    code 5)."""


@dataclass(frozen=True, slots=True)
class S3Target:
    """Where a run's artifacts go: a bucket, a key prefix and optionally a custom endpoint.

    ``prefix`` is normalised (surrounding ``/`` removed); an empty prefix writes
    ``{run_id}/{name}`` at the bucket's root. ``endpoint_url`` points at an S3-compatible
    service such as MinIO (``None`` = AWS); ``region`` is the region name (``None`` = boto's
    default chain). Raises :class:`ValueError` for an invalid bucket name or a prefix with
    empty, ``.`` or ``..`` segments or control characters.
    """

    bucket: str
    prefix: str = DEFAULT_PREFIX
    endpoint_url: str | None = None
    region: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.bucket, str) or not _BUCKET.fullmatch(self.bucket):
            raise ValueError(
                f"invalid S3 bucket name {self.bucket!r}: 3-63 characters of a-z, 0-9, '.' "
                "and '-', starting and ending with a letter or digit"
            )
        if ".." in self.bucket:
            raise ValueError(f"invalid S3 bucket name {self.bucket!r}: contains '..'")
        prefix = self.prefix.strip("/")
        if prefix:
            for segment in prefix.split("/"):
                if segment in ("", ".", "..") or _has_control(segment):
                    raise ValueError(
                        f"invalid S3 key prefix {self.prefix!r}: empty, '.' or '..' segment "
                        "or control character"
                    )
        object.__setattr__(self, "prefix", prefix)

    @classmethod
    def parse(
        cls, url: str, *, endpoint_url: str | None = None, region: str | None = None
    ) -> S3Target:
        """Parse ``s3://bucket`` or ``s3://bucket/some/prefix`` into a target.

        The URL's path is the prefix exactly as written: ``s3://bucket`` means the bucket's
        root (no prefix), not :data:`DEFAULT_PREFIX`. Raises :class:`ValueError` naming the URL
        when it is malformed: another scheme, no or an invalid bucket, credentials in it
        (these are removed from the message), a query or fragment, or a bad prefix.
        """
        shown = _safe_url(url)
        try:
            parts = urlsplit(url.strip())
        except (ValueError, AttributeError) as exc:
            raise ValueError(f"malformed S3 URL {shown!r}: {exc}") from None
        if parts.scheme.lower() != "s3":
            raise ValueError(f"malformed S3 URL {shown!r}: expected s3://bucket[/prefix]")
        if "@" in parts.netloc:
            raise ValueError(
                f"malformed S3 URL {shown!r}: credentials do not belong in the URL; use the "
                "environment or boto's config files"
            )
        if parts.query or parts.fragment:
            raise ValueError(
                f"malformed S3 URL {shown!r}: a query or fragment is not allowed "
                "(expected s3://bucket[/prefix])"
            )
        if not parts.netloc:
            raise ValueError(f"malformed S3 URL {shown!r}: no bucket name")
        try:
            return cls(
                bucket=parts.netloc,
                prefix=parts.path.strip("/"),
                endpoint_url=endpoint_url,
                region=region,
            )
        except ValueError as exc:
            raise ValueError(f"malformed S3 URL {shown!r}: {exc}") from None

    def key(self, run_id: str, name: str) -> str:
        """The object key of artifact ``name`` of run ``run_id`` (both validated)."""
        _check_segment("run_id", run_id)
        _check_segment("artifact name", name)
        return f"{self.prefix}/{run_id}/{name}" if self.prefix else f"{run_id}/{name}"

    def uri(self, key: str) -> str:
        """``s3://bucket/key``."""
        return f"s3://{self.bucket}/{key}"


def content_type_for(name: str) -> str:
    """The content type for an artifact name, from its extension (``application/octet-stream``
    when unknown)."""
    _, dot, ext = name.rpartition(".")
    return CONTENT_TYPES.get(ext.lower(), DEFAULT_CONTENT_TYPE) if dot else DEFAULT_CONTENT_TYPE


def export_artifacts(
    run_id: str,
    artifacts: Mapping[str, bytes],
    target: S3Target,
    *,
    client: Any | None = None,
    content_types: Mapping[str, str] | None = None,
) -> list[str]:
    """Upload each artifact to ``{target.prefix}/{run_id}/{name}``; return the ``s3://`` URIs.

    ``artifacts`` maps a file name (``report.html``, ``trades.csv`` ...) to its bytes; the URIs
    come back in the mapping's order. Each object's content type is ``content_types[name]``
    when given, else guessed from the extension (:func:`content_type_for`). Existing objects
    under the same keys are overwritten, so exporting again is safe. ``client`` is a boto3 S3
    client (or anything with the same ``put_object``); without one, a client is built with
    ``boto3.client("s3", endpoint_url=target.endpoint_url, region_name=target.region)`` and
    boto's usual credential chain, with ``QUANTBEAT_S3_TIMEOUT`` connect/read timeouts and
    :data:`S3_MAX_ATTEMPTS` attempts per request.

    Everything is validated before the first upload. Raises :class:`ValueError` naming the
    offender for an invalid ``run_id`` or artifact name (empty, containing ``/``, ``\\``,
    ``..``, whitespace or control characters, or starting with ``.``) or a ``content_types``
    entry for an artifact not being exported; :class:`TypeError` if an artifact is not bytes;
    :class:`ExportError` (bucket, key and boto's message; its subclass says whether an
    operator must act, a retry may help, or neither) when boto or the service fails.
    """
    _check_segment("run_id", run_id)
    for name, body in artifacts.items():
        _check_segment("artifact name", name)
        if not isinstance(body, bytes | bytearray | memoryview):
            raise TypeError(f"artifact {name!r} must be bytes, got {type(body).__name__}")
    overrides = dict(content_types or {})
    unknown = sorted(set(overrides) - set(artifacts))
    if unknown:
        raise ValueError(f"content_types names artifacts that are not exported: {unknown}")
    if not artifacts:
        return []

    from botocore.exceptions import (  # noqa: PLC0415 (boto3: only when exporting)
        BotoCoreError,
        ClientError,
    )

    if client is None:
        try:
            client = _make_client(target)
        except BotoCoreError as exc:
            raise _export_error(exc)(
                f"S3 export to s3://{target.bucket}: could not create the S3 client: "
                f"{_boto_message(exc)}",
                bucket=target.bucket,
            ) from exc

    uris: list[str] = []
    for name, body in artifacts.items():
        key = target.key(run_id, name)
        content_type = overrides.get(name) or content_type_for(name)
        try:
            client.put_object(
                Bucket=target.bucket, Key=key, Body=bytes(body), ContentType=content_type
            )
        except (ClientError, BotoCoreError) as exc:
            code = _error_code(exc)
            raise _export_error(exc)(
                f"S3 export to {target.uri(key)} failed: {_boto_message(exc)}{_hint(exc)}",
                bucket=target.bucket,
                key=key,
                code=code,
                uploaded=tuple(uris),
            ) from exc
        uris.append(target.uri(key))
    return uris


def artifacts_for(
    report_html: str,
    report_png: bytes | None,
    trades_csv: str,
    equity_csv: str,
    metrics: Mapping[str, Any],
) -> dict[str, bytes]:
    """The standard artifact set of a run, ready for :func:`export_artifacts`.

    Returns ``report.html``, ``report.png`` (left out when ``report_png`` is ``None``),
    ``trades.csv``, ``equity.csv`` (text as UTF-8) and ``metrics.json`` (pretty-printed
    UTF-8 JSON in the mapping's order; NaN and infinities become ``null``, NumPy scalars and
    arrays plain JSON, anything else its ``str``).
    """
    out: dict[str, bytes] = {"report.html": report_html.encode("utf-8")}
    if report_png is not None:
        out["report.png"] = bytes(report_png)
    out["trades.csv"] = trades_csv.encode("utf-8")
    out["equity.csv"] = equity_csv.encode("utf-8")
    text = json.dumps(
        _json_safe(metrics), indent=2, ensure_ascii=False, allow_nan=False, default=str
    )
    out["metrics.json"] = (text + "\n").encode("utf-8")
    return out


# --------------------------------------------------------------------------------------------
# Helpers


#: Attempts per S3 request, first included (boto's "standard" retry mode: 5xx, throttling and
#: connection errors, with backoff).
S3_MAX_ATTEMPTS: Final = 3


def _make_client(target: S3Target) -> Any:
    """A boto3 S3 client for ``target`` whose every request is bounded: connect and read
    timeouts of ``QUANTBEAT_S3_TIMEOUT`` seconds (boto's default is 60 s each) and at most
    :data:`S3_MAX_ATTEMPTS` attempts."""
    import boto3  # noqa: PLC0415 (boto3: only when exporting)
    from botocore.config import Config  # noqa: PLC0415 (boto3: only when exporting)

    timeout = get_settings().s3_timeout
    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"total_max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"},
    )
    return boto3.client(
        "s3", endpoint_url=target.endpoint_url, region_name=target.region, config=config
    )


def _has_control(text: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


def _check_segment(what: str, value: object) -> None:
    """A single key segment: a run id or an artifact file name."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"invalid {what} {value!r}: must be a non-empty string")
    if len(value) > _MAX_SEGMENT:
        raise ValueError(f"invalid {what} {value[:40]!r}...: longer than {_MAX_SEGMENT} chars")
    if "/" in value or "\\" in value:
        raise ValueError(f"invalid {what} {value!r}: must not contain '/' or '\\'")
    if ".." in value:
        raise ValueError(f"invalid {what} {value!r}: must not contain '..'")
    if value.startswith("."):
        raise ValueError(f"invalid {what} {value!r}: must not start with '.'")
    if _has_control(value) or any(ch.isspace() for ch in value):
        raise ValueError(f"invalid {what} {value!r}: must not contain whitespace or controls")


def _safe_url(url: object) -> str:
    """The URL for an error message, with any ``user:password@`` part removed."""
    text = str(url)
    return mask_text(re.sub(r"(?<=://)[^/@]*@", "***@", text))


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        error = response.get("Error")
        if isinstance(error, Mapping):
            code = error.get("Code")
            return str(code) if code else None
    return None


def _export_error(exc: BaseException) -> type[ExportError]:
    """The :class:`ExportError` subclass for a boto or S3 error, by its cause."""
    from botocore import exceptions as boto  # noqa: PLC0415 (boto3: only when exporting)

    if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError | boto.NoRegionError):
        return ExportDenied
    if isinstance(exc, boto.ConnectionError | boto.HTTPClientError | boto.CredentialRetrievalError):
        return ExportUnavailable
    code = _error_code(exc)
    if code in DENIED_CODES:
        return ExportDenied
    status = _http_status(exc)
    if code in UNAVAILABLE_CODES or (status is not None and status >= 500):
        return ExportUnavailable
    return ExportFailed


def _hint(exc: BaseException) -> str:
    if _error_code(exc) in DENIED_CODES:
        return (
            " (check the AWS credentials in boto's chain, the bucket's name and its policy "
            "allowing s3:PutObject)"
        )
    return ""


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        meta = response.get("ResponseMetadata")
        if isinstance(meta, Mapping) and isinstance(meta.get("HTTPStatusCode"), int):
            return int(meta["HTTPStatusCode"])
    return None


def _boto_message(exc: BaseException) -> str:
    return mask_text(str(exc)) or type(exc).__name__


def _json_safe(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    elif isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
