"""Backtest reports: one self-contained HTML page, or one PNG summary image.

Both renderers are pure: they take a :class:`ReportData` and return ``str`` / ``bytes``; they
never write files, read the environment or touch global plotting state. Charts are drawn with
matplotlib's object API (:class:`matplotlib.figure.Figure` on a
:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`), not ``pyplot``, so rendering keeps
no global figure registry and is safe to call from several worker threads at once.

Units:

* ``equity`` is the portfolio value per day in ``currency`` units (KRW by default);
* fraction metrics (``total_return``, ``cagr``, ``volatility``, ``max_drawdown``, ``win_rate``,
  ``exposure`` and the others in :data:`PERCENT_METRICS`) and a trade's ``return_pct`` are
  fractions (``0.125`` is shown as ``12.50%``);
* the drawdown chart shows ``equity / running max - 1`` in percent (see :func:`drawdown`).

The HTML page embeds its charts as ``data:image/png;base64,...`` and uses only inline CSS: no
external stylesheets, scripts, fonts or images. Every piece of text that comes from the data
(title, run id, symbols, spec keys and values, exit reasons, metric names) is HTML-escaped.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import html
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from matplotlib import dates as mdates
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

__all__ = [
    "COUNT_METRICS",
    "CURRENCY_METRICS",
    "DAYS_METRICS",
    "METRIC_LABELS",
    "PERCENT_METRICS",
    "RATIO_METRICS",
    "ReportData",
    "drawdown",
    "format_metric",
    "render_html",
    "render_png",
]

MetricValue = float | int | str | None

#: Metrics that are fractions and are shown as percents (``0.1234`` -> ``12.34%``).
PERCENT_METRICS: Final = frozenset(
    {
        "total_return",
        "cagr",
        "annual_return",
        "volatility",
        "annual_volatility",
        "max_drawdown",
        "win_rate",
        "period_win_rate",
        "exposure",
        "avg_trade_return",
        "avg_win_return",
        "avg_loss_return",
        "best_trade_return",
        "worst_trade_return",
        "benchmark_return",
        "excess_return",
        "alpha",
    }
)
#: Dimensionless ratios, shown with two decimals.
RATIO_METRICS: Final = frozenset(
    {
        "sharpe",
        "sharpe_ratio",
        "sortino",
        "sortino_ratio",
        "calmar",
        "calmar_ratio",
        "profit_factor",
        "period_profit_factor",
        "payoff_ratio",
        "beta",
        "information_ratio",
    }
)
#: Amounts of money in the report's currency, shown with thousands separators.
CURRENCY_METRICS: Final = frozenset(
    {
        "initial_capital",
        "initial_equity",
        "final_equity",
        "net_profit",
        "total_pnl",
        "gross_profit",
        "gross_loss",
        "fees",
        "total_fees",
        "sell_tax",
        "commission",
        "avg_trade_pnl",
        "expectancy",
        "avg_win",
        "avg_loss",
        "best_trade",
        "worst_trade",
        "max_drawdown_amount",
    }
)
#: Counts, shown as integers with thousands separators.
COUNT_METRICS: Final = frozenset(
    {
        "num_trades",
        "trades",
        "total_trades",
        "winning_trades",
        "losing_trades",
        "open_trades",
        "periods",
    }
)
#: Durations in days.
DAYS_METRICS: Final = frozenset(
    {"max_drawdown_duration", "max_drawdown_days", "avg_holding_days", "days", "bars"}
)

#: Human labels for the known metric names; any other name is shown as given.
METRIC_LABELS: Final[Mapping[str, str]] = {
    "total_return": "Total return",
    "cagr": "CAGR",
    "annual_return": "Annual return",
    "volatility": "Volatility (ann.)",
    "annual_volatility": "Volatility (ann.)",
    "max_drawdown": "Max drawdown",
    "win_rate": "Win rate",
    "period_win_rate": "Win rate (days)",
    "exposure": "Exposure",
    "avg_trade_return": "Avg trade return",
    "avg_win_return": "Avg winning trade return",
    "avg_loss_return": "Avg losing trade return",
    "best_trade_return": "Best trade return",
    "worst_trade_return": "Worst trade return",
    "benchmark_return": "Benchmark return",
    "excess_return": "Excess return",
    "alpha": "Alpha",
    "sharpe": "Sharpe",
    "sharpe_ratio": "Sharpe",
    "sortino": "Sortino",
    "sortino_ratio": "Sortino",
    "calmar": "Calmar",
    "calmar_ratio": "Calmar",
    "profit_factor": "Profit factor",
    "period_profit_factor": "Profit factor (days)",
    "payoff_ratio": "Payoff ratio",
    "beta": "Beta",
    "information_ratio": "Information ratio",
    "initial_capital": "Initial capital",
    "initial_equity": "Initial equity",
    "final_equity": "Final equity",
    "net_profit": "Net profit",
    "total_pnl": "Total P&L",
    "gross_profit": "Gross profit",
    "gross_loss": "Gross loss",
    "fees": "Fees",
    "total_fees": "Fees (incl. sell tax)",
    "sell_tax": "Sell tax",
    "commission": "Commission",
    "avg_trade_pnl": "Avg trade P&L",
    "expectancy": "Expectancy (per trade)",
    "avg_win": "Avg win",
    "avg_loss": "Avg loss",
    "best_trade": "Best trade",
    "worst_trade": "Worst trade",
    "max_drawdown_amount": "Max drawdown (amount)",
    "num_trades": "Trades",
    "trades": "Trades",
    "total_trades": "Trades",
    "winning_trades": "Winning trades",
    "losing_trades": "Losing trades",
    "open_trades": "Open trades",
    "periods": "Periods",
    "max_drawdown_start": "Max drawdown start",
    "max_drawdown_end": "Max drawdown end",
    "max_drawdown_duration": "Max drawdown duration",
    "max_drawdown_days": "Max drawdown duration",
    "avg_holding_days": "Avg holding period",
    "days": "Days",
    "bars": "Bars",
}

#: Currencies quoted without minor units.
_ZERO_DECIMAL_CURRENCIES: Final = frozenset({"KRW", "JPY", "VND", "IDR"})
_NA: Final = "n/a"
_SIMULATED_LABEL: Final = "SIMULATED DATA"
_TRADE_COLUMNS: Final = (
    "#",
    "Symbol",
    "Entry",
    "Exit",
    "Entry price",
    "Exit price",
    "Quantity",
    "P&L",
    "Return",
    "Exit reason",
)
_PNG_MAX_METRIC_LINES: Final = 26

# Colours (matplotlib and CSS share them).
_EQUITY_COLOUR: Final = "#1f5fa8"
_DRAWDOWN_COLOUR: Final = "#c0392b"
_GRID_COLOUR: Final = "#d9d9d9"


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything a report shows about one backtest run.

    ``times`` holds the daily dates of the equity curve (any ``datetime64`` unit, or anything
    :func:`numpy.asarray` turns into ``datetime64``); ``equity`` the portfolio value per day in
    ``currency`` units, of the same length (NaN marks a missing day). ``metrics`` maps a metric
    name to a JSON-safe value (``None`` or NaN = not available), fractions as fractions.
    ``trades`` are mappings with the keys ``symbol``, ``entry_time``, ``exit_time`` (``None``
    while open), ``entry_price``, ``exit_price``, ``quantity``, ``pnl`` (currency units),
    ``return_pct`` (a fraction) and ``exit_reason``; missing keys are shown empty.

    Raises :class:`ValueError` when ``times`` and ``equity`` are not one-dimensional or differ
    in length (the message names both lengths).
    """

    run_id: str
    title: str
    times: npt.NDArray[np.datetime64]
    equity: npt.NDArray[np.float64]
    metrics: Mapping[str, MetricValue]
    trades: Sequence[Mapping[str, Any]]
    spec: Mapping[str, Any]
    data_version: str | None = None
    simulated: bool = False
    currency: str = "KRW"

    def __post_init__(self) -> None:
        _series(self)


