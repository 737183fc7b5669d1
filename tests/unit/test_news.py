"""quant.news: feed parsing, dedup keys, the RSS/local/simulated sources, instrument matching.

Pure: feeds come from ``tests/fixtures/news`` (hand-written in the 한국경제/연합뉴스 style), and
:class:`RssSource` talks to an ``http.server`` on 127.0.0.1 in a thread. No internet.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import pytest

from quant.errors import (
    NotFound,
    PermanentError,
    RateLimited,
    ServiceUnavailable,
    ValidationError,
)
from quant.news import (
    SUMMARY_LIMIT,
    FeedHTTPError,
    FetchResult,
    InstrumentMatcher,
    LocalFileSource,
    NewsItem,
    NewsSource,
    RssSource,
    SimulatedNewsSource,
    clean_text,
    mask_url,
    match_instruments,
    normalize_url,
    parse_date,
    parse_feed,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "news"
KST = timezone(timedelta(hours=9))
SECRET = "s3cr3t-T0KEN"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def item(url: str = "https://example.com/a", **changes: object) -> NewsItem:
    base = NewsItem(source="t", url=url, title="제목", summary="", published_at=None)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# -- parse_feed: RSS 2.0 ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hankyung() -> FetchResult:
    return parse_feed(fixture("hankyung_rss.xml"), source="hankyung-rss")


def test_rss_keeps_good_items_in_order_and_dedupes(hankyung: FetchResult):
    titles = [i.title for i in hankyung.items]
    assert titles == [
        '삼성전자, HBM3E 12단 양산 돌입…"엔비디아 공급 임박"',  # CDATA
        'SK하이닉스 & 한미반도체, "TC본더" 추가 계약 체결',  # &amp; &quot;
        "LG에너지솔루션, 美 GM과 배터리 합작 3공장 가동",
        "카카오, 1분기 영업이익 1,203억원…전년比 92% 증가",
        "셀트리온 소송 리스크 부각",
    ]
    # The 4th <item> is the 1st article again behind tracking parameters: dropped.
    assert len({i.key for i in hankyung.items}) == len(hankyung.items)
    assert all(i.source == "hankyung-rss" for i in hankyung.items)
    assert hankyung.simulated is False


def test_rss_item_without_link_is_rejected_with_a_reason(hankyung: FetchResult):
    assert hankyung.rejected == [
        ("hankyung-rss item #3 '[마감시황] 코스피, 외국인 순매수에 2,730선 회복'", "no link")
    ]


def test_rss_dates_are_converted_to_utc(hankyung: FetchResult):
    by_title = {i.title[:5]: i.published_at for i in hankyung.items}
    assert by_title["삼성전자,"] == datetime(2024, 5, 10, 0, 30, tzinfo=UTC)  # 09:30 +0900
    assert by_title["SK하이닉"] == datetime(2024, 5, 10, 1, 5, 12, tzinfo=UTC)
    assert by_title["LG에너지"] == datetime(2024, 5, 10, 2, 0, tzinfo=UTC)  # dc:date
    assert by_title["카카오, "] is None  # no date at all: kept, undated
    assert by_title["셀트리온 "] == datetime(2024, 5, 10, 4, 20, tzinfo=UTC)  # "13:20 KST"
    for i in hankyung.items:
        assert i.published_at is None or i.published_at.tzinfo is UTC


def test_rss_summaries_are_plain_text(hankyung: FetchResult):
    first, second, third = hankyung.items[:3]
    assert first.summary == (
        "삼성전자(005930)가 5세대 고대역폭메모리(HBM) HBM3E 12단 제품의 양산에 들어갔다. "
        "업계에서는 하반기 실적 개선을 기대하고 있다."
    )  # <img>, <script> and &nbsp; gone, inline <b> did not split a word
    assert second.summary == (
        "SK하이닉스(000660)가 한미반도체(042700)와 215억원 규모의 TC본더 공급 계약을 맺었다."
    )  # escaped HTML
    assert third.summary == "LG에너지솔루션(373220)은 <얼티엄셀즈> 3공장 가동을 시작했다."
    # content:encoded used when there is no description; an escaped "<…>" stays text


def test_rss_guid_and_permalink_guid(hankyung: FetchResult):
    assert hankyung.items[0].guid == "hk-2024051012345"  # isPermaLink="false": not a link
    last = hankyung.items[-1]
    assert last.url == "https://www.hankyung.com/article/2024051012666"  # permalink guid
    assert last.guid == last.url


# -- parse_feed: Atom, RDF, encodings -----------------------------------------------------------


def test_atom_feed():
    result = parse_feed(fixture("yonhap_atom.xml"), source="yonhap-atom")
    first, second = result.items
    assert first.title == "현대차, 인도법인 IPO 추진… 3조원 조달 전망"  # type="html", &hellip;
    assert first.url == "https://www.yna.co.kr/view/AKR20240510030100003"  # not the enclosure
    assert first.published_at == datetime(2024, 5, 9, 23, 15, tzinfo=UTC)  # published wins
    assert first.summary == "현대자동차(005380)가 인도 법인의 기업공개(IPO)를 추진한다."
    assert first.guid == "tag:yna.co.kr,2024:AKR20240510030100003"
    # relative href resolved against xml:base; xhtml content; only <updated>
    assert second.url == "https://www.yna.co.kr/view/AKR20240510040200003"
    assert second.summary == "POSCO홀딩스(005490)는 리튬 투자를 늘린다."
    assert second.published_at == datetime(2024, 5, 10, 0, 40, tzinfo=UTC)
    assert result.rejected == [
        ("yonhap-atom item #3 '네이버 웹툰 美 상장 추진'", "no alternate link")
    ]


def test_rdf_rss_1_0_feed():
    doc = """<?xml version="1.0" encoding="utf-8"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
         xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel rdf:about="https://news.example.kr/rss">
    <title>예시 경제</title><link>https://news.example.kr/</link><description>d</description>
  </channel>
  <item rdf:about="https://news.example.kr/a/1">
    <title>카카오뱅크 순이익 사상 최대</title>
    <link>https://news.example.kr/a/1</link>
    <description>카카오뱅크(323410) 1분기 순이익</description>
    <dc:date>2024-05-10T06:00:00+09:00</dc:date>
  </item>
