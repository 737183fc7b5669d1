"""Backtests: quantbeat's engine against vectorbt and backtesting.py, in one process and run.

* SMA crossover (fast 10, slow 30, commission 0.1 %, integer units, all-in: 99.99999 % of the
  account) on 1,000 / 100,000 / 1,000,000 candles of one synthetic instrument and on a
  2,500-instrument × 500-bar portfolio with an account per instrument (vectorbt's default for
  many columns without cash sharing; quantbeat ``accounts="per_instrument"``). Each engine
  computes its own SMAs inside the timed region: quantbeat ``signals`` + ``simulate``;
  vectorbt ``MA.run`` + ``ma_crossed_above/below`` shifted one bar + ``Portfolio.from_signals``
  filling at the open (trade records, built lazily afterwards, are not timed); backtesting.py
  the classic ``SmaCross``. backtesting.py runs only at 1,000 and 100,000 candles (a
  pure-Python loop over bars: a million would take about half a minute per run). Input
  containers (``Market``, pandas frames) are built outside the timed region.
* Volume Zone Breakout on 1,000 candles: quantbeat's ``volume_zone_breakout`` against its
  bar-by-bar backtesting.py twin (``backtest_twins.VolumeZoneBreakout``), both computing their
  indicators inside the timed region.
* Numba compile time, excluded from the ratios: the first SMA-crossover backtest in a fresh
  subprocess with an empty numba cache (``NUMBA_CACHE_DIR`` set to a new directory: compile)
  and again in a second one (load from that cache), for quantbeat and for vectorbt.

The engines must agree: same entry bars, exit bars and units of the closed trades, the same
open trades, and final equity within 1e-9 (per instrument for the portfolio).

Candles are one minute apart (the engines ignore the interval; a million daily dates would
overflow pandas' nanosecond timestamps). Times are medians of repeats after a warm-up call;
these machines are noisy, so the ratios, measured in the same run, are what counts.

Goals: ≥ 2× vectorbt on 1,000,000 candles and on the portfolio; ≥ 50× backtesting.py (100,000
candles); the VZB backtest ≥ 100× its backtesting.py twin.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TQDM_DISABLE", "1")  # backtesting.py's progress bar, off for everyone
warnings.filterwarnings("ignore")

import numba  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from quant.backtest.engine import BacktestResult, Market, simulate  # noqa: E402
from quant.backtest.strategies import get, rolling_mean  # noqa: E402

CASH = 10_000_000.0
FEES = 0.001
FRACTION = 0.9999999
FAST, SLOW = 10, 30
SEED_PROJECT_VZB_S = 0.2688
VZB_SEED = 0
VZB_SWEEP = range(1, 21)
START = np.datetime64("2000-01-03T09:00", "m")


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@numba.njit(cache=False)
def _ar1(x: Any, phi: float) -> Any:
    out = np.empty_like(x)
    out[0] = x[0]
    for t in range(1, x.shape[0]):
        out[t] = phi * out[t - 1] + x[t]
    return out


def random_walk(n: int, m: int, seed: int) -> dict[str, Any]:
    """OHLC of ``m`` instruments over ``n`` bars: a random walk of the log price with a slowly
    changing drift (so the crossover trades neither to ruin nor to 1e20 over a million bars)
    and a weak pull back to 100; opens gap from the previous close; high/low wrap both."""
    rng = np.random.default_rng(seed)
    drift = _ar1(rng.normal(0.0, 1.3e-4, (n, m)), 0.98)
    log_price = _ar1(drift + rng.normal(0.0, 0.01, (n, m)), 0.998)
    close = 100.0 * np.exp(log_price)
    open_ = np.empty_like(close)
    open_[0] = 100.0
    open_[1:] = close[:-1] * np.exp(rng.normal(0.0, 0.002, (n - 1, m)))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.004, (n, m))))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.004, (n, m))))
    volume = np.round(rng.uniform(1e4, 1e5, (n, m)))
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


def breakout_walk(n: int, seed: int) -> dict[str, Any]:
    """One instrument that alternates tight consolidations (40-90 bars, mean-reverting, quiet
    volume) with breakouts (a 3-5 % up bar on 3-5x volume) followed by a trend up, a slower
    trend up or a failure down (8-40 bars, heavier volume)."""
    rng = np.random.default_rng(seed)
    log_close = np.empty(n)
    volume = np.empty(n)
    x = np.log(100.0)
    base = 50_000.0
    t = 0
    while t < n:
        level = x
        for _ in range(int(rng.integers(40, 90))):
            if t >= n:
                break
            x = level + 0.7 * (x - level) + rng.normal(0.0, 0.008)
            log_close[t], volume[t] = x, base * rng.lognormal(0.0, 0.25)
            t += 1
        if t >= n:
            break
        x += rng.uniform(0.03, 0.05)
        log_close[t], volume[t] = x, base * rng.uniform(3.0, 5.0)
        t += 1
        drift = rng.choice([0.006, 0.004, -0.004], p=[0.45, 0.3, 0.25])
        for _ in range(int(rng.integers(8, 40))):
            if t >= n:
                break
            x += drift + rng.normal(0.0, 0.015)
            log_close[t], volume[t] = x, base * rng.lognormal(0.3, 0.4)
            t += 1
    close = np.exp(log_close)
    open_ = np.empty(n)
    open_[0] = close[0]
    open_[1:] = close[:-1] * np.exp(rng.normal(0.0, 0.004, n - 1))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.006, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.006, n)))
    return {"open": open_, "high": high, "low": low, "close": close, "volume": np.round(volume)}


def market_of(data: dict[str, Any]) -> Market:
    n, m = data["close"].reshape(len(data["close"]), -1).shape
    times = START + np.arange(n)
    return Market.from_arrays(times, [f"S{i:04d}" for i in range(m)], **data)


def frame_of(data: dict[str, Any], col: int = 0) -> pd.DataFrame:
    """backtesting.py's input: one instrument's OHLCV with a DatetimeIndex."""
    cols = {k: data[k].reshape(len(data[k]), -1)[:, col] for k in data}
    index = pd.DatetimeIndex(START + np.arange(len(cols["close"])))
    return pd.DataFrame(
        {
            "Open": cols["open"],
            "High": cols["high"],
            "Low": cols["low"],
            "Close": cols["close"],
            "Volume": cols["volume"],
        },
        index=index,
    )


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


def median_time(func: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``repeats`` calls (after the caller's warm-up), with the garbage
    collector paused as ``timeit`` does."""
    times = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            func()
            times.append(time.perf_counter() - t0)
    finally:
        gc.enable()
    return statistics.median(times)


def fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:8.1f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:8.2f} ms"
    return f"{seconds:8.3f} s "


# --------------------------------------------------------------------------------------------
# The three engines on the SMA crossover
# --------------------------------------------------------------------------------------------

SMA = get("sma_crossover")
# vectorbt and backtesting.py charge no sell tax: the compared runs have it off
SMA_CONFIG = SMA.execution_with(
    {"fees": FEES, "fraction": FRACTION, "lot": 1.0, "accounts": "per_instrument",
     "sell_tax": "none"}
)  # fmt: skip


def quantbeat_sma(market: Market) -> BacktestResult:
    signals = SMA.signals(market, {"fast": FAST, "slow": SLOW})
    return simulate(market, signals, SMA_CONFIG, initial_cash=CASH)


def vectorbt_sma(close: Any, open_: Any) -> Any:
    import vectorbt as vbt

    fast = vbt.MA.run(close, FAST)
    slow = vbt.MA.run(close, SLOW)
    # signals at the close of t, filled at the open of t+1
    entries = fast.ma_crossed_above(slow).shift(1, fill_value=False)
    exits = fast.ma_crossed_below(slow).shift(1, fill_value=False)
    return vbt.Portfolio.from_signals(
        close,
        entries,
        exits,
        price=open_,
        size=FRACTION,
        size_type="percent",
        size_granularity=1,
        fees=FEES,
        init_cash=CASH,
        direction="longonly",
    )


def _sma_series(values: Any, n: int) -> Any:
    return pd.Series(values).rolling(n).mean()