# --------------------------------------------------------------------------------------------
# Public helpers


def drawdown(equity: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Drawdown per day as a fraction: ``equity / running max - 1`` (0 at a new high, <= 0).

    NaN days are skipped by the running maximum and are NaN in the result; days before the
    first positive peak (where the ratio is undefined) are NaN too. Raises :class:`ValueError`
    for input that is not one-dimensional.
    """
    eq = np.asarray(equity, dtype=np.float64)
    if eq.ndim != 1:
        raise ValueError(f"equity must be one-dimensional, got shape {eq.shape}")
    out = np.full(eq.shape, np.nan)
    if eq.size == 0:
        return out
    peak = np.fmax.accumulate(eq)
    ok = np.isfinite(eq) & np.isfinite(peak) & (peak > 0)
    np.divide(eq, peak, out=out, where=ok)
    out[ok] -= 1.0
    return out


def format_metric(name: str, value: MetricValue, currency: str = "KRW") -> str:
    """Format one metric value for display (plain text, not yet HTML-escaped).

    ``None`` and NaN are ``"n/a"``; names in :data:`PERCENT_METRICS` are fractions shown as
    percents with two decimals; :data:`RATIO_METRICS` get two decimals;
    :data:`CURRENCY_METRICS` thousands separators and the currency code; :data:`COUNT_METRICS`
    integers; :data:`DAYS_METRICS` a number of days. Unknown names, strings and booleans are
    shown raw (``str(value)``).
    """
    if value is None:
        return _NA
    if isinstance(value, bool | str):
        return str(value)
    if not isinstance(value, int | float):
        return str(value)
    number = float(value)
    if math.isnan(number):
        return _NA
    if name in PERCENT_METRICS:
        return _fmt_percent(number)
    if name in RATIO_METRICS:
        return "∞" if math.isinf(number) and number > 0 else _fmt_fixed(number, 2)
    if name in CURRENCY_METRICS:
        return f"{_fmt_money(number, currency)} {currency}"
    if name in COUNT_METRICS:
        return _fmt_count(number)
    if name in DAYS_METRICS:
        return f"{_fmt_count(number)} days"
    return str(value)


# --------------------------------------------------------------------------------------------
# Renderers


def render_html(data: ReportData, *, max_trades: int = 500) -> str:
    """Render the report as one self-contained HTML page and return it as a string.

    The page shows the title, run id, data version, a "SIMULATED DATA" banner when
    ``data.simulated``, the equity chart (in ``data.currency``) and the underwater chart
    (drawdown in percent) as embedded base64 PNGs, the metrics table, the spec table and the
    trade list. At most ``max_trades`` trades are listed (the first ones, in the given order);
    a line states how many were omitted. An empty equity curve shows a message instead of
    charts; no trades shows "No trades".

    Raises :class:`ValueError` if ``times`` and ``equity`` differ in length (naming both
    lengths) or if ``max_trades`` is negative.
    """
    if max_trades < 0:
        raise ValueError(f"max_trades must be >= 0, got {max_trades}")
    times, equity = _series(data)
    esc = _esc
    title = data.title or data.run_id

    parts: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{'[SIMULATED] ' if data.simulated else ''}{esc(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        "<header>",
        f"<h1>{esc(title)}</h1>",
    ]
    if data.simulated:
        parts.append(
            f'<p class="simulated" role="note"><strong>{_SIMULATED_LABEL}</strong> — '
            "prices are generated by the simulated market, not real quotes.</p>"
        )
    parts.append('<dl class="meta">')
    parts.append(f"<dt>Run id</dt><dd><code>{esc(data.run_id)}</code></dd>")
    parts.append(
        "<dt>Data version</dt><dd>"
        + (f"<code>{esc(data.data_version)}</code>" if data.data_version else _NA)
        + "</dd>"
    )
    parts.append(f"<dt>Period</dt><dd>{esc(_period(times, equity))}</dd>")
    parts.append(f"<dt>Currency</dt><dd>{esc(data.currency)}</dd>")
    parts.append("</dl>")
    parts.append("</header>")

    # Charts
    parts.append('<section class="charts">')
    parts.append("<h2>Equity</h2>")
    if equity.size == 0:
        parts.append('<p class="empty">No equity data: the run produced no equity curve.</p>')
    else:
        dd = drawdown(equity)
        equity_png = _figure_png(
            _new_figure(10.0, 3.6), lambda ax: _draw_equity(ax, times, equity, data.currency)
        )
        dd_png = _figure_png(_new_figure(10.0, 2.3), lambda ax: _draw_drawdown(ax, times, dd))
        parts.append(_img(equity_png, f"Equity curve in {data.currency}"))
        parts.append("<h2>Drawdown</h2>")
        parts.append(_img(dd_png, "Underwater chart: drawdown from the running peak, percent"))
    parts.append("</section>")

    # Metrics
    parts.append("<section>")
    parts.append("<h2>Metrics</h2>")
    if not data.metrics:
        parts.append('<p class="empty">No metrics.</p>')
    else:
        parts.append('<table class="kv metrics">')
        parts.append("<thead><tr><th>Metric</th><th>Value</th></tr></thead><tbody>")
        for name, value in data.metrics.items():
            label = METRIC_LABELS.get(name, name)
            text = format_metric(name, value, data.currency)
            cls = ' class="na"' if text == _NA else ""
            parts.append(
                f'<tr><th scope="row" title="{esc(name)}">{esc(label)}</th>'
                f"<td{cls}>{esc(text)}</td></tr>"
            )
        parts.append("</tbody></table>")
    parts.append("</section>")

    # Spec
    parts.append("<section>")
    parts.append("<h2>Spec</h2>")
    if not data.spec:
        parts.append('<p class="empty">No spec.</p>')
    else:
        parts.append('<table class="kv spec"><tbody>')
        for key, value in data.spec.items():
            parts.append(
                f'<tr><th scope="row">{esc(str(key))}</th>'
                f"<td><code>{esc(_spec_value(value))}</code></td></tr>"
            )
        parts.append("</tbody></table>")
    parts.append("</section>")

    # Trades
    parts.append("<section>")
    parts.append("<h2>Trades</h2>")
    total = len(data.trades)
    if total == 0:
        parts.append('<p class="empty">No trades.</p>')
    else:
        shown = min(total, max_trades)
        parts.append(f"<p>{total:,} trade{'s' if total != 1 else ''}.</p>")
        if shown:
            parts.append('<table class="trades">')
            header = "".join(
                f"<th>{esc(c if c != 'P&L' else f'P&L ({data.currency})')}</th>"
                for c in _TRADE_COLUMNS
            )
            parts.append(f"<thead><tr>{header}</tr></thead><tbody>")
            for i in range(shown):
                parts.append(_trade_row(i + 1, data.trades[i], data.currency))
            parts.append("</tbody></table>")
        if total > shown:
            parts.append(
                f'<p class="omitted">{total - shown:,} more trade'
                f"{'s' if total - shown != 1 else ''} omitted "
                f"(showing the first {shown:,} of {total:,}).</p>"
            )
    parts.append("</section>")

    parts.append("<footer>Generated by quantbeat.</footer>")
    parts.append("</main>")
    parts.append("</body>")
    parts.append("</html>")
    return "\n".join(parts) + "\n"


def render_png(data: ReportData) -> bytes:
    """Render a single PNG summary image and return its bytes.

    The image has the equity panel (``data.currency`` units), the drawdown panel (percent) and
    a compact text block with the metrics (formatted as in :func:`format_metric`), under the
    title, run id and data version; a red "SIMULATED DATA" label when ``data.simulated``. An
    empty equity curve draws a message in place of the panels.

    Raises :class:`ValueError` if ``times`` and ``equity`` differ in length (naming both).
    """
    times, equity = _series(data)
    fig = Figure(figsize=(12.0, 7.0), dpi=100)
    FigureCanvasAgg(fig)
    fonts = _title_fonts()
    grid = fig.add_gridspec(
        2,
        2,
        width_ratios=(3.0, 1.0),
        height_ratios=(2.2, 1.0),
        left=0.08,
        right=0.985,
        top=0.86,
        bottom=0.07,
        wspace=0.08,
        hspace=0.08,
    )
    ax_eq = fig.add_subplot(grid[0, 0])
    ax_dd = fig.add_subplot(grid[1, 0], sharex=ax_eq)
    ax_txt = fig.add_subplot(grid[:, 1])
    ax_txt.set_axis_off()

    fig.text(0.01, 0.965, data.title or data.run_id, fontsize=14, weight="bold", family=fonts)
    subtitle = f"run {data.run_id}  ·  data version {data.data_version or _NA}"
    subtitle += f"  ·  {_period(times, equity)}"
    fig.text(0.01, 0.925, subtitle, fontsize=9, color="#555555", family=fonts)
    if data.simulated:
        fig.text(
            0.985,
            0.965,
            _SIMULATED_LABEL,
            fontsize=13,
            weight="bold",
            color="white",
            ha="right",
            bbox={"boxstyle": "round,pad=0.35", "facecolor": "#c0392b", "edgecolor": "none"},
        )

    if equity.size == 0:
        for ax in (ax_eq, ax_dd):
            ax.set_axis_off()
        ax_eq.text(0.5, 0.5, "No equity data", ha="center", va="center", fontsize=14)
    else:
        _draw_equity(ax_eq, times, equity, data.currency)
        _draw_drawdown(ax_dd, times, drawdown(equity))
        ax_eq.tick_params(labelbottom=False)
        ax_eq.set_xlabel("")

    # One text per cell at fixed rows, so labels and values line up whatever glyphs they use.
    labels, values = _metric_columns(data)
    row = 1.0 / (_PNG_MAX_METRIC_LINES + 8)
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 1.0 - i * row
        weight = "bold" if i == 0 else "normal"
        for x, text, align in ((0.0, label, "left"), (1.0, value, "right")):
            if text:
                ax_txt.text(
                    x,
                    y,
                    text,
                    family="monospace",
                    fontsize=8.5,
                    weight=weight,
                    va="top",
                    ha=align,
                    transform=ax_txt.transAxes,
                )
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, facecolor="white")
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Validation and formatting helpers


def _series(
    data: ReportData,
) -> tuple[npt.NDArray[np.datetime64], npt.NDArray[np.float64]]:
    """The report's times (datetime64) and equity (float64), checked to be 1-D and aligned."""
    equity = np.asarray(data.equity, dtype=np.float64)
    times_raw = np.asarray(data.times)
    if times_raw.dtype.kind != "M":
        times_raw = np.asarray(times_raw, dtype="datetime64") if times_raw.size else times_raw
    times: npt.NDArray[np.datetime64] = (
        times_raw if times_raw.size else np.empty(0, dtype="datetime64[D]")
    )
    if times.ndim != 1 or equity.ndim != 1:
        raise ValueError(
            f"times and equity must be one-dimensional, got shapes {times.shape} and {equity.shape}"
        )
    if len(times) != len(equity):
        raise ValueError(
            f"times and equity differ in length: {len(times)} times vs {len(equity)} equity values"
        )
    return times, equity


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _fmt_fixed(number: float, decimals: int) -> str:
    if math.isinf(number):
        return "∞" if number > 0 else "-∞"
    return f"{number:,.{decimals}f}"


def _fmt_percent(fraction: float) -> str:
    if math.isinf(fraction):
        return "∞" if fraction > 0 else "-∞"
    return f"{fraction * 100:,.2f}%"


def _fmt_money(amount: float, currency: str) -> str:
    decimals = 0 if currency.upper() in _ZERO_DECIMAL_CURRENCIES else 2
    return _fmt_fixed(amount, decimals)


def _fmt_count(number: float) -> str:
    if math.isinf(number):
        return _fmt_fixed(number, 0)
    if number.is_integer():
        return f"{int(number):,}"
    return f"{number:,.1f}"


def _fmt_number(value: Any) -> str:
    """Prices and quantities: integers plainly, others with up to 4 decimals (6 digits < 1)."""
    number = _as_float(value)
    if number is None:
        return "" if value is None else str(value)
    if not math.isfinite(number):
        return _NA if math.isnan(number) else _fmt_fixed(number, 0)
    if number.is_integer() and abs(number) < 1e15:
        return f"{number:,.0f}"
    if abs(number) >= 1:
        return f"{number:,.4f}".rstrip("0").rstrip(".")
    return f"{number:.6g}"


def _as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool | str):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _fmt_time(value: Any) -> str:
    """A trade timestamp: a date when it falls on midnight, else date and time."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return ""
        value = value.astype("datetime64[us]").item()
    if isinstance(value, dt.datetime):
        try:
            if value.tzinfo is None and value.time() == dt.time(0, 0):
                return value.date().isoformat()
            return value.isoformat(sep=" ", timespec="seconds")
        except (ValueError, TypeError):
            return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _period(times: npt.NDArray[np.datetime64], equity: npt.NDArray[np.float64]) -> str:
    if times.size == 0:
        return "no data"
    first = np.datetime_as_string(times[0], unit="D")
    last = np.datetime_as_string(times[-1], unit="D")
    return f"{first} … {last} ({equity.size:,} bars)"


def _spec_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping | list | tuple):
        try:
            return json.dumps(value, ensure_ascii=False, default=str, sort_keys=False)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def _trade_row(index: int, trade: Mapping[str, Any], currency: str) -> str:
    esc = _esc
    exit_time = trade.get("exit_time")
    is_open = exit_time is None
    pnl = _as_float(trade.get("pnl"))
    ret = _as_float(trade.get("return_pct"))
    sign = 0.0 if pnl is None or math.isnan(pnl) else pnl
    if sign == 0.0 and ret is not None and not math.isnan(ret):
        sign = ret
    row_cls = "pos" if sign > 0 else "neg" if sign < 0 else ""
    if is_open:
        row_cls = (row_cls + " open").strip()
    exit_cell = '<td class="open">open</td>' if is_open else f"<td>{esc(_fmt_time(exit_time))}</td>"
    pnl_text = _NA if pnl is None or math.isnan(pnl) else _fmt_money(pnl, currency)
    ret_text = _NA if ret is None or math.isnan(ret) else _fmt_percent(ret)
    exit_price = trade.get("exit_price")
    reason = trade.get("exit_reason")
    cells = [
        f'<td class="num">{index:,}</td>',
        f"<td>{esc(str(trade.get('symbol', '')))}</td>",
        f"<td>{esc(_fmt_time(trade.get('entry_time')))}</td>",
        exit_cell,
        f'<td class="num">{esc(_fmt_number(trade.get("entry_price")))}</td>',
        f'<td class="num">{esc(_fmt_number(exit_price) if exit_price is not None else "—")}</td>',
        f'<td class="num">{esc(_fmt_number(trade.get("quantity")))}</td>',
        f'<td class="num pnl">{esc(pnl_text)}</td>',
        f'<td class="num pnl">{esc(ret_text)}</td>',
        f"<td>{esc('' if reason is None else str(reason))}</td>",
    ]
    cls_attr = f' class="{row_cls}"' if row_cls else ""
    return f"<tr{cls_attr}>{''.join(cells)}</tr>"


def _metric_columns(data: ReportData) -> tuple[list[str], list[str]]:
    """The PNG's metrics block as (labels, values) lines, capped so they fit the panel."""
    labels = ["Metrics"]
    values = [""]
    items = list(data.metrics.items())
    if not items:
        labels.append("(no metrics)")
        values.append("")
    for name, value in items[:_PNG_MAX_METRIC_LINES]:
        label = METRIC_LABELS.get(name, name)
        labels.append(label if len(label) <= 20 else label[:19] + "…")
        text = format_metric(name, value, data.currency)
        values.append(text if len(text) <= 20 else text[:19] + "…")
    if len(items) > _PNG_MAX_METRIC_LINES:
        labels.append(f"… {len(items) - _PNG_MAX_METRIC_LINES} more")
        values.append("")
    labels += ["", "Trades listed"]
    values += ["", f"{len(data.trades):,}"]
    return labels, values