</rdf:RDF>""".encode()
    (only,) = parse_feed(doc, source="rdf").items
    assert only.title == "카카오뱅크 순이익 사상 최대"
    assert only.published_at == datetime(2024, 5, 9, 21, 0, tzinfo=UTC)
    assert only.guid == "https://news.example.kr/a/1"


def test_euc_kr_feed_is_decoded():
    (only,) = parse_feed(fixture("mt_euckr_rss.xml"), source="mt").items
    assert only.title == "셀트리온, 짐펜트라 美 처방 확대"
    assert only.summary == "셀트리온(068270) 주가 강세"


def test_undeclared_cp949_feed_is_decoded():
    doc = "<rss><channel><item><title>현대차 신고가</title><link>https://a.kr/1</link></item>"
    doc += "</channel></rss>"
    (only,) = parse_feed(doc.encode("cp949"), source="legacy").items
    assert only.title == "현대차 신고가"


def test_raw_html_entities_outside_cdata_are_tolerated():
    doc = b"""<rss version="2.0"><channel><item>
      <title>KB&nbsp;\xea\xb8\x88\xec\x9c\xb5 &middot; &copy;2024 &amp; more</title>
      <link>https://a.kr/1</link></item></channel></rss>"""
    (only,) = parse_feed(doc, source="sloppy").items
    assert only.title == "KB 금융 · ©2024 & more"


def test_relative_link_without_a_base_is_rejected_and_resolved_with_one():
    doc = b"<rss><channel><item><title>t</title><link>/news/1</link></item></channel></rss>"
    result = parse_feed(doc, source="rel")
    assert result.items == []
    assert result.rejected == [("rel item #1 't'", "link '/news/1' is not an absolute http(s) URL")]
    resolved = parse_feed(doc, source="rel", base_url="https://news.example.kr/rss/all.xml")
    assert resolved.items[0].url == "https://news.example.kr/news/1"