def _sma_cross_class() -> type:
    from backtesting import Strategy
    from backtesting.lib import crossover

    class SmaCross(Strategy):  # type: ignore[misc]
        n1 = FAST
        n2 = SLOW

        def init(self) -> None:
            self.a = self.I(_sma_series, self.data.Close, self.n1)
            self.b = self.I(_sma_series, self.data.Close, self.n2)

        def next(self) -> None:
            if crossover(self.a, self.b):
                if not self.position:
                    self.buy(size=FRACTION)
            elif crossover(self.b, self.a):
                self.position.close()

    return SmaCross


def backtesting_run(frame: pd.DataFrame, strategy: type, commission: float) -> Any:
    from backtesting import Backtest

    bt = Backtest(frame, strategy, cash=CASH, commission=commission, finalize_trades=False)
    return bt.run()


# --------------------------------------------------------------------------------------------
# Trades in one shape: closed (col, entry, exit, units), open (col, entry, units)
# --------------------------------------------------------------------------------------------


class Book:
    """An engine's trades and final equity per account, for comparison."""

    def __init__(self, name: str, closed: Any, open_: Any, final: Any, exit_px: Any = None) -> None:
        order: Any = np.lexsort((closed[:, 2], closed[:, 1], closed[:, 0])) if len(closed) else []
        self.name = name
        self.closed = closed[order] if len(closed) else closed.reshape(0, 4)
        self.exit_px = None if exit_px is None else np.asarray(exit_px)[order]
        self.open = open_[np.lexsort((open_[:, 1], open_[:, 0]))] if len(open_) else open_
        self.final = np.atleast_1d(np.asarray(final, dtype=np.float64))


def book_quantbeat(r: BacktestResult) -> Book:
    t = r.trades
    c = t.exit_bar >= 0
    closed = np.column_stack([t.column[c], t.entry_bar[c], t.exit_bar[c], t.units[c]]).astype(
        np.float64
    )
    opened = np.column_stack([t.column[~c], t.entry_bar[~c], t.units[~c]]).astype(np.float64)
    return Book("quantbeat", closed, opened, r.accounts[-1], t.exit_price[c])


def book_vectorbt(pf: Any) -> Book:
    rec = pf.trades.values
    c = rec["status"] == 1
    closed = np.column_stack(
        [rec["col"][c], rec["entry_idx"][c], rec["exit_idx"][c], rec["size"][c]]
    ).astype(np.float64)
    opened = np.column_stack([rec["col"][~c], rec["entry_idx"][~c], rec["size"][~c]]).astype(
        np.float64
    )
    return Book("vectorbt", closed, opened, pf.final_value(), rec["exit_price"][c])


def book_backtesting(stats: Any) -> Book:
    tr = stats._trades
    closed = np.column_stack([np.zeros(len(tr)), tr["EntryBar"], tr["ExitBar"], tr["Size"]]).astype(
        np.float64
    )
    still = stats._strategy.trades
    opened = np.array([[0.0, t.entry_bar, t.size] for t in still], dtype=np.float64).reshape(-1, 3)
    return Book(
        "backtesting.py", closed, opened, [stats["Equity Final [$]"]], tr["ExitPrice"].to_numpy()
    )


def first_difference(a: Any, b: Any) -> int:
    """Index of the first row that differs (or the shorter length)."""
    k = min(len(a), len(b))
    rows = np.flatnonzero((a[:k] != b[:k]).any(axis=1))
    return int(rows[0]) if len(rows) else k