# --------------------------------------------------------------------------------------------
# Charts


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.09, right=0.985, top=0.95, bottom=0.14)
    fig.add_subplot()
    return fig


def _figure_png(fig: Figure, draw: Callable[[Axes], None]) -> bytes:
    draw(fig.axes[0])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, facecolor="white")
    return buf.getvalue()


def _img(png: bytes, alt: str) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return f'<figure><img alt="{_esc(alt)}" src="data:image/png;base64,{encoded}"></figure>'


def _date_axis(ax: Axes) -> None:
    # matplotlib.dates' constructors carry no annotations (mypy --strict: no-untyped-call).
    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(
        mdates.ConciseDateFormatter(locator)  # type: ignore[no-untyped-call]
    )


def _style(ax: Axes) -> None:
    ax.grid(True, color=_GRID_COLOUR, linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8)


def _draw_equity(
    ax: Axes,
    times: npt.NDArray[np.datetime64],
    equity: npt.NDArray[np.float64],
    currency: str,
) -> None:
    marker = "o" if equity.size == 1 else None
    ax.plot(times, equity, color=_EQUITY_COLOUR, linewidth=1.3, marker=marker)
    finite = equity[np.isfinite(equity)]
    if finite.size:
        ax.axhline(finite[0], color="#888888", linewidth=0.8, linestyle="--")
    ax.yaxis.set_major_formatter(FuncFormatter(_axis_money))
    ax.set_ylabel(f"Equity ({currency})", fontsize=9)
    ax.margins(x=0.01)
    _date_axis(ax)
    _style(ax)


