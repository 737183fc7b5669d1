"""REAL news sources: RSS/Atom feeds over HTTP and feed/JSON files on local disk.

:class:`RssSource` fetches one feed URL per :meth:`~RssSource.fetch` (one attempt, no retries
here: a :class:`~quant.errors.TransientError` is for the caller, e.g. a Celery retry, to act
on). :class:`LocalFileSource` reads a file or a directory of files (imports, fixtures, offline
runs).

Failure mapping of :class:`RssSource`:

* HTTP 429 — :class:`~quant.errors.RateLimited`, ``retry_after`` from ``Retry-After``
  (seconds or an HTTP date; ``None`` when absent or unreadable);
* HTTP 5xx and 408, timeouts, connection and other transport errors —
  :class:`~quant.errors.ServiceUnavailable` (``retry_after`` from ``Retry-After`` if sent);
* any other status but 200 (404, 401, 403, 410 …) — :class:`FeedHTTPError`, a
  :class:`~quant.errors.PermanentError` carrying the status and the URL;
* a 200 whose body is not a feed, or larger than ``max_bytes`` —
  :class:`~quant.errors.ValidationError` naming the source.

Messages and ``FeedHTTPError.url`` show the URL with every query value (API keys, tokens) and
any userinfo password replaced by ``***`` (:func:`~quant.news.items.mask_url`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from quant.calendar import check_aware
from quant.errors import (
    NotFound,
    PermanentError,
    RateLimited,
    ServiceUnavailable,
    ValidationError,
)
from quant.news.feeds import parse_date, parse_feed
from quant.news.items import (
    SUMMARY_LIMIT,
    FetchResult,
    NewsItem,
    clean_text,
    dedupe,
    keep_since,
    mask_url,
)
from quant.retry_after import retry_after as retry_after_of

__all__ = [
    "DEFAULT_MAX_BYTES",
    "FEED_SUFFIXES",
    "JSON_SUFFIXES",
    "FeedHTTPError",
    "LocalFileSource",
    "RssSource",
]

#: Largest feed body (bytes) :class:`RssSource` accepts.
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
#: File suffixes :class:`LocalFileSource` parses as feeds (compared case-insensitively).
FEED_SUFFIXES = frozenset({".xml", ".rss", ".atom"})
#: File suffixes :class:`LocalFileSource` reads as JSON lines / JSON arrays.
JSON_SUFFIXES = frozenset({".jsonl", ".json"})

_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1"
)


class FeedHTTPError(PermanentError):
    """The feed server answered with a status that will not change on retry (404, 403 …).

    ``status`` is the HTTP status code and ``url`` the feed URL with query values masked.
    """

    def __init__(self, message: str, *, status: int, url: str) -> None:
        super().__init__(message)
        self.status = status
        self.url = url


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError(
            f"a news source name must be a non-empty string, got {name!r}",
            field="name",
            value=name,
        )
    return name


def _check_since(since: datetime | None) -> datetime | None:
    return None if since is None else check_aware(since, "since")


class RssSource:
    """One RSS/Atom/RDF feed fetched over HTTP(S).

    Args:
        url: the feed's absolute http(s) URL. Query parameters may hold secrets: they are
            masked in every message.
        name: the source name put on items (``"hankyung-rss"`` …).
        timeout: seconds allowed for each of connect, read, write and pool acquisition.
        max_elapsed: when given, the longest a whole fetch may take (seconds): a server that
            sends a little before each read timeout cannot hold the caller longer.
        client: an ``httpx.Client`` to use; when ``None`` one is created that ignores the
            environment (``trust_env=False``: no proxy or CA settings read) and is closed by
            :meth:`close`. Redirects are followed either way.
        user_agent: the ``User-Agent`` header sent.
        max_bytes: largest body accepted (bytes).
        naive_tz: the zone of feed dates written without one (see :func:`parse_feed`).

    Raises:
        quant.errors.ValidationError: ``url`` is not an absolute http(s) URL, ``name`` is
            empty, or ``timeout``/``max_elapsed``/``max_bytes`` is not positive.
    """

    simulated: bool = False

    def __init__(
        self,
        url: str,
        *,
        name: str,
        timeout: float = 10.0,
        max_elapsed: float | None = None,
        client: httpx.Client | None = None,
        user_agent: str = "quantbeat/0.1 (+news)",
        max_bytes: int = DEFAULT_MAX_BYTES,
        naive_tz: tzinfo = UTC,
    ) -> None:
        self.name = _check_name(name)
        try:
            parsed = httpx.URL(url) if isinstance(url, str) else None
        except httpx.InvalidURL:
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            shown = mask_url(url) if isinstance(url, str) else repr(url)
            raise ValidationError(
                f"news source {name!r}: feed URL {shown} is not an absolute http(s) URL",
                field="url",
                value=shown,
            )
        for field, seconds in (("timeout", timeout), ("max_elapsed", max_elapsed)):
            if field == "max_elapsed" and seconds is None:
                continue
            if (
                isinstance(seconds, bool)
                or not isinstance(seconds, int | float)
                or not math.isfinite(seconds)
                or seconds <= 0
            ):
                raise ValidationError(
                    f"{field} must be a positive number of seconds, got {seconds!r}",
                    field=field,
                    value=seconds,
                )
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ValidationError(
                f"max_bytes must be a positive integer, got {max_bytes!r}",
                field="max_bytes",
                value=max_bytes,
            )
        self.url = url
        self._shown = mask_url(url)
        self._timeout = float(timeout)
        self._max_elapsed = None if max_elapsed is None else float(max_elapsed)
        self._user_agent = user_agent
        self._max_bytes = max_bytes
        self._naive_tz = naive_tz
        self._owns_client = client is None
        self._client = (
            client if client is not None else httpx.Client(trust_env=False, timeout=timeout)
        )

    def __repr__(self) -> str:
        return f"RssSource({self._shown!r}, name={self.name!r})"

    def close(self) -> None:
        """Close the HTTP client if this source created it (a caller's client is left open)."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> RssSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def fetch(self, *, since: datetime | None = None) -> FetchResult:
        """GET the feed once and parse it.

        ``since`` (timezone-aware) drops items published before it; undated items are kept.

        Returns:
            The feed's items (REAL news, ``simulated=False``), deduplicated by key, with
            rejected items listed (see :func:`quant.news.parse_feed`).

        Raises:
            quant.errors.RateLimited: HTTP 429 (``retry_after`` from ``Retry-After``).
            quant.errors.ServiceUnavailable: HTTP 5xx or 408, a timeout (of one phase, or the
                whole fetch over ``max_elapsed``), a network error.
            FeedHTTPError: any other non-200 status (404, 403 …).
            quant.errors.ValidationError: a naive ``since``; the body is not a feed or is
                larger than ``max_bytes``.
        """
        since_utc = _check_since(since)
        what = f"news source {self.name!r} GET {self._shown}"
        started = time.monotonic()
        try:
            with self._client.stream(
                "GET",
                self.url,
                headers={"User-Agent": self._user_agent, "Accept": _ACCEPT},
                timeout=self._timeout,
                follow_redirects=True,
            ) as response:
                self._check_status(response, what)
                body = self._read(response, what, started)
        except httpx.TimeoutException as error:
            raise ServiceUnavailable(
                f"{what} timed out after {self._timeout:g} s ({type(error).__name__})"
            ) from None
        except httpx.HTTPError as error:  # transport errors, too many redirects …
            detail = str(error).replace(self.url, self._shown)
            raise ServiceUnavailable(f"{what} failed: {type(error).__name__}: {detail}") from None
        result = parse_feed(
            body, source=self.name, base_url=str(response.url), naive_tz=self._naive_tz
        )
        return FetchResult(items=keep_since(result.items, since_utc), rejected=result.rejected)

    def _check_status(self, response: httpx.Response, what: str) -> None:
        status = response.status_code
        if status == 200:
            return
        if status == 429:
            retry_after = retry_after_of(response.headers)
            hint = f" (Retry-After {retry_after:g} s)" if retry_after is not None else ""
            raise RateLimited(f"{what} was throttled: HTTP 429{hint}", retry_after=retry_after)
        if status == 408 or 500 <= status <= 599:
            raise ServiceUnavailable(
                f"{what} failed with HTTP {status}", retry_after=retry_after_of(response.headers)
            )
        raise FeedHTTPError(
            f"{what} failed with HTTP {status}; not retried", status=status, url=self._shown
        )

    def _read(self, response: httpx.Response, what: str, started: float) -> bytes:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            if self._max_elapsed is not None and time.monotonic() - started > self._max_elapsed:
                raise ServiceUnavailable(
                    f"{what} took longer than {self._max_elapsed:g} s (a slow or stalling "
                    "server); gave up"
                )
            size += len(chunk)
            if size > self._max_bytes:
                raise ValidationError(
                    f"{what}: the feed is larger than {self._max_bytes} bytes",
                    field="feed",
                    value=self.name,
                )
            chunks.append(chunk)
        return b"".join(chunks)


class LocalFileSource:
    """News from files on local disk: feeds and JSON.

    ``path`` is a file or a directory. In a directory, the files directly inside it (not in
    subdirectories) with a known suffix are read in name order; others are ignored.

    * ``*.xml``, ``*.rss``, ``*.atom`` — parsed as feeds (:func:`quant.news.parse_feed`);
      items keep this source's ``name`` as their source.
    * ``*.jsonl`` — one JSON object per line; ``*.json`` — a JSON array of objects, a single
      object, or JSON lines. Object fields: ``url`` and ``title`` (required), ``summary``
      (HTML is stripped), ``published_at`` (ISO 8601 or RFC 822 string, or null; a time
      without a zone is UTC), ``source`` (default: this source's name), ``guid``,
      ``instruments`` (list of ``"MARKET:TICKER"``). Blank lines are skipped.

    A bad JSON line or array element is rejected as ``("<file>:<line>", why)`` (``<file>[<i>]``
    for array elements), a bad feed item as for :func:`parse_feed`; the rest is kept. In a
    directory, a whole file that cannot be read or is not a feed is rejected as
    ``("<file>", why)``; when ``path`` is that one file, the error is raised instead.

    Raises:
        quant.errors.ValidationError: ``name`` is empty.
    """

    simulated: bool = False

    def __init__(self, path: str | Path, *, name: str = "local") -> None:
        self.name = _check_name(name)
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"LocalFileSource({str(self.path)!r}, name={self.name!r})"

    def fetch(self, *, since: datetime | None = None) -> FetchResult:
        """Read the file(s) now.

        ``since`` (timezone-aware) drops items published before it; undated items are kept.

        Raises:
            quant.errors.NotFound: ``path`` does not exist.
            quant.errors.ValidationError: ``path`` is a file with an unknown suffix, cannot be
                read, or (a feed file) is not a feed; ``since`` is naive.
        """
        since_utc = _check_since(since)
        items: list[NewsItem] = []
        rejected: list[tuple[str, str]] = []
        if self.path.is_dir():
            files = sorted(
                p
                for p in self.path.iterdir()
                if p.is_file() and p.suffix.lower() in FEED_SUFFIXES | JSON_SUFFIXES
            )
            for file in files:
                try:
                    self._read_file(file, items, rejected)
                except ValidationError as error:
                    rejected.append((str(file), str(error)))
        elif self.path.is_file():
            if self.path.suffix.lower() not in FEED_SUFFIXES | JSON_SUFFIXES:
                known = ", ".join(sorted(FEED_SUFFIXES | JSON_SUFFIXES))
                raise ValidationError(
                    f"news file {self.path} has an unknown suffix (known: {known})",
                    field="path",
                    value=str(self.path),
                )
            self._read_file(self.path, items, rejected)
        else:
            raise NotFound(f"news path {self.path} does not exist")
        return FetchResult(items=keep_since(dedupe(items), since_utc), rejected=rejected)

    def _read_file(
        self, file: Path, items: list[NewsItem], rejected: list[tuple[str, str]]
    ) -> None:
        try:
            data = file.read_bytes()
        except OSError as error:
            raise ValidationError(
                f"news file {file} could not be read: {error}", field="path", value=str(file)
            ) from error
        if file.suffix.lower() in FEED_SUFFIXES:
            result = parse_feed(data, source=self.name, base_url=None)
            items.extend(result.items)
            rejected.extend((f"{file}: {what}", why) for what, why in result.rejected)
            return
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise ValidationError(
                f"news file {file} is not UTF-8: {error}", field="path", value=str(file)
            ) from error
        for what, record in self._json_records(file, text):
            try:
                items.append(self._item(record))
            except ValidationError as error:
                rejected.append((what, str(error)))

    @staticmethod
    def _json_records(file: Path, text: str) -> Iterator[tuple[str, object]]:
        """``(where, value)`` for each JSON record; unparseable lines as ValidationError values."""
        if file.suffix.lower() == ".json":
            try:
                whole = json.loads(text)
            except ValueError:
                pass  # not one JSON document: read it as JSON lines
            else:
                if isinstance(whole, list):
                    for index, value in enumerate(whole):
                        yield f"{file}[{index}]", value
                else:
                    yield str(file), whole
                return
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as error:
                value = ValidationError(f"not valid JSON: {error}", field="line", value=number)
            yield f"{file}:{number}", value

    def _item(self, record: object) -> NewsItem:
        """A NewsItem from one JSON record; ValidationError saying what is wrong."""
        if isinstance(record, ValidationError):
            raise record
        if not isinstance(record, dict):
            raise ValidationError(
                f"expected a JSON object, got {type(record).__name__}", field="record"
            )
        fields: dict[str, Any] = record
        url = _string(fields, "url", required=True)
        if not url.startswith(("http://", "https://")):
            raise ValidationError(f"url {url!r} is not an absolute http(s) URL", field="url")
        title = clean_text(_string(fields, "title", required=True))
        if not title:
            raise ValidationError("title is empty", field="title")
        published_raw = fields.get("published_at")
        published: datetime | None = None
        if published_raw is not None:
            if not isinstance(published_raw, str):
                raise ValidationError(
                    f"published_at must be a string or null, got {published_raw!r}",
                    field="published_at",
                )
            published = parse_date(published_raw)
            if published is None and published_raw.strip():
                raise ValidationError(
                    f"published_at {published_raw!r} is not a date", field="published_at"
                )
        instruments = fields.get("instruments", [])
        if instruments is None:
            instruments = []
        if not isinstance(instruments, list) or not all(
            isinstance(i, str) and i.partition(":")[0] and i.partition(":")[2] for i in instruments
        ):
            raise ValidationError(
                f'instruments must be a list of "MARKET:TICKER" strings, got {instruments!r}',
                field="instruments",
            )
        return NewsItem(
            source=_string(fields, "source") or self.name,
            url=url,
            title=title,
            summary=clean_text(_string(fields, "summary"), SUMMARY_LIMIT),
            published_at=published,
            guid=_string(fields, "guid") or None,
            instruments=tuple(dict.fromkeys(instruments)),
        )


def _string(fields: dict[str, Any], key: str, *, required: bool = False) -> str:
    value = fields.get(key)
    if value is None:
        if required:
            raise ValidationError(f"{key} is missing", field=key)
        return ""
    if not isinstance(value, str):
        raise ValidationError(f"{key} must be a string, got {value!r}", field=key)
    value = value.strip()
    if required and not value:
        raise ValidationError(f"{key} is empty", field=key)
    return value
