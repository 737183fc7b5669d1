"""News: fetching, parsing, deduplicating and tagging news items with the instruments they mention.

* :class:`NewsItem`, :class:`FetchResult`, :class:`NewsSource` — the data model and the protocol
  every source implements (``fetch(since=…)``). Times are timezone-aware UTC.
* :func:`parse_feed` — RSS 2.0 / Atom 1.0 / RDF (RSS 1.0) bytes → items, parsed safely
  (defusedxml); bad items are skipped and listed in ``FetchResult.rejected``.
* :class:`RssSource` (REAL feeds over HTTP), :class:`LocalFileSource` (feed and JSON files),
  :class:`SimulatedNewsSource` (generated headlines for the simulated market, labelled
  ``simulated``).
* :func:`match_instruments` / :class:`InstrumentMatcher` — ticker and company-name matching.

Errors follow :mod:`quant.errors`: network failures, timeouts and HTTP 5xx are
``ServiceUnavailable``, HTTP 429 is ``RateLimited`` (``retry_after`` from ``Retry-After``), other
HTTP refusals are :class:`FeedHTTPError` (permanent), and a document that is not a feed is a
``ValidationError`` naming the source. Nothing here reads the environment or a database.
"""

from __future__ import annotations

from quant.news.feeds import parse_date, parse_feed
from quant.news.items import (
    SUMMARY_LIMIT,
    FetchResult,
    NewsItem,
    NewsSource,
    clean_text,
    mask_url,
    normalize_url,
)
from quant.news.matching import InstrumentMatcher, match_instruments
from quant.news.simulated import SIMULATED_NEWS_HOST, SIMULATED_SOURCE, SimulatedNewsSource
from quant.news.sources import FeedHTTPError, LocalFileSource, RssSource

__all__ = [
    "SIMULATED_NEWS_HOST",
    "SIMULATED_SOURCE",
    "SUMMARY_LIMIT",
    "FeedHTTPError",
    "FetchResult",
    "InstrumentMatcher",
    "LocalFileSource",
    "NewsItem",
    "NewsSource",
    "RssSource",
    "SimulatedNewsSource",
    "clean_text",
    "mask_url",
    "match_instruments",
    "normalize_url",
    "parse_date",
    "parse_feed",
]