def _draw_drawdown(
    ax: Axes, times: npt.NDArray[np.datetime64], dd: npt.NDArray[np.float64]
) -> None:
    pct = dd * 100.0
    filled = np.where(np.isfinite(pct), pct, 0.0)
    ax.fill_between(times, filled, 0.0, color=_DRAWDOWN_COLOUR, alpha=0.35, linewidth=0)
    ax.plot(times, pct, color=_DRAWDOWN_COLOUR, linewidth=0.9)
    if np.isfinite(pct).any():
        worst = int(np.nanargmin(pct))
        if pct[worst] < 0:
            ax.plot(times[worst : worst + 1], pct[worst : worst + 1], "v", color=_DRAWDOWN_COLOUR)
            day = np.datetime_as_string(times[worst], unit="D")
            ax.text(
                0.005,
                0.06,
                f"max drawdown {pct[worst]:.1f}% on {day}",
                transform=ax.transAxes,
                fontsize=8,
                color=_DRAWDOWN_COLOUR,
            )
        low = float(np.nanmin(pct))
        ax.set_ylim(min(low * 1.15, -1.0), 0.5)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.0f}%"))
    ax.set_ylabel("Drawdown (%)", fontsize=9)
    ax.margins(x=0.01)
    _date_axis(ax)
    _style(ax)


