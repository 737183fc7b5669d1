"""quant.backtest.report: the self-contained HTML page and the PNG summary."""

from __future__ import annotations

import base64
import datetime as dt
import io
import re
from typing import Any

import numpy as np
import pytest
from matplotlib import image as mpimg

from quant.backtest.report import ReportData, drawdown, format_metric, render_html, render_png

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_DATA_URI = "data:image/png;base64,"


def _times(n: int) -> np.ndarray:
    start = np.datetime64("2023-01-02", "D")
    return start + np.arange(n).astype("timedelta64[D]")


def _equity(n: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100_000_000.0 * np.cumprod(1.0 + rng.normal(0.0004, 0.012, n))


def _trades(n: int, symbol: str = "KOSPI:005930") -> list[dict[str, Any]]:
    days = _times(max(n + 5, 1))
    rows: list[dict[str, Any]] = []
    for i in range(n):
        win = i % 2 == 0
        rows.append(
            {
                "symbol": symbol,
                "entry_time": days[i],
                "exit_time": days[i + 3],
                "entry_price": 70_000.0 + i,
                "exit_price": 71_500.0 if win else 68_900.0,
                "quantity": 10,
                "pnl": 15_000.0 - 10 * i if win else -11_000.0 - 10 * i,
                "return_pct": 0.0214 if win else -0.0157,
                "exit_reason": "signal" if win else "stop_loss",
            }
        )
    return rows


METRICS: dict[str, float | int | str | None] = {
    "total_return": 0.2345,
    "cagr": 0.1123,
    "volatility": 0.1876,
    "max_drawdown": -0.1532,
    "sharpe": 1.2345,
    "sortino": None,
    "calmar": float("nan"),
    "win_rate": 0.5,
    "exposure": 0.8125,
    "final_equity": 123_456_789.4,
    "num_trades": 12,
    "custom_score": 3.14159,
}


def _data(n: int = 300, trades: list[dict[str, Any]] | None = None, **kw: Any) -> ReportData:
    args: dict[str, Any] = {
        "run_id": "bt-20250101-abc",
        "title": "SMA crossover — KOSPI:005930 — 2023-01-02 … 2024-12-30",
        "times": _times(n),
        "equity": _equity(n),
        "metrics": METRICS,
        "trades": _trades(12) if trades is None else trades,
        "spec": {"strategy": "sma_cross", "params": {"fast": 5, "slow": 20}, "fee_bps": 15},
        "data_version": "candles@2024-12-30#v3",
    }
    args.update(kw)
    return ReportData(**args)


@pytest.fixture(scope="module")
def page() -> str:
    return render_html(_data())


def _data_uris(page: str) -> list[bytes]:
    return [
        base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    ]


def _decode_png(png: bytes) -> np.ndarray:
    assert png.startswith(PNG_SIGNATURE)
    return mpimg.imread(io.BytesIO(png), format="png")


# ---------------------------------------------------------------------------------------------
# HTML


def test_html_is_one_self_contained_page(page: str):
    assert page.startswith("<!DOCTYPE html>")
    assert page.rstrip().endswith("</html>")
    lowered = page.lower()
    assert 'src="http' not in lowered
    assert "<link" not in lowered
    assert "<script" not in lowered
    assert "url(" not in lowered
    assert "@import" not in lowered
    assert '<meta charset="utf-8">' in page


def test_html_embeds_equity_and_drawdown_charts_as_base64_png(page: str):
    assert page.count(PNG_DATA_URI) == 2
    images = [_decode_png(png) for png in _data_uris(page)]
    assert len(images) == 2
    for img in images:
        height, width = img.shape[:2]
        assert width >= 600
        assert height >= 150


def test_html_shows_title_run_id_and_data_version(page: str):
    assert "SMA crossover — KOSPI:005930 — 2023-01-02 … 2024-12-30" in page
    assert "bt-20250101-abc" in page
    assert "candles@2024-12-30#v3" in page
    assert "2023-01-02 … 2023-10-28 (300 bars)" in page


def test_html_formats_metrics_by_kind(page: str):
    rows = dict(
        re.findall(r'<tr><th scope="row" title="([^"]+)">[^<]*</th><td[^>]*>([^<]*)</td>', page)
    )
    assert rows["total_return"] == "23.45%"
    assert rows["cagr"] == "11.23%"
    assert rows["volatility"] == "18.76%"
    assert rows["max_drawdown"] == "-15.32%"
    assert rows["win_rate"] == "50.00%"
    assert rows["exposure"] == "81.25%"
    assert rows["sharpe"] == "1.23"
    assert rows["final_equity"] == "123,456,789 KRW"
    assert rows["num_trades"] == "12"
    assert rows["sortino"] == "n/a"
    assert rows["calmar"] == "n/a"
    assert rows["custom_score"] == "3.14159"  # unknown names: raw value
    assert ">Total return</th>" in page
    assert ">custom_score</th>" in page  # unknown names: raw name


def test_html_has_the_spec_table(page: str):
    assert '<th scope="row">strategy</th><td><code>sma_cross</code></td>' in page
    assert "{&quot;fast&quot;: 5, &quot;slow&quot;: 20}" in page
    assert '<th scope="row">fee_bps</th><td><code>15</code></td>' in page


def test_html_lists_every_trade(page: str):
    body = page.split('<table class="trades">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr[ >].*?</tr>", body.split("<tbody>", 1)[1])
    assert len(rows) == 12
    assert "12 trades." in page
    first = rows[0]
    for cell in ("KOSPI:005930", "2023-01-02", "2023-01-05", "70,000", "71,500", "15,000"):
        assert f">{cell}<" in first
    assert ">2.14%<" in first
    assert ">signal<" in first
    assert 'class="neg"' in rows[1]
    assert ">-1.57%<" in rows[1]
    assert ">stop_loss<" in rows[1]
    assert "P&amp;L (KRW)" in page
    assert '<p class="omitted">' not in page


def test_html_simulated_label_only_when_simulated(page: str):
    assert "SIMULATED" not in page
    simulated = render_html(_data(simulated=True))
    assert "SIMULATED DATA" in simulated
    assert "<title>[SIMULATED]" in simulated


def test_html_escapes_all_text():
    evil = "<script>alert(1)</script>"
    data = _data(
        run_id='run"<b>',
        title=f"Title {evil}",
        trades=[*_trades(2, symbol=evil), {**_trades(1)[0], "exit_reason": evil}],
        spec={evil: evil, "nested": {"x": evil}},
        metrics={evil: evil, "total_return": 0.1},
        data_version=evil,
        currency="<KRW>",
    )
    page = render_html(data)
    assert "<script" not in page
    assert "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "run&quot;&lt;b&gt;" in page
    assert "&lt;KRW&gt;" in page


def test_html_truncates_trades_beyond_max_trades():
    page = render_html(_data(trades=_trades(23)), max_trades=10)
    body = page.split('<table class="trades">', 1)[1].split("</table>", 1)[0]
    assert len(re.findall(r"<tr[ >]", body.split("<tbody>", 1)[1])) == 10
    assert "23 trades." in page
    assert "13 more trades omitted (showing the first 10 of 23)." in page


def test_html_default_max_trades_is_500():
    page = render_html(_data(trades=_trades(501)))
    assert "1 more trade omitted (showing the first 500 of 501)." in page
    assert ">500</td>" in page
    assert ">501</td>" not in page


def test_html_with_max_trades_zero_shows_only_the_count():
    page = render_html(_data(trades=_trades(3)), max_trades=0)
    assert '<table class="trades">' not in page
    assert "3 more trades omitted (showing the first 0 of 3)." in page


def test_html_without_trades_says_so():
    page = render_html(_data(trades=[]))
    assert "No trades." in page
    assert '<table class="trades">' not in page


def test_html_open_trade_shows_open_and_no_exit_price():
    trade = {**_trades(1)[0], "exit_time": None, "exit_price": None, "exit_reason": None}
    page = render_html(_data(trades=[trade]))
    row = re.findall(r"<tr class=\"[^\"]*open[^\"]*\">.*?</tr>", page)
    assert len(row) == 1
    assert '<td class="open">open</td>' in row[0]
    assert '<td class="num">—</td>' in row[0]


def test_html_formats_trade_times_of_several_kinds():
    base = _trades(1)[0]
    trades = [
        {**base, "entry_time": dt.date(2024, 3, 4), "exit_time": "2024-03-08"},
        {
            **base,
            "entry_time": dt.datetime(2024, 3, 4, 9, 0, 5),
            "exit_time": dt.datetime(2024, 3, 8),
        },
    ]
    page = render_html(_data(trades=trades))
    assert ">2024-03-04<" in page
    assert ">2024-03-08<" in page
    assert ">2024-03-04 09:00:05<" in page


def test_html_with_empty_equity_shows_a_message_instead_of_charts():
    data = _data(n=0, trades=[], metrics={})
    page = render_html(data)
    assert PNG_DATA_URI not in page
    assert "No equity data" in page
    assert "No trades." in page
    assert "No metrics." in page
    assert "no data" in page


def test_html_with_no_spec_or_data_version():
    page = render_html(_data(spec={}, data_version=None))
    assert "No spec." in page
    assert "<dt>Data version</dt><dd>n/a</dd>" in page


def test_html_with_nan_days_and_a_single_day_still_renders():
    equity = _equity(50)
    equity[10:15] = np.nan
    assert render_html(_data(n=50, equity=equity)).count(PNG_DATA_URI) == 2
    assert render_html(_data(n=1)).count(PNG_DATA_URI) == 2


def test_html_is_deterministic():
    assert render_html(_data(n=60)) == render_html(_data(n=60))


def test_render_html_rejects_negative_max_trades():
    with pytest.raises(ValueError, match="max_trades"):
        render_html(_data(), max_trades=-1)


# ---------------------------------------------------------------------------------------------
# PNG


def test_png_is_a_decodable_image():
    png = render_png(_data(simulated=True))
    assert png.startswith(PNG_SIGNATURE)
    img = _decode_png(png)
    height, width = img.shape[:2]
    assert (width, height) == (1200, 700)
    # Not a blank canvas: the panels put plenty of non-white pixels on it.
    assert (img[..., :3] < 0.9).any(axis=-1).mean() > 0.02


def test_png_with_empty_equity_and_no_metrics():
    png = render_png(_data(n=0, trades=[], metrics={}))
    assert _decode_png(png).shape[:2] == (700, 1200)


def test_png_with_many_metrics():
    metrics = {f"metric_{i}": float(i) for i in range(60)}
    assert render_png(_data(metrics=metrics)).startswith(PNG_SIGNATURE)


# ---------------------------------------------------------------------------------------------
# Validation and helpers


def test_mismatched_lengths_raise_naming_both():
    with pytest.raises(ValueError, match=r"10 times vs 9 equity values"):
        _data(n=10, equity=_equity(9))


def test_renderers_check_lengths_too():
    data = _data(n=10)
    object.__setattr__(data, "equity", _equity(11))
    with pytest.raises(ValueError, match=r"10 times vs 11 equity"):
        render_html(data)
    with pytest.raises(ValueError, match=r"10 times vs 11 equity"):
        render_png(data)


def test_two_dimensional_equity_is_rejected():
    with pytest.raises(ValueError, match="one-dimensional"):
        _data(n=4, equity=np.ones((2, 2)))


def test_times_may_be_dates_or_strings():
    days = [dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4)]
    page = render_html(_data(n=3, times=days))
    assert "2024-01-02 … 2024-01-04 (3 bars)" in page
    strings = np.array(["2024-01-02", "2024-01-03", "2024-01-04"])
    assert "2024-01-02 … 2024-01-04" in render_html(_data(n=3, times=strings))


def test_drawdown_is_equity_over_running_max_minus_one():
    dd = drawdown([100.0, 110.0, 99.0, 121.0, np.nan, 60.5])
    np.testing.assert_allclose(dd[:4], [0.0, 0.0, 99.0 / 110.0 - 1.0, 0.0])
    assert np.isnan(dd[4])
    assert dd[5] == pytest.approx(-0.5)
    assert drawdown([]).size == 0
    assert np.isnan(drawdown([0.0, 0.0])).all()


@pytest.mark.parametrize(
    ("name", "value", "currency", "text"),
    [
        ("total_return", -0.05, "KRW", "-5.00%"),
        ("profit_factor", float("inf"), "KRW", "∞"),
        ("final_equity", 1234.567, "USD", "1,234.57 USD"),
        ("final_equity", 1_234_567.4, "KRW", "1,234,567 KRW"),
        ("num_trades", 1234, "KRW", "1,234"),
        ("max_drawdown_duration", 45, "KRW", "45 days"),
        ("max_drawdown_days", 12, "KRW", "12 days"),
        ("period_win_rate", 0.5312, "KRW", "53.12%"),
        ("period_profit_factor", 1.456, "KRW", "1.46"),
        ("expectancy", 12_345.6, "KRW", "12,346 KRW"),
        ("periods", 1250, "KRW", "1,250"),
        ("max_drawdown_start", "2024-03-04", "KRW", "2024-03-04"),
        ("sharpe", "n/a-reason", "KRW", "n/a-reason"),
        ("anything", True, "KRW", "True"),
        ("anything", None, "KRW", "n/a"),
        ("anything", float("nan"), "KRW", "n/a"),
    ],
)
def test_format_metric(name: str, value: Any, currency: str, text: str):
    assert format_metric(name, value, currency) == text