def test_javascript_link_and_missing_title_are_rejected():
    doc = b"""<rss><channel>
      <item><title>x</title><link>javascript:alert(1)</link></item>
      <item><link>https://a.kr/2</link></item>
      <item><title>ok</title><link>https://a.kr/3</link></item></channel></rss>"""
    result = parse_feed(doc, source="s")
    assert [i.url for i in result.items] == ["https://a.kr/3"]
    assert [why for _, why in result.rejected] == [
        "link 'javascript:alert(1)' is not an absolute http(s) URL",
        "no title",
    ]


def test_long_summary_is_capped():
    body = "가나다라 " * 1000
    doc = f"<rss><channel><item><title>t</title><link>https://a.kr/1</link><description>{body}"
    doc += "</description></item></channel></rss>"
    (only,) = parse_feed(doc.encode(), source="long").items
    assert len(only.summary) <= SUMMARY_LIMIT
    assert only.summary.endswith("…")


def test_empty_channel_is_an_empty_result():
    result = parse_feed(b"<rss version='2.0'><channel><title>t</title></channel></rss>", source="e")
    assert result == FetchResult(items=[], rejected=[])


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (fixture("not_a_feed.html"), "root element is <html>"),
        (b'{"items": []}', "not well-formed XML"),
        (b"", "is empty"),
        (b"<rss version='2.0'><item/></rss>", "without a <channel>"),
        (b"<rss><channel><item><title>unclosed</channel></rss>", "not well-formed XML"),
        (b'<?xml version="1.0" encoding="x-no-such-codec"?><rss/>', "unknown encoding"),
    ],
)
def test_non_feed_document_is_a_validation_error_naming_the_source(data: bytes, why: str):
    with pytest.raises(ValidationError, match=why) as raised:
        parse_feed(data, source="hankyung-rss")
    assert "'hankyung-rss'" in str(raised.value)
    assert raised.value.field == "feed"
    assert raised.value.value == "hankyung-rss"


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<rss><channel><item><title>&lol9;</title><link>https://a.kr/1</link></item></channel></rss>"""


def test_billion_laughs_is_refused():
    with pytest.raises(ValidationError, match="refused as unsafe XML") as raised:
        parse_feed(BILLION_LAUGHS, source="evil")
    assert "'evil'" in str(raised.value)


def test_xxe_is_refused(tmp_path: Path):
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET)
    doc = f"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file://{secret_file}">]>
<rss><channel><item><title>&xxe;</title><link>https://a.kr/1</link></item></channel></rss>"""
    with pytest.raises(ValidationError, match="refused as unsafe XML") as raised:
        parse_feed(doc.encode(), source="evil")
    assert SECRET not in str(raised.value)


# -- dates and text -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Fri, 10 May 2024 09:30:00 +0900", datetime(2024, 5, 10, 0, 30, tzinfo=UTC)),
        ("Fri, 10 May 2024 09:30:00 GMT", datetime(2024, 5, 10, 9, 30, tzinfo=UTC)),
        ("10 May 2024 09:30 KST", datetime(2024, 5, 10, 0, 30, tzinfo=UTC)),
        ("Fri, 10 May 2024 09:30:00 -0000", datetime(2024, 5, 10, 9, 30, tzinfo=UTC)),
        ("2024-05-10T09:30:00+09:00", datetime(2024, 5, 10, 0, 30, tzinfo=UTC)),
        ("2024-05-10T00:30:00Z", datetime(2024, 5, 10, 0, 30, tzinfo=UTC)),
        ("2024-05-10T00:30:00.123456Z", datetime(2024, 5, 10, 0, 30, 0, 123456, tzinfo=UTC)),
        ("2024.05.10 09:30", datetime(2024, 5, 10, 9, 30, tzinfo=UTC)),  # naive → naive_tz
        ("  ", None),
        ("어제 오후", None),
        (None, None),
    ],
)
def test_parse_date(text: str | None, expected: datetime | None):
    assert parse_date(text) == expected


def test_parse_date_reads_naive_times_in_the_given_zone():
    assert parse_date("2024-05-10 09:30:00", naive_tz=KST) == datetime(
        2024, 5, 10, 0, 30, tzinfo=UTC
    )


def test_clean_text():
    assert clean_text("<p>a<b>IPO</b>를</p><p>b<br/>c</p><style>p{}</style>") == "aIPO를 b c"
    assert clean_text("R&D · M&A · AT&amp;T  \n\t S&P") == "R&D · M&A · AT&T S&P"
    assert clean_text("&amp;quot;인용&amp;quot;") == '"인용"'  # escaped twice
    assert clean_text(None) == ""
    assert clean_text("가" * 10, limit=5) == "가가가가…"