def compare(ref: Book, other: Book) -> tuple[bool, str]:
    """(agree, one-line summary); on a difference, the first differing trade."""
    same_closed = ref.closed.shape == other.closed.shape and np.array_equal(
        ref.closed, other.closed
    )
    same_open = ref.open.shape == other.open.shape and np.array_equal(ref.open, other.open)
    rel = np.abs(other.final / ref.final - 1.0) if ref.final.shape == other.final.shape else None
    same_equity = rel is not None and bool((rel <= 1e-9).all())
    worst = float(rel.max()) if rel is not None else float("nan")
    if same_closed and same_open and same_equity:
        return True, (
            f"{other.name:<14} agrees: {len(ref.closed):,} closed + {len(ref.open)} open trades, "
            f"final equity within {worst:.1e}"
        )
    parts = [f"{other.name:<14} DIFFERS:"]
    if not same_closed:
        i = first_difference(ref.closed, other.closed)
        mine = ref.closed[i] if i < len(ref.closed) else None
        theirs = other.closed[i] if i < len(other.closed) else None
        parts.append(
            f"closed {len(ref.closed)} vs {len(other.closed)}; first differing (col, entry, "
            f"exit, units): {ref.name} {_row(mine)} vs {other.name} {_row(theirs)}"
        )
    if not same_open:
        parts.append(f"open {ref.open.tolist()} vs {other.open.tolist()}")
    if not same_equity:
        parts.append(f"final equity rel diff {worst:.2e}")
    return False, " ".join(parts)


def _row(row: Any) -> str:
    return "-" if row is None else "(" + ", ".join(f"{v:.0f}" for v in row) + ")"


