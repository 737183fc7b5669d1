"""Parsing RSS 2.0, Atom 1.0 and RDF (RSS 1.0) feeds into :class:`~quant.news.NewsItem` s.

XML is parsed with :mod:`defusedxml`: a document that declares entities (billion laughs, XXE)
or references external resources is refused, never expanded or fetched. HTML named entities
that XML does not define (``&nbsp;`` written raw in a feed, a common mistake) are tolerated by
rewriting them to character references before a second parse.

Encodings: UTF-8/16, ASCII and Latin-1 go straight to the parser; any other encoding declared in
the XML declaration (EUC-KR, CP949 …, which the expat parser cannot read) is decoded by Python
first, undecodable bytes replaced. A document with no declaration that is not valid UTF-8 is
read as CP949 (a superset of EUC-KR, the usual legacy encoding of Korean sites) when it decodes
as such.

Dates, all returned as timezone-aware UTC:

* RSS ``pubDate`` — RFC 822/2822 (``Fri, 10 May 2024 09:30:00 +0900``) via :mod:`email.utils`;
  the zone names ``KST``/``JST`` are read as +09:00;
* ``dc:date``, Atom ``published``/``updated`` — ISO 8601 (``2024-05-10T09:30:00+09:00``);
* either field in the other format, or as ``2024.05.10 09:30`` / ``2024/05/10 09:30`` (Korean
  sites), is accepted too;
* a date without a zone is read in ``naive_tz`` (UTC unless the caller says otherwise);
  RFC 2822's ``-0000`` ("UTC, local zone unknown") is UTC;
* a missing or unreadable date gives ``published_at=None``; the item is kept.
"""

from __future__ import annotations

import codecs
import html.entities
import re
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit
from xml.etree.ElementTree import Element, ParseError, tostring

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as _defused_fromstring

from quant.errors import ValidationError
from quant.news.items import SUMMARY_LIMIT, FetchResult, NewsItem, clean_text, dedupe

__all__ = ["parse_date", "parse_feed"]