# -- NewsItem and keys --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [
        "https://www.hankyung.com/article/2024051012345",
        "HTTPS://WWW.HANKYUNG.COM/article/2024051012345",
        "https://www.hankyung.com/article/2024051012345/",
        "https://www.hankyung.com:443/article/2024051012345",
        "https://www.hankyung.com/article/2024051012345#comments",
        "https://www.hankyung.com/article/2024051012345?utm_source=rss&utm_medium=feed",
        "https://www.hankyung.com/article/2024051012345?UTM_Campaign=x&fbclid=IwAR0&gclid=Cj0",
        "  https://www.hankyung.com/article/2024051012345  ",
    ],
)
def test_key_ignores_case_tracking_params_fragments_and_trailing_slash(variant: str):
    reference = item("https://www.hankyung.com/article/2024051012345")
    assert item(variant).key == reference.key
    assert len(reference.key) == 64
    assert int(reference.key, 16) >= 0


def test_key_keeps_what_identifies_an_article():
    keys = {
        item(url).key
        for url in [
            "https://www.hankyung.com/article/2024051012345",
            "https://www.hankyung.com/article/2024051012346",
            "https://www.hankyung.com/Article/2024051012345",  # path case matters
            "http://other.example.kr/article/2024051012345",
            "https://www.edaily.co.kr/News/Read?newsId=1",
            "https://www.edaily.co.kr/News/Read?newsId=2",
        ]
    }
    assert len(keys) == 6
    assert normalize_url("https://a.kr/r?b=2&a=1&utm_x=9") == "https://a.kr/r?a=1&b=2"


def test_key_falls_back_to_guid_then_source_title_date():
    when = datetime(2024, 5, 10, tzinfo=UTC)
    assert item("", guid="g-1").key == item(" ", guid="g-1").key != item("", guid="g-2").key
    a = item("", title="A", published_at=when)
    assert a.key == item("", title="A", published_at=when).key
    assert a.key != item("", title="B", published_at=when).key
    assert a.key != item("", title="A", published_at=None).key


def test_news_item_requires_aware_times_and_stores_utc():
    with pytest.raises(ValidationError, match="timezone-aware"):
        item(published_at=datetime(2024, 5, 10, 9, 30))
    kst = item(published_at=datetime(2024, 5, 10, 9, 30, tzinfo=KST))
    assert kst.published_at == datetime(2024, 5, 10, 0, 30, tzinfo=UTC)
    assert kst.published_at is not None
    assert kst.published_at.tzinfo is UTC


def test_mask_url():
    masked = mask_url(f"https://user:{SECRET}@feeds.example.kr/rss?key={SECRET}&lang=ko&flag#x")
    assert SECRET not in masked
    assert masked == "https://user:***@feeds.example.kr/rss?key=***&lang=***&flag"


# -- RssSource against a local HTTP server ------------------------------------------------------


class _FeedHandler(BaseHTTPRequestHandler):
    requests: ClassVar[list[tuple[str, dict[str, str]]]] = []

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None):
        try:
            self.send_response(status)
            for name, value in {"Content-Type": "application/rss+xml", **(headers or {})}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out first
            pass

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        type(self).requests.append((self.path, dict(self.headers.items())))
        if path == "/hankyung.xml":
            self._reply(200, fixture("hankyung_rss.xml"))
        elif path == "/atom.xml":
            self._reply(200, fixture("yonhap_atom.xml"), {"Content-Type": "application/atom+xml"})
        elif path == "/moved":
            self._reply(301, headers={"Location": "/hankyung.xml"})
        elif path == "/429":
            self._reply(429, b"slow down", {"Retry-After": "7"})
        elif path == "/503":
            self._reply(503, b"maintenance")
        elif path == "/500":
            self._reply(500, b"oops")
        elif path == "/slow":
            time.sleep(1.5)
            self._reply(200, fixture("hankyung_rss.xml"))
        elif path == "/html":
            self._reply(200, fixture("not_a_feed.html"), {"Content-Type": "text/html"})
        elif path == "/403":
            self._reply(403, b"forbidden")
        else:
            self._reply(404, b"not found")