def explain_sma(ref: Book, other: Book, close: Any) -> str:
    """At the first differing trade: the signal bar's |fast − slow| (a float tie?)."""
    i = first_difference(ref.closed, other.closed)
    rows = [b.closed[i] for b in (ref, other) if i < len(b.closed)]
    lines = []
    for row in rows:
        col, entry, exit_ = int(row[0]), int(row[1]), int(row[2])
        c = close.reshape(len(close), -1)[:, col]
        fast = rolling_mean(c, FAST)
        slow = rolling_mean(c, SLOW)
        for bar in (entry - 1, exit_ - 1):
            gap = fast[bar - 1 : bar + 1] - slow[bar - 1 : bar + 1]
            lines.append(
                f"      col {col} signal bar {bar}: fast-slow at bar-1, bar = "
                f"{gap[0]:+.3e}, {gap[1]:+.3e} (relative {abs(gap).min() / c[bar]:.1e}: "
                f"{'a float tie' if abs(gap).min() <= 1e-9 * c[bar] else 'no tie'})"
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Numba compile time, in fresh subprocesses
# --------------------------------------------------------------------------------------------


def probe(engine: str) -> dict[str, float]:
    """Run in a subprocess: time the first SMA-crossover backtest (and, for quantbeat, the
    first VZB backtest) after importing the engine."""
    data = random_walk(300, 1, seed=3)
    out: dict[str, float] = {}
    if engine == "quantbeat":
        market = market_of(data)
        t0 = time.perf_counter()
        quantbeat_sma(market)
        out["sma"] = time.perf_counter() - t0
        vzb = market_of(breakout_walk(300, seed=3))
        strategy = get("volume_zone_breakout")
        t0 = time.perf_counter()
        config = strategy.execution_with({"sell_tax": "none"})
        simulate(vzb, strategy.signals(vzb), config, initial_cash=CASH)
        out["vzb"] = time.perf_counter() - t0
    else:
        import vectorbt as vbt

        close, open_ = pd.Series(data["close"][:, 0]), pd.Series(data["open"][:, 0])
        t0 = time.perf_counter()
        fast = vbt.MA.run(close, FAST)
        slow = vbt.MA.run(close, SLOW)
        entries = fast.ma_crossed_above(slow).shift(1, fill_value=False)
        exits = fast.ma_crossed_below(slow).shift(1, fill_value=False)
        out["signals"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        vbt.Portfolio.from_signals(
            close,
            entries,
            exits,
            price=open_,
            size=FRACTION,
            size_type="percent",
            size_granularity=1,
            fees=FEES,
            init_cash=CASH,
            direction="longonly",
        )
        out["from_signals"] = time.perf_counter() - t0
        out["sma"] = out["signals"] + out["from_signals"]
    return out


def compile_times() -> dict[str, dict[str, dict[str, float]]]:
    """{engine: {"compile": probe, "cached": probe}}: a fresh, empty numba cache, then the
    same cache again."""
    result: dict[str, dict[str, dict[str, float]]] = {}
    for engine in ("quantbeat", "vectorbt"):
        with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            runs = {}
            for label in ("compile", "cached"):
                proc = subprocess.run(
                    [sys.executable, __file__, "--probe", engine],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                runs[label] = json.loads(proc.stdout.strip().splitlines()[-1])
            result[engine] = runs
    return result


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------


def sma_case(
    label: str, data: dict[str, Any], repeats: dict[str, int], with_backtesting: bool
) -> dict[str, Any]:
    market = market_of(data)
    n, m = market.shape
    close: Any
    open_: Any
    if m == 1:
        close = pd.Series(data["close"].reshape(-1), index=pd.DatetimeIndex(market.times))
        open_ = pd.Series(data["open"].reshape(-1), index=close.index)
    else:
        index = pd.DatetimeIndex(market.times)
        close = pd.DataFrame(data["close"], index=index, columns=list(market.symbols))
        open_ = pd.DataFrame(data["open"], index=index, columns=list(market.symbols))

    t0 = time.perf_counter()
    result = quantbeat_sma(market)  # warm-up (kernels loaded at start)
    qb_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    pf = vectorbt_sma(close, open_)  # warm-up: this shape's first call
    vbt_first = time.perf_counter() - t0

    out: dict[str, Any] = {"label": label, "n": n, "m": m}
    out["quantbeat"] = median_time(lambda: quantbeat_sma(market), repeats["quantbeat"])
    signals = SMA.signals(market, {"fast": FAST, "slow": SLOW})
    out["qb_signals"] = median_time(
        lambda: SMA.signals(market, {"fast": FAST, "slow": SLOW}), repeats["quantbeat"]
    )
    out["qb_simulate"] = median_time(
        lambda: simulate(market, signals, SMA_CONFIG, initial_cash=CASH), repeats["quantbeat"]
    )
    if m > 1:
        # the same run with the dated sell tax on (KOSPI, daily bars from 2024-01-02): what
        # the per-sale tax lookup costs the kernel (not compared with the other engines)
        taxed = Market.from_arrays(
            np.datetime64("2024-01-02", "D") + np.arange(n),
            market.symbols,
            markets="KOSPI",
            **{k: data[k] for k in ("open", "high", "low", "close", "volume")},
        )
        taxed_config = SMA.execution_with({**SMA_CONFIG.as_dict(), "sell_tax": "table"})
        simulate(taxed, signals, taxed_config, initial_cash=CASH)
        out["qb_simulate_taxed"] = median_time(
            lambda: simulate(taxed, signals, taxed_config, initial_cash=CASH),
            repeats["quantbeat"],
        )
    out["vectorbt"] = median_time(lambda: vectorbt_sma(close, open_), repeats["vectorbt"])
    out["first"] = (qb_first, vbt_first)

    books = [book_quantbeat(result), book_vectorbt(pf)]
    if with_backtesting:
        strategy = _sma_cross_class()
        frame = frame_of(data)
        backtesting_run(frame.iloc[:1000], strategy, FEES)  # warm-up
        stats_holder: list[Any] = []
        out["backtesting"] = median_time(
            lambda: stats_holder.append(backtesting_run(frame, strategy, FEES)),
            repeats["backtesting"],
        )
        books.append(book_backtesting(stats_holder[-1]))
    checks = []
    for other in books[1:]:
        ok, line = compare(books[0], other)
        checks.append((ok, line))
        if not ok:
            checks.append((ok, explain_sma(books[0], other, data["close"])))
    out["checks"] = checks
    out["trades"] = len(result.trades)
    out["final"] = result.final_equity
    return out


def vzb_books(data: dict[str, Any]) -> tuple[Book, Book, BacktestResult, Any]:
    from backtest_twins import VolumeZoneBreakout

    market = market_of(data)
    strategy = get("volume_zone_breakout")
    config = strategy.execution_with({"fraction": FRACTION, "sell_tax": "none"})
    result = simulate(market, strategy.signals(market), config, initial_cash=CASH)
    stats = backtesting_run(frame_of(data), VolumeZoneBreakout, config.fees)
    return book_quantbeat(result), book_backtesting(stats), result, stats


def classify_vzb(data: dict[str, Any], ref: Book, twin: Book, result: BacktestResult) -> str:
    """Why the first differing VZB trade differs, when the bars agree."""
    same_bars = ref.closed.shape == twin.closed.shape and np.array_equal(
        ref.closed[:, :3], twin.closed[:, :3]
    )
    if not same_bars or ref.exit_px is None or twin.exit_px is None:
        i = first_difference(ref.closed[:, :3], twin.closed[:, :3])
        mine = ref.closed[i] if i < len(ref.closed) else None
        theirs = twin.closed[i] if i < len(twin.closed) else None
        return f"entry/exit bars differ first at trade {i}: {_row(mine)} vs {_row(theirs)}"
    price_diff = np.flatnonzero(~np.isclose(ref.exit_px, twin.exit_px, rtol=1e-12, atol=0.0))
    if not len(price_diff):
        i = first_difference(ref.closed, twin.closed)
        return f"same bars and prices, units differ first at trade {i}"
    i = int(price_diff[0])
    bar = int(ref.closed[i, 2])
    open_ = float(data["open"][bar])
    t = result.trades
    rows = np.flatnonzero((t.exit_bar == bar) & (t.entry_bar == int(ref.closed[i, 1])))
    reasons = {t.reasons()[k] for k in rows}
    at_open = abs(twin.exit_px[i] - open_) <= 1e-9 * open_
    if "partial" in reasons and at_open and open_ > ref.exit_px[i]:
        return (
            f"partial target gapped through at the open of bar {bar}: quantbeat sells the "
            f"half at its level {ref.exit_px[i]:.4f}, backtesting.py's limit order at the open "
            f"{open_:.4f} (later units follow from the different equity)"
        )
    return (
        f"exit price differs first at bar {bar} ({sorted(reasons)}): quantbeat "
        f"{ref.exit_px[i]:.6f}, backtesting.py {twin.exit_px[i]:.6f}, open {open_:.6f}"
    )


def gapped_entries(data: dict[str, Any], signals: Any) -> int:
    """Entry signals whose next open is at or below their stop."""
    bars = np.flatnonzero(signals.entries[:-1, 0])
    return int((data["open"][bars + 1] <= signals.stop[bars, 0]).sum())


def main() -> None:
    import backtesting
    import vectorbt as vbt
    from backtest_twins import VolumeZoneBreakout

    from quant.backtest import engine as engine_module
    from quant.backtest import strategies as strategies_module

    wall = time.perf_counter()
    print(
        f"engines: quantbeat (numba {numba.__version__}), vectorbt {vbt.__version__}, "
        f"backtesting.py {backtesting.__version__}; numpy {np.__version__}, pandas "
        f"{pd.__version__}; {os.cpu_count()} CPUs"
    )

    # -- compile --------------------------------------------------------------------------
    compiled = compile_times()
    qb_c, vbt_c = compiled["quantbeat"], compiled["vectorbt"]
    warm_market = market_of(random_walk(100, 1, seed=5))
    t0 = time.perf_counter()
    engine_module.warm_up()
    strategies_module.warm_up()
    quantbeat_sma(warm_market)
    load_in_process = time.perf_counter() - t0
    print("numba: first backtest in a fresh process (imports excluded)")
    print(
        f"  quantbeat SMA crossover: compile {qb_c['compile']['sma']:6.2f} s, from the on-disk "
        f"cache {qb_c['cached']['sma']:5.2f} s (VZB on top: compile "
        f"{qb_c['compile']['vzb']:5.2f} s, cached {qb_c['cached']['vzb']:5.2f} s); this "
        f"process, from the repo's cache: {load_in_process:.2f} s (a compile if the sources "
        f"changed since it was written)"
    )
    print(
        f"  vectorbt  SMA crossover: compile {vbt_c['compile']['sma']:6.2f} s "
        f"(MA + crossovers {vbt_c['compile']['signals']:5.2f} s, from_signals "
        f"{vbt_c['compile']['from_signals']:5.2f} s), from the on-disk cache "
        f"{vbt_c['cached']['sma']:5.2f} s (from_signals {vbt_c['cached']['from_signals']:5.2f} s)"
    )

    # -- SMA crossover ----------------------------------------------------------------------
    print(
        f"\nSMA crossover {FAST}/{SLOW}, fees {FEES:.1%}, integer units, {FRACTION} of the "
        f"account, fills at the next open; median wall time per backtest"
    )
    cases = [
        sma_case(
            "1,000 candles",
            random_walk(1_000, 1, seed=7),
            {"quantbeat": 200, "vectorbt": 20, "backtesting": 7},
            True,
        ),
        sma_case(
            "100,000 candles",
            random_walk(100_000, 1, seed=7),
            {"quantbeat": 30, "vectorbt": 10, "backtesting": 3},
            True,
        ),
        sma_case(
            "1,000,000 candles",
            random_walk(1_000_000, 1, seed=7),
            {"quantbeat": 7, "vectorbt": 5, "backtesting": 0},
            False,
        ),
        sma_case(
            "portfolio 2,500 x 500",
            random_walk(500, 2_500, seed=8),
            {"quantbeat": 15, "vectorbt": 5, "backtesting": 0},
            False,
        ),
    ]
    all_agree = True
    for case in cases:
        print(
            f"  {case['label']:<22} {case['trades']:>7,} trade rows, final equity "
            f"{case['final']:,.0f}"
        )
        qb = case["quantbeat"]
        print(
            f"    quantbeat      {fmt(qb)}  (signals {fmt(case['qb_signals']).strip()}, "
            f"simulate {fmt(case['qb_simulate']).strip()}; first call "
            f"{fmt(case['first'][0]).strip()})"
        )
        if "qb_simulate_taxed" in case:
            print(
                f"    quantbeat simulate with the dated sell tax on "
                f"{fmt(case['qb_simulate_taxed']).strip()} "
                f"({case['qb_simulate_taxed'] / case['qb_simulate']:.2f}x the untaxed)"
            )
        print(
            f"    vectorbt       {fmt(case['vectorbt'])}  -> quantbeat "
            f"{case['vectorbt'] / qb:6.1f}x faster (first call of this shape "
            f"{fmt(case['first'][1]).strip()})"
        )
        if "backtesting" in case:
            print(
                f"    backtesting.py {fmt(case['backtesting'])}  -> quantbeat "
                f"{case['backtesting'] / qb:6.0f}x faster"
            )
        else:
            print("    backtesting.py not run (pure-Python bar loop: too slow at this size)")
        for ok, line in case["checks"]:
            all_agree = all_agree and ok
            print(f"    {line}")

    # -- Volume Zone Breakout ---------------------------------------------------------------
    vzb = get("volume_zone_breakout")
    vzb_config = vzb.execution_with({"fraction": FRACTION, "sell_tax": "none"})
    data = breakout_walk(1_000, seed=VZB_SEED)
    market = market_of(data)
    frame = frame_of(data)

    def run_qb_vzb() -> BacktestResult:
        return simulate(market, vzb.signals(market), vzb_config, initial_cash=CASH)

    def run_twin() -> Any:
        return backtesting_run(frame, VolumeZoneBreakout, vzb_config.fees)

    run_qb_vzb()
    run_twin()
    qb_vzb = median_time(run_qb_vzb, 200)
    vzb_signals = vzb.signals(market)
    qb_vzb_sig = median_time(lambda: vzb.signals(market), 200)
    qb_vzb_sim = median_time(
        lambda: simulate(market, vzb_signals, vzb_config, initial_cash=CASH), 200
    )
    from quant.indicators.custom import rolling_volume_profile

    h, lo, v = (np.ascontiguousarray(data[k]) for k in ("high", "low", "volume"))
    qb_profile = median_time(
        lambda: rolling_volume_profile(h, lo, v, window=60, bins=24, value_area=0.7), 200
    )
    twin = median_time(run_twin, 7)
    ref, twin_book, result, _ = vzb_books(data)
    ok, line = compare(ref, twin_book)
    reasons = Counter(result.trades.reasons())
    print(
        f"\nVolume Zone Breakout, 1,000 candles (seed {VZB_SEED}: {int(vzb_signals.entries.sum())} "
        f"entry signals, {len(result.trades)} trade rows: "
        + ", ".join(f"{k} {c}" for k, c in sorted(reasons.items()))
        + f"), fees {vzb_config.fees:.3%}, {FRACTION} of the account; entries whose next open "
        f"is at or below their stop (skipped by quantbeat, not expressible in the twin): "
        f"{gapped_entries(data, vzb_signals)}"
    )
    print(
        f"    quantbeat      {fmt(qb_vzb)}  (signals {fmt(qb_vzb_sig).strip()}, profiling only "
        f"the bars that pass the cheap entry conditions — a profile at every bar would cost "
        f"{fmt(qb_profile).strip()} —; simulate {fmt(qb_vzb_sim).strip()})"
    )
    print(f"    twin           {fmt(twin)}  -> quantbeat {twin / qb_vzb:6.1f}x faster")
    print(
        f"    seed project   {fmt(SEED_PROJECT_VZB_S)}  (its VZB backtest, measured there) -> "
        f"quantbeat {SEED_PROJECT_VZB_S / qb_vzb:6.0f}x faster"
    )
    print(f"    {line}")
    vzb_agree = ok
    if not ok:
        print(f"      cause: {classify_vzb(data, ref, twin_book, result)}")
    sweep_ok = 0
    gapped = 0
    causes: list[str] = []
    for seed in VZB_SWEEP:
        sweep_data = breakout_walk(1_000, seed=seed)
        a, b, r, _ = vzb_books(sweep_data)
        agree, _ = compare(a, b)
        gapped += gapped_entries(
            sweep_data, get("volume_zone_breakout").signals(market_of(sweep_data))
        )
        if agree:
            sweep_ok += 1
        else:
            causes.append(f"seed {seed}: {classify_vzb(sweep_data, a, b, r)}")
    print(
        f"    agreement over seeds {VZB_SWEEP.start}-{VZB_SWEEP.stop - 1}: {sweep_ok} of "
        f"{len(VZB_SWEEP)} identical ({gapped} entries gapping through their stop)"
    )
    for cause in causes:
        print(f"      {cause}")

    # -- goals ------------------------------------------------------------------------------
    by_label = {c["label"]: c for c in cases}
    million = by_label["1,000,000 candles"]
    portfolio = by_label["portfolio 2,500 x 500"]
    hundred_k = by_label["100,000 candles"]
    r_1m = million["vectorbt"] / million["quantbeat"]
    r_pf = portfolio["vectorbt"] / portfolio["quantbeat"]
    r_bt = hundred_k["backtesting"] / hundred_k["quantbeat"]
    r_bt_min = min(c["backtesting"] / c["quantbeat"] for c in cases if "backtesting" in c)
    r_vzb = twin / qb_vzb
    print(f"\nall SMA engines agree on the trades: {'yes' if all_agree else 'NO'}")
    print(f"VZB twin agrees on the trades (seed {VZB_SEED}): {'yes' if vzb_agree else 'NO'}")
    print(f"total runtime {time.perf_counter() - wall:.0f} s")
    print(
        f"numba compile: quantbeat {qb_c['compile']['sma']:.2f} s, vectorbt "
        f"{vbt_c['compile']['sma']:.2f} s (excluded from the ratios)"
    )
    print(
        f"backtesting_py goal: the 100,000-candle case (min over sizes {r_bt_min:.0f}x); a goal "
        f"counts as met only when the engines agree on the trades"
    )
    print(f"goal vectorbt_1m: {r_1m:.1f}x vectorbt (target >= 2x) {met(r_1m >= 2, all_agree)}")
    print(
        f"goal vectorbt_portfolio: {r_pf:.1f}x vectorbt (target >= 2x) {met(r_pf >= 2, all_agree)}"
    )
    print(
        f"goal backtesting_py: {r_bt:.0f}x backtesting.py (target >= 50x) "
        f"{met(r_bt >= 50, all_agree)}"
    )
    print(
        f"goal vzb_vs_backtesting_py: {r_vzb:.1f}x its backtesting.py twin (target >= 100x) "
        f"{met(r_vzb >= 100, vzb_agree)}"
    )


def met(fast_enough: bool, agree: bool) -> str:
    return "met" if fast_enough and agree else "missed"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--probe":
        print(json.dumps(probe(sys.argv[2])))
    else:
        main()
