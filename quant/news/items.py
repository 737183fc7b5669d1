"""News items, fetch results, the source protocol, and the text/URL helpers they rely on.

Everything here is pure: no I/O. Times are timezone-aware UTC :class:`datetime.datetime` s.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from quant.errors import ValidationError

__all__ = [
    "SUMMARY_LIMIT",
    "TRACKING_PARAMS",
    "FetchResult",
    "NewsItem",
    "NewsSource",
    "clean_text",
    "mask_url",
    "normalize_url",
]

#: Longest ``NewsItem.summary`` in characters (longer text is cut and ends with "…").
SUMMARY_LIMIT = 2000
#: Query parameters dropped by :func:`normalize_url` (besides every ``utm_*`` one).
TRACKING_PARAMS = frozenset({"fbclid", "gclid"})

_WHITESPACE = re.compile(r"\s+")
# An entity or a tag still present after one pass of HTML decoding.
_LEFTOVER = re.compile(r"&(?:[a-zA-Z][a-zA-Z0-9]*|#[0-9]+|#[xX][0-9a-fA-F]+);|</?[a-zA-Z][^<>]*>")
# Tags whose content is never text a reader sees.
_HIDDEN_TAGS = frozenset({"script", "style", "head", "title", "template", "noscript"})
# Tags that separate words; inline ones (b, a, span …) do not: ``<b>IPO</b>를`` is one word.
_BREAKING_TAGS = frozenset(
    {
        *("address", "article", "aside", "blockquote", "br", "caption", "dd", "div", "dl"),
        *("dt", "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6"),
        *("header", "hr", "img", "li", "main", "nav", "ol", "p", "pre", "section", "table"),
        *("tbody", "td", "tfoot", "th", "thead", "tr", "ul", "iframe", "video", "audio"),
    }
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _TextExtractor(HTMLParser):
    """Collects the visible text of an HTML fragment; block tags and ``<br>`` break words."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def _break(self, tag: str) -> None:
        if tag.rpartition(":")[2] in _BREAKING_TAGS:  # "html:p" from serialized XHTML
            self.parts.append(" ")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag.rpartition(":")[2] in _HIDDEN_TAGS:
            self._hidden += 1
        self._break(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag.rpartition(":")[2] in _HIDDEN_TAGS and self._hidden:
            self._hidden -= 1
        self._break(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._break(tag)

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def _extract(markup: str) -> str:
    extractor = _TextExtractor()
    extractor.feed(markup)
    extractor.close()
    return "".join(extractor.parts)


def clean_text(value: str | None, limit: int | None = None) -> str:
    """Plain text from an HTML (or plain) fragment.

    Tags are removed (``<script>``/``<style>`` content with them), HTML entities decoded
    (``&amp;nbsp;`` escaped twice in a feed becomes a space too), whitespace collapsed to single
    spaces and the ends stripped. With ``limit`` (characters), longer text is cut at a word
    boundary when one is near and ends with "…", the total staying ``<= limit``.
    """
    if not value:
        return ""
    text = _extract(value)
    if _LEFTOVER.search(text):  # markup escaped twice (``&amp;quot;``, ``&amp;lt;b&amp;gt;``)
        text = _extract(text)
    text = _WHITESPACE.sub(" ", text).strip()
    if limit is not None and len(text) > limit:
        cut = text[: limit - 1]
        space = cut.rfind(" ")
        if space >= limit * 0.8:
            cut = cut[:space]
        text = cut.rstrip() + "…"
    return text


def normalize_url(url: str) -> str:
    """``url`` in the canonical form news items are deduplicated on.

    Scheme and host are lower-cased, a default port (``:80`` for http, ``:443`` for https) and
    the fragment are dropped, tracking parameters (``utm_*``, ``fbclid``, ``gclid``, any case)
    are removed, the remaining query parameters are sorted, and a trailing slash is removed
    from the path (an empty path becomes ``/``). Surrounding whitespace is ignored. Text
    that is not a parseable URL is returned stripped, unchanged otherwise.
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # e.g. an unbalanced IPv6 bracket: the text itself is the best key
        return url.strip()
    scheme = parts.scheme.lower()
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    hostport = hostport.lower()
    host, colon, port = hostport.rpartition(":")
    if colon and "]" not in port and port.isdigit() and _DEFAULT_PORTS.get(scheme) == int(port):
        hostport = host
    netloc = f"{userinfo}{at}{hostport}"
    path = parts.path or "/"
    if len(path) > 1:
        path = path.rstrip("/") or "/"
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not k.lower().startswith("utm_") and k.lower() not in TRACKING_PARAMS
    ]
    query.sort()
    return urlunsplit((scheme, netloc, path, urlencode(query), ""))


def mask_url(url: str) -> str:
    """``url`` safe to show in logs and errors: every query value and any password in the
    userinfo replaced by ``***`` (parameter names are kept), the fragment dropped."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}{':***' if colon else ''}@{hostport}"
    query = "&".join(
        f"{name}=***" if sep else name
        for name, sep, _value in (p.partition("=") for p in parts.query.split("&") if p)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class NewsItem:
    """One news article as a source reported it.

    Attributes:
        source: the name of the source that produced it (``"hankyung-rss"``, ``"local"``,
            ``"simulated"`` …).
        url: the article's absolute URL as published (not normalized; see :attr:`key`).
        title: plain text.
        summary: plain text (HTML stripped, whitespace collapsed), at most
            :data:`SUMMARY_LIMIT` characters; ``""`` when the source gave none.
        published_at: publication time, timezone-aware UTC, or ``None`` when unknown.
        guid: the source's own identifier (RSS ``guid``, Atom ``id``), if any.
        instruments: ``"MARKET:TICKER"`` identifiers of the instruments the item mentions,
            filled by :func:`quant.news.match_instruments` (or by the simulated source).

    Raises:
        quant.errors.ValidationError: ``published_at`` is a naive datetime (its instant would
            be ambiguous) or not a datetime. An aware one is converted to UTC.
    """

    source: str
    url: str
    title: str
    summary: str
    published_at: datetime | None
    guid: str | None = None
    instruments: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        when = self.published_at
        if when is not None:
            if not isinstance(when, datetime) or when.tzinfo is None or when.utcoffset() is None:
                raise ValidationError(
                    f"published_at of news item {self.url!r} must be a timezone-aware "
                    f"datetime, got {when!r}",
                    field="published_at",
                    value=when,
                )
            if when.utcoffset() or when.tzinfo is not UTC:
                object.__setattr__(self, "published_at", when.astimezone(UTC))
        if not isinstance(self.instruments, tuple):
            object.__setattr__(self, "instruments", tuple(self.instruments))

    @property
    def key(self) -> str:
        """Deduplication key: 64 hex characters.

        The SHA-256 of :func:`normalize_url` of :attr:`url`, so the same article reached
        through tracking links, with a fragment or different host case has one key. Without a
        URL: the SHA-256 of ``"guid:" + guid``, else of ``source``, ``title`` and
        ``published_at`` (ISO 8601) joined by newlines.
        """
        if self.url.strip():
            return _sha256(normalize_url(self.url))
        if self.guid:
            return _sha256(f"guid:{self.guid}")
        published = self.published_at.isoformat() if self.published_at is not None else ""
        return _sha256(f"item:{self.source}\n{self.title}\n{published}")


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one :meth:`NewsSource.fetch` produced.

    Attributes:
        items: the good items, at most one per :attr:`NewsItem.key` (first occurrence kept),
            in source order.
        rejected: ``(what, why)`` for every item (or file, or line) that could not be used,
            e.g. ``("hankyung-rss item #3 '…'", "no link")``; the good items are kept.
        simulated: ``True`` when the items were generated (the simulated source), never real
            news; every report built on them must say so.
    """

    items: list[NewsItem]
    rejected: list[tuple[str, str]] = field(default_factory=list)
    simulated: bool = False


@runtime_checkable
class NewsSource(Protocol):
    """A provider of news items.

    ``name`` identifies the source in stored rows. :meth:`fetch` returns what the source
    currently offers, skipping items published before ``since`` (timezone-aware; items without
    a date are always kept).

    Implementations raise :class:`quant.errors.TransientError` (``ServiceUnavailable``,
    ``RateLimited``) for failures worth retrying and :class:`quant.errors.PermanentError`
    (``ValidationError`` …) for ones that will repeat.
    """

    name: str

    def fetch(self, *, since: datetime | None = None) -> FetchResult:
        """The source's items, deduplicated by key, without those published before ``since``."""
        ...


def dedupe(items: list[NewsItem]) -> list[NewsItem]:
    """``items`` without repeated keys (the first occurrence kept, order preserved)."""
    seen: set[str] = set()
    out: list[NewsItem] = []
    for item in items:
        key = item.key
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def keep_since(items: list[NewsItem], since: datetime | None) -> list[NewsItem]:
    """``items`` published at or after ``since`` (aware), plus those without a date."""
    if since is None:
        return items
    return [i for i in items if i.published_at is None or i.published_at >= since]