@pytest.fixture(scope="module")
def feed_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FeedHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_rss_source_fetches_and_parses(feed_server: str):
    with RssSource(f"{feed_server}/hankyung.xml", name="hankyung-rss") as source:
        result = source.fetch()
    assert isinstance(source, NewsSource)
    assert len(result.items) == 5
    assert result.items[0].source == "hankyung-rss"
    assert len(result.rejected) == 1
    assert result.simulated is False
    _, headers = _FeedHandler.requests[-1]
    assert headers["User-Agent"] == "quantbeat/0.1 (+news)"


def test_rss_source_follows_redirects_and_resolves_against_the_final_url(feed_server: str):
    with RssSource(f"{feed_server}/moved", name="moved", user_agent="ua-test/1") as source:
        result = source.fetch()
    assert len(result.items) == 5
    assert _FeedHandler.requests[-1][1]["User-Agent"] == "ua-test/1"


def test_rss_source_since_filters_older_items_but_keeps_undated(feed_server: str):
    since = datetime(2024, 5, 10, 11, 0, tzinfo=KST)  # 02:00 UTC
    with RssSource(f"{feed_server}/hankyung.xml", name="hk") as source:
        result = source.fetch(since=since)
    assert [(i.title[:4], i.published_at) for i in result.items] == [
        ("LG에너", datetime(2024, 5, 10, 2, 0, tzinfo=UTC)),  # equal to since: kept
        ("카카오,", None),
        ("셀트리온", datetime(2024, 5, 10, 4, 20, tzinfo=UTC)),
    ]
    with pytest.raises(ValidationError, match="since"):
        source.fetch(since=datetime(2024, 5, 10))


def test_rss_source_429_is_rate_limited_with_retry_after(feed_server: str):
    with (
        RssSource(f"{feed_server}/429", name="hk") as source,
        pytest.raises(RateLimited, match="HTTP 429") as raised,
    ):
        source.fetch()
    assert raised.value.retry_after == 7


@pytest.mark.parametrize("path", ["/503", "/500"])
def test_rss_source_5xx_is_service_unavailable(feed_server: str, path: str):
    with (
        RssSource(f"{feed_server}{path}", name="hk") as source,
        pytest.raises(ServiceUnavailable, match=f"HTTP {path[1:]}"),
    ):
        source.fetch()


def test_rss_source_timeout_is_service_unavailable(feed_server: str):
    with (
        RssSource(f"{feed_server}/slow", name="hk", timeout=0.2) as source,
        pytest.raises(ServiceUnavailable, match=r"timed out after 0\.2 s"),
    ):
        source.fetch()


def test_rss_source_connection_refused_is_service_unavailable():
    import socket

    with socket.socket() as probe:  # a port that nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (
        RssSource(f"http://127.0.0.1:{port}/rss?apikey={SECRET}", name="down") as source,
        pytest.raises(ServiceUnavailable, match="ConnectError") as raised,
    ):
        source.fetch()
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize(("path", "status"), [("/missing.xml", 404), ("/403", 403)])
def test_rss_source_other_4xx_is_permanent_and_masks_secrets(
    feed_server: str, path: str, status: int
):
    url = f"{feed_server}{path}?serviceKey={SECRET}&lang=ko"
    with (
        RssSource(url, name="hk") as source,
        pytest.raises(FeedHTTPError) as raised,
    ):
        source.fetch()
    error = raised.value
    assert isinstance(error, PermanentError)
    assert error.status == status
    assert f"HTTP {status}" in str(error)
    assert f"{path}?serviceKey=***&lang=***" in str(error)
    assert SECRET not in str(error)
    assert SECRET not in error.url
    assert SECRET not in repr(source)


def test_rss_source_non_feed_body_is_a_validation_error(feed_server: str):
    with (
        RssSource(f"{feed_server}/html", name="hk") as source,
        pytest.raises(ValidationError, match="'hk' is not an RSS, Atom or RDF feed"),
    ):
        source.fetch()