def _axis_money(value: float, _pos: int | None = None) -> str:
    magnitude = abs(value)
    if magnitude >= 1e12:
        return f"{value / 1e12:,.2f}T"
    if magnitude >= 1e9:
        return f"{value / 1e9:,.2f}B"
    if magnitude >= 1e7:
        return f"{value / 1e6:,.1f}M"
    return f"{value:,.0f}"


@functools.cache
def _title_fonts() -> tuple[str, ...]:
    """Installed fonts for free text (titles may be Korean): DejaVu first, CJK fallbacks after.

    Without any CJK font installed, Hangul in a title renders as boxes (matplotlib warns).
    """
    preferred = (
        "DejaVu Sans",
        "Noto Sans CJK KR",
        "Noto Sans KR",
        "NanumGothic",
        "NanumBarunGothic",
        "Malgun Gothic",
        "Apple SD Gothic Neo",
        "Noto Sans CJK JP",
    )
    installed = {f.name for f in font_manager.fontManager.ttflist}
    found = tuple(name for name in preferred if name in installed)
    return found or ("sans-serif",)


_CSS: Final = """
:root { color-scheme: light; }
body { margin: 0; background: #f5f6f8; color: #1d2330;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans KR", sans-serif; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 20px 40px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 8px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #e3e6eb; padding-bottom: 4px; }
.simulated { background: #c0392b; color: #fff; padding: 8px 12px; border-radius: 4px;
  font-size: 15px; margin: 8px 0 12px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 8px 0; }
dl.meta dt { color: #5a6372; }
dl.meta dd { margin: 0; }
figure { margin: 0; }
figure img { display: block; max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 3px 10px; border-bottom: 1px solid #eceef2; text-align: left;
  vertical-align: top; }
thead th { background: #f0f2f5; position: sticky; top: 0; }
table.kv th { font-weight: 500; color: #3a4250; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.na { color: #8a93a3; }
table.trades { width: 100%; }
tr.pos td.pnl { color: #1e7d32; }
tr.neg td.pnl { color: #b3261e; }
td.open { color: #8a5a00; font-weight: 600; }
.empty, .omitted { color: #5a6372; font-style: italic; }
code { font: 12px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; word-break: break-all; }
footer { margin-top: 32px; color: #8a93a3; font-size: 12px; }
"""