_ATOM = "{http://www.w3.org/2005/Atom}"
_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
_RSS1 = "{http://purl.org/rss/1.0/}"
_RSS090 = "{http://my.netscape.com/rdf/simple/0.9/}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_CONTENT = "{http://purl.org/rss/1.0/modules/content/}"
_XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"

# Encodings expat reads itself (Python codec names).
_NATIVE_ENCODINGS = frozenset({"utf_8", "utf_16", "utf_16_le", "utf_16_be", "ascii", "latin_1"})
_DECLARATION = re.compile(
    rb"""^(\s*<\?xml[^>]*?\bencoding\s*=\s*)(["'])([A-Za-z0-9._:-]+)\2""", re.IGNORECASE
)
_LEADING_SPACE_DECL = re.compile(rb"^\s+(?=<\?xml)")
_NAMED_ENTITY = re.compile(rb"&([A-Za-z][A-Za-z0-9]*);")
_XML_ENTITIES = frozenset({b"amp", b"lt", b"gt", b"quot", b"apos"})
_ZONE_NAMES = re.compile(r"\b(KST|JST)\b", re.IGNORECASE)
_RFC2822_UNKNOWN_ZONE = re.compile(r"-0000\s*$")
_EXTRA_FORMATS = (
    "%Y.%m.%d %H:%M:%S",
    "%Y.%m.%d %H:%M",
    "%Y.%m.%d",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d",
    "%Y%m%d%H%M%S",
)
_LABEL_CHARS = 60


class _Rejected(Exception):
    """An item that cannot become a NewsItem; the message says why."""


def parse_date(text: str | None, *, naive_tz: tzinfo = UTC) -> datetime | None:
    """A feed date as a timezone-aware UTC datetime, or ``None`` when empty or unreadable.

    Accepts RFC 822/2822 (``Fri, 10 May 2024 09:30:00 +0900``, zone names ``GMT``, ``KST`` …),
    ISO 8601 (``2024-05-10T00:30:00Z``) and ``2024.05.10 09:30``-style dates. A time without a
    zone is taken to be in ``naive_tz``; RFC 2822's ``-0000`` is UTC. Never raises.
    """
    if text is None:
        return None
    value = " ".join(text.split())
    if not value:
        return None
    parsed: datetime | None = None
    try:
        parsed = parsedate_to_datetime(_ZONE_NAMES.sub("+0900", value))
        if parsed.tzinfo is None and _RFC2822_UNKNOWN_ZONE.search(value):
            parsed = parsed.replace(tzinfo=UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        parsed = None
    if parsed is None:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
    if parsed is None:
        for fmt in _EXTRA_FORMATS:
            try:
                parsed = datetime.strptime(value, fmt)  # zone applied below
            except ValueError:
                continue
            break
    if parsed is None:
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        parsed = parsed.replace(tzinfo=naive_tz)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):  # a date at the edge of datetime's range
        return None


def _invalid(source: str, what: str) -> ValidationError:
    return ValidationError(f"news feed {source!r} {what}", field="feed", value=source)


def _prepare(data: bytes, source: str) -> bytes:
    """``data`` in an encoding expat can read (see the module docstring)."""
    if data.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data
    data = _LEADING_SPACE_DECL.sub(b"", data, count=1)
    declared = _DECLARATION.match(data[:512])
    if declared is not None:
        label = declared.group(3).decode("ascii")
        try:
            codec = codecs.lookup(label).name.replace("-", "_")
        except LookupError:
            raise _invalid(source, f"declares an unknown encoding {label!r}") from None
        if codec in _NATIVE_ENCODINGS:
            return data
        if codec in ("euc_kr", "cp949"):
            codec = "cp949"  # what Korean sites labelled EUC-KR actually send
        text = data.decode(codec, errors="replace")
        start, end = declared.span(3)
        return (data[:start].decode("ascii") + "utf-8" + text[end:]).encode("utf-8")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            return data.decode("cp949").encode("utf-8")
        except UnicodeDecodeError:
            return data  # let the parser report where it is broken
    return data


def _html_entities_to_references(data: bytes) -> bytes:
    def replace(match: re.Match[bytes]) -> bytes:
        name = match.group(1)
        if name in _XML_ENTITIES:
            return match.group(0)
        codepoint = html.entities.name2codepoint.get(name.decode("ascii"))
        return match.group(0) if codepoint is None else b"&#%d;" % codepoint

    return _NAMED_ENTITY.sub(replace, data)


def _parse_xml(data: bytes, source: str) -> Element:
    """The document's root element; ValidationError when it is not well-formed or unsafe."""
    parse: Callable[[bytes], Element] = _defused_fromstring
    prepared = _prepare(data, source)
    try:
        try:
            return parse(prepared)
        except ParseError as error:
            if "undefined entity" not in str(error):
                raise
            rewritten = _html_entities_to_references(prepared)
            if rewritten == prepared:
                raise
            return parse(rewritten)
    except DefusedXmlException as error:
        raise _invalid(
            source,
            f"was refused as unsafe XML ({type(error).__name__}: {error}); feeds may not "
            "declare entities or reference external resources",
        ) from error
    except ParseError as error:
        raise _invalid(source, f"is not well-formed XML: {error}") from error
    except ValueError as error:  # e.g. an encoding expat rejects after all
        raise _invalid(source, f"could not be read as XML: {error}") from error


def _text(element: Element | None) -> str:
    """All text inside ``element`` (``""`` for ``None``), child elements' text included."""
    if element is None:
        return ""
    return "".join(element.itertext())


def _atom_text(element: Element | None) -> str:
    """The markup or text of an Atom text construct (``type`` text, html or xhtml)."""
    if element is None:
        return ""
    if element.get("type") == "xhtml":
        inner = [element.text or ""]
        inner.extend(tostring(child, encoding="unicode") for child in element)
        return "".join(inner)
    return _text(element)


def _first(element: Element, *tags: str) -> Element | None:
    for tag in tags:
        found = element.find(tag)
        if found is not None and _text(found).strip():
            return found
    return None


def _absolute(link: str, base: str | None) -> str:
    link = link.strip()
    if not link:
        raise _Rejected("no link")
    url = urljoin(base, link) if base else link
    try:
        parts = urlsplit(url)
    except ValueError:
        raise _Rejected(f"link {link!r} is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise _Rejected(f"link {link!r} is not an absolute http(s) URL")
    return url


def _title(raw: str) -> str:
    title = clean_text(raw)
    if not title:
        raise _Rejected("no title")
    return title


def _rss_item(item: Element, base: str | None, source: str, naive_tz: tzinfo) -> NewsItem:
    title = _title(_text(item.find("title")) or _text(item.find(f"{_DC}title")))
    guid_element = item.find("guid")
    guid = _text(guid_element).strip() or None
    link = _text(item.find("link")).strip()
    # RSS 2.0: a guid is the article's permalink unless isPermaLink="false".
    permalink = guid_element is not None and (
        guid_element.get("isPermaLink", "true").strip().lower() != "false"
    )
    if not link and guid is not None and permalink:
        link = guid
    summary = _text(_first(item, "description", f"{_CONTENT}encoded"))
    date = _text(_first(item, "pubDate", f"{_DC}date", f"{_ATOM}updated"))
    return NewsItem(
        source=source,
        url=_absolute(link, base),
        title=title,
        summary=clean_text(summary, SUMMARY_LIMIT),
        published_at=parse_date(date, naive_tz=naive_tz),
        guid=guid,
    )


def _rdf_item(item: Element, ns: str, base: str | None, source: str, naive_tz: tzinfo) -> NewsItem:
    title = _title(_text(item.find(f"{ns}title")) or _text(item.find(f"{_DC}title")))
    about = (item.get(f"{_RDF}about") or "").strip() or None
    link = _text(item.find(f"{ns}link")).strip() or about or ""
    summary = _text(_first(item, f"{ns}description", f"{_CONTENT}encoded", f"{_DC}description"))
    return NewsItem(
        source=source,
        url=_absolute(link, base),
        title=title,
        summary=clean_text(summary, SUMMARY_LIMIT),
        published_at=parse_date(_text(item.find(f"{_DC}date")), naive_tz=naive_tz),
        guid=about,
    )


def _with_base(base: str | None, element: Element) -> str | None:
    own = element.get(_XML_BASE)
    if not own:
        return base
    return urljoin(base, own.strip()) if base else own.strip()


def _atom_entry(entry: Element, base: str | None, source: str, naive_tz: tzinfo) -> NewsItem:
    base = _with_base(base, entry)
    title = _title(_atom_text(entry.find(f"{_ATOM}title")))
    links = [link for link in entry.findall(f"{_ATOM}link") if (link.get("href") or "").strip()]
    alternates = [link for link in links if link.get("rel", "alternate") == "alternate"]
    alternates.sort(key=lambda link: link.get("type", "text/html") != "text/html")
    if not alternates:
        raise _Rejected("no link" if not links else "no alternate link")
    chosen = alternates[0]
    url = _absolute(chosen.get("href", ""), _with_base(base, chosen))
    summary = _atom_text(entry.find(f"{_ATOM}summary")) or _atom_text(entry.find(f"{_ATOM}content"))
    date = _text(_first(entry, f"{_ATOM}published", f"{_ATOM}updated", f"{_DC}date"))
    return NewsItem(
        source=source,
        url=url,
        title=title,
        summary=clean_text(summary, SUMMARY_LIMIT),
        published_at=parse_date(date, naive_tz=naive_tz),
        guid=_text(entry.find(f"{_ATOM}id")).strip() or None,
    )


def _label(source: str, number: int, element: Element) -> str:
    """How a rejected item is named: ``"src item #3 'title…'"``."""
    hint = ""
    for tag in ("title", f"{_ATOM}title", f"{_RSS1}title", "guid", f"{_ATOM}id"):
        text = " ".join(_text(element.find(tag)).split())
        if text:
            if len(text) > _LABEL_CHARS:
                text = text[: _LABEL_CHARS - 1] + "…"
            hint = f" {text!r}"
            break
    return f"{source} item #{number}{hint}"


def parse_feed(
    data: bytes, *, source: str, base_url: str | None = None, naive_tz: tzinfo = UTC
) -> FetchResult:
    """The items of an RSS 2.0 (also 0.9x), Atom 1.0 or RDF/RSS 1.0 document.

    Args:
        data: the document's bytes as received (encoding handled as in the module docstring).
        source: the source name, set on every item and used in messages.
        base_url: the address the document came from; relative item links are resolved
            against it (and Atom ``xml:base``). Without it a relative link is rejected.
        naive_tz: the zone of dates written without one (UTC by default).

    Returns:
        A :class:`FetchResult` whose ``items`` are the usable items, deduplicated by
        :attr:`NewsItem.key` (first kept), in document order, ``summary`` plain text of at most
        :data:`~quant.news.items.SUMMARY_LIMIT` characters, ``published_at`` UTC or ``None``.
        An item without a usable link (missing, not absolute http(s)) or without a title is
        left out and listed in ``rejected`` as ``("<source> item #<n> '<title>'", why)``.

    Raises:
        quant.errors.ValidationError: (``field="feed"``, ``value=source``) the document as a
            whole is not a feed: not well-formed XML, unsafe XML (entity declarations,
            external references), an unknown declared encoding, or a root element other than
            ``<rss>``, Atom ``<feed>`` or ``<rdf:RDF>`` (or ``<rss>`` without ``<channel>``).
    """
    if not isinstance(data, bytes | bytearray):
        raise _invalid(source, f"must be given as bytes, got {type(data).__name__}")
    if not bytes(data).strip():
        raise _invalid(source, "is empty")
    root = _parse_xml(bytes(data), source)
    base = _with_base(base_url, root)
    tag = root.tag
    elements: list[Element]
    parse_one: Callable[[Element], NewsItem]
    if tag == "rss":
        channel = root.find("channel")
        if channel is None:
            raise _invalid(source, "is an <rss> document without a <channel>")
        channel_base = _with_base(base, channel)
        elements = channel.findall("item") or root.findall("item")

        def parse_one(e: Element) -> NewsItem:
            return _rss_item(e, channel_base, source, naive_tz)

    elif tag == f"{_ATOM}feed":
        elements = root.findall(f"{_ATOM}entry")

        def parse_one(e: Element) -> NewsItem:
            return _atom_entry(e, base, source, naive_tz)

    elif tag == f"{_RDF}RDF":
        ns = _RSS090 if root.find(f"{_RSS090}channel") is not None else _RSS1
        if root.find(f"{ns}channel") is None and root.find(f"{ns}item") is None:
            raise _invalid(source, "is an RDF document without an RSS channel or items")
        elements = root.findall(f"{ns}item")

        def parse_one(e: Element) -> NewsItem:
            return _rdf_item(e, ns, base, source, naive_tz)

    else:
        local = tag.rpartition("}")[2]
        raise _invalid(source, f"is not an RSS, Atom or RDF feed: its root element is <{local}>")

    items: list[NewsItem] = []
    rejected: list[tuple[str, str]] = []
    for number, element in enumerate(elements, start=1):
        try:
            items.append(parse_one(element))
        except _Rejected as why:
            rejected.append((_label(source, number, element), str(why)))
    return FetchResult(items=dedupe(items), rejected=rejected)