def test_rss_source_refuses_oversized_bodies(feed_server: str):
    with (
        RssSource(f"{feed_server}/atom.xml", name="atom", max_bytes=100) as source,
        pytest.raises(ValidationError, match="larger than 100 bytes"),
    ):
        source.fetch()


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"url": "ftp://a.kr/rss", "name": "x"}, "url"),
        ({"url": "/relative/rss", "name": "x"}, "url"),
        ({"url": "https://a.kr/rss", "name": ""}, "name"),
        ({"url": "https://a.kr/rss", "name": "x", "timeout": 0}, "timeout"),
    ],
)
def test_rss_source_validates_arguments(args: dict[str, object], field: str):
    with pytest.raises(ValidationError) as raised:
        RssSource(**args)  # type: ignore[arg-type]
    assert raised.value.field == field


# -- LocalFileSource ----------------------------------------------------------------------------


def test_local_directory_reads_feeds_and_json_lines_rejecting_bad_lines():
    source = LocalFileSource(FIXTURES / "local")
    result = source.fetch()
    assert isinstance(source, NewsSource)
    assert [i.title for i in result.items] == [
        "한화에어로스페이스, 폴란드 K9 2차 실행계약 체결",  # edaily.rss (name order)
        "두산에너빌리티, 체코 원전 우선협상대상자 기대감",
        "에코프로비엠, 삼성SDI와 44조 규모 양극재 공급 계약",  # items.jsonl
        "알테오젠 신고가",
    ]
    jsonl = FIXTURES / "local" / "items.jsonl"
    assert [what for what, _ in result.rejected] == [f"{jsonl}:2", f"{jsonl}:5"]
    assert "not valid JSON" in result.rejected[0][1]
    assert "url is missing" in result.rejected[1][1]
    eco, alteo = result.items[2:]
    assert eco.summary == "에코프로비엠(247540) 수주"  # HTML stripped
    assert eco.instruments == ("KOSDAQ:247540",)
    assert eco.published_at == datetime(2024, 5, 10, 2, 0, tzinfo=UTC)
    assert eco.source == "local"
    assert (alteo.source, alteo.guid, alteo.published_at) == ("mk-import", "mk-11012347", None)
    assert result.items[0].source == "local"  # feed items carry the source name


def test_local_since_and_single_files(tmp_path: Path):
    since = datetime(2024, 5, 10, tzinfo=UTC)
    result = LocalFileSource(FIXTURES / "local", name="offline").fetch(since=since)
    assert [i.title[:4] for i in result.items] == ["에코프로", "알테오젠"]
    feed = LocalFileSource(FIXTURES / "yonhap_atom.xml", name="yna").fetch()
    assert len(feed.items) == 2
    assert all(i.source == "yna" for i in feed.items)
    array = tmp_path / "batch.json"
    array.write_text(
        json.dumps(
            [
                {"url": "https://a.kr/1", "title": "t1", "published_at": "2024-05-10T09:00+09:00"},
                {"url": "https://a.kr/1#dup", "title": "t1 again"},
                {"url": "https://a.kr/2", "title": "t2", "instruments": "KOSPI:005930"},
                ["not", "an", "object"],
            ],
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    result = LocalFileSource(array).fetch()
    assert [i.title for i in result.items] == ["t1"]
    assert [what for what, _ in result.rejected] == [f"{array}[2]", f"{array}[3]"]


def test_local_directory_rejects_a_broken_file_but_raises_for_a_single_one(tmp_path: Path):
    (tmp_path / "broken.xml").write_bytes(b"<rss><channel>")
    (tmp_path / "good.rss").write_bytes(fixture("hankyung_rss.xml"))
    result = LocalFileSource(tmp_path).fetch()
    assert len(result.items) == 5
    assert result.rejected[0][0] == str(tmp_path / "broken.xml")
    assert "not well-formed" in result.rejected[0][1]
    assert result.rejected[1][0].startswith(f"{tmp_path / 'good.rss'}: local item #3")
    with pytest.raises(ValidationError, match="not well-formed"):
        LocalFileSource(tmp_path / "broken.xml").fetch()
    with pytest.raises(ValidationError, match="unknown suffix"):
        LocalFileSource(FIXTURES / "local" / "README.txt").fetch()
    with pytest.raises(NotFound):
        LocalFileSource(tmp_path / "nope").fetch()


# -- SimulatedNewsSource ------------------------------------------------------------------------

UNIVERSE = [(f"KOSPI:{100000 + i:06d}", f"시뮬전자 {i:04d}") for i in range(400)]


def test_simulated_is_deterministic_per_seed_and_day():
    day = date(2024, 5, 10)
    first = SimulatedNewsSource(UNIVERSE, seed=7, day=day).fetch()
    again = SimulatedNewsSource(UNIVERSE, seed=7, day=day).fetch()
    assert first == again
    assert first.items  # 400 × 5 % ≈ 20 instruments with news
    other_day = SimulatedNewsSource(UNIVERSE, seed=7, day=date(2024, 5, 13)).fetch()
    other_seed = SimulatedNewsSource(UNIVERSE, seed=8, day=day).fetch()
    assert {i.key for i in first.items}.isdisjoint(i.key for i in other_day.items)
    assert [i.title for i in first.items] != [i.title for i in other_seed.items]
    # An instrument's news does not depend on the rest of the universe.
    subset = SimulatedNewsSource(UNIVERSE[:50], seed=7, day=day).fetch()
    assert subset.items == [i for i in first.items if i.instruments[0] in dict(UNIVERSE[:50])]


def test_simulated_items_are_labelled_and_mention_their_instrument():
    day = date(2024, 5, 10)
    result = SimulatedNewsSource(UNIVERSE, day=day, rate=0.1).fetch()
    assert result.simulated is True
    names = dict(UNIVERSE)
    mentioned = {i.instruments[0] for i in result.items}
    assert 20 <= len(mentioned) <= 70  # ~10 % of 400
    window = (datetime(2024, 5, 10, 6, tzinfo=KST), datetime(2024, 5, 10, 15, tzinfo=KST))
    for news in result.items:
        assert news.source == "simulated"
        assert news.url.startswith("https://news.simulated.invalid/2024/05/10/")
        assert news.summary.startswith("[SIMULATED]")
        (instrument,) = news.instruments
        ticker = instrument.split(":")[1]
        assert names[instrument] in news.title
        assert ticker in news.title
        assert news.published_at is not None
        assert news.published_at.tzinfo is UTC
        assert window[0] <= news.published_at < window[1]
    assert len({i.key for i in result.items}) == len(result.items)
    times = [i.published_at for i in result.items if i.published_at is not None]
    assert times == sorted(times)
    # Both languages and both tones occur.
    text = " ".join(i.title for i in result.items)
    assert any(w in text for w in ("수주", "실적 개선", "신고가", "자사주", "wins", "high"))
    assert any(w in text for w in ("유상증자", "소송", "영업손실", "lawsuit", "rights offering"))
    assert any(c.isascii() and c.isalpha() for c in text)
    # The simulated items match back to their instruments.
    universe = {inst: [inst.split(":")[1], name] for inst, name in UNIVERSE}
    matched = match_instruments(result.items, universe)
    for original, news in zip(result.items, matched, strict=True):
        assert news.instruments == original.instruments


def test_simulated_rate_bounds_since_and_validation():
    day = date(2024, 5, 10)
    assert SimulatedNewsSource(UNIVERSE, day=day, rate=0).fetch().items == []
    everyone = SimulatedNewsSource(UNIVERSE[:30], day=day, rate=1).fetch()
    assert {i.instruments[0] for i in everyone.items} == set(dict(UNIVERSE[:30]))
    noon = datetime(2024, 5, 10, 12, tzinfo=KST)
    late = SimulatedNewsSource(UNIVERSE[:30], day=day, rate=1).fetch(since=noon)
    assert late.items
    assert all(i.published_at and i.published_at >= noon for i in late.items)
    assert late.simulated is True
    for bad in (
        {"instruments": [("005930", "삼성")], "day": day},
        {"instruments": [("KOSPI:005930", "")], "day": day},
        {"instruments": UNIVERSE, "day": datetime(2024, 5, 10, tzinfo=UTC)},
        {"instruments": UNIVERSE, "day": day, "rate": 1.5},
    ):
        with pytest.raises(ValidationError):
            SimulatedNewsSource(**bad)  # type: ignore[arg-type]


# -- match_instruments --------------------------------------------------------------------------

KRX = {
    "KOSPI:005930": ["005930", "삼성전자"],
    "KOSPI:005935": ["005935", "삼성전자우"],
    "KOSPI:000660": ["000660", "SK하이닉스", "SK hynix"],
    "KOSPI:003550": ["003550", "LG"],
    "KOSPI:066570": ["066570", "LG전자", "LG Electronics"],
    "KOSPI:035420": ["035420", "NAVER", "네이버"],
    "KOSDAQ:247540": ["247540", "에코프로비엠"],
    "UPBIT:KRW-BTC": ["BTC", "비트코인", "Bitcoin"],
}


def tagged(title: str, summary: str = "") -> tuple[str, ...]:
    news = item(title=title, summary=summary)
    (result,) = match_instruments([news], KRX)
    return result.instruments


def test_match_by_ticker_and_korean_name():
    assert tagged("삼성전자, HBM 양산") == ("KOSPI:005930",)
    assert tagged("특징주", "에코프로비엠(247540)이 강세다") == ("KOSDAQ:247540",)
    assert tagged("A005930 외국인 순매수") == ("KOSPI:005930",)  # KRX "A" prefix
    assert tagged("SK하이닉스와 삼성전자가 나란히 상승") == ("KOSPI:000660", "KOSPI:005930")
    assert tagged("비트코인 1억 돌파") == ("UPBIT:KRW-BTC",)


def test_no_match_on_part_of_a_longer_number_or_name():
    assert tagged("코드 1005930 과 0059301, 금액 2,000,660원") == ()
    assert tagged("삼성전자우 급등") == ("KOSPI:005935",)  # longest name wins
    assert tagged("LG전자 목표가 상향") == ("KOSPI:066570",)  # not LG (003550)
    assert tagged("LG, 자회사 지분 확대") == ("KOSPI:003550",)


def test_ascii_names_match_whole_words_only():
    assert tagged("LGES and LGD rally") == ()
    assert tagged("Naver Webtoon IPO") == ("KOSPI:035420",)  # long names: any case
    assert tagged("NAVER의 AI 전략") == ("KOSPI:035420",)  # a Korean particle is a boundary
    assert tagged("SK Hynix beats estimates") == ("KOSPI:000660",)
    assert tagged("BTC hits record; btcusd, WBTC flat") == ("UPBIT:KRW-BTC",)
    assert tagged("btc rallies") == ()  # ≤ 3-letter aliases are case-sensitive
    assert tagged("Bitcoins everywhere") == ()


def test_match_keeps_other_fields_and_replaces_instruments():
    news = item(title="삼성전자 신고가", instruments=("KOSPI:999999",), guid="g")
    (result,) = match_instruments([news], KRX)
    assert result.instruments == ("KOSPI:005930",)
    assert dataclasses.replace(result, instruments=news.instruments) == news
    assert match_instruments([], KRX) == []


def test_match_validates_the_universe():
    with pytest.raises(ValidationError, match="MARKET:TICKER"):
        InstrumentMatcher({"005930": ["삼성전자"]})
    with pytest.raises(ValidationError, match="not a string"):
        InstrumentMatcher({"KOSPI:005930": [5930]})  # type: ignore[list-item]
    # A bare string is one alias, not a sequence of characters.
    assert InstrumentMatcher({"KOSPI:005930": "삼성전자"}).find("삼 성 삼성전자") == [
        "KOSPI:005930"
    ]


def test_match_cost_for_2500_instruments_and_500_items():
    universe = {
        f"KOSPI:{100000 + i * 7:06d}": [f"{100000 + i * 7:06d}", f"종목{i:04d}", f"Corp{i:04d}"]
        for i in range(2500)
    }
    names = list(universe.items())
    items = [
        item(
            f"https://a.kr/{n}",
            title=f"{names[n * 3 % 2500][1][1]} 실적 발표, {names[n * 7 % 2500][1][0]} 동반 상승",
            summary=("코스피 시장 동향과 외국인 수급, 반도체 업황 " * 12)
            + f"Corp{n * 11 % 2500:04d} shares",
        )
        for n in range(500)
    ]
    tagged_items = match_instruments(items, universe)
    for n, news in enumerate(tagged_items):
        expected = [names[n * k % 2500][0] for k in (3, 7, 11)]
        assert news.instruments == tuple(dict.fromkeys(expected))
