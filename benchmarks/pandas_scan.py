"""The reference of ``benchmarks/scan.py``: a deliberately straightforward, per-instrument pandas
implementation of the same scan rules as quantbeat (``quant.scans``: Trend Template, VCP,
supply/demand, closing bet V2), with the same default parameters, written the way a typical
script would be. It is used only as the baseline that benchmark measures quantbeat's universe
scan against; nothing in quantbeat imports it, and it imports nothing from ``quant.scans``,
``quant.indicators`` or ``quantbeat`` (an independent implementation).

How it works, on purpose without batching, caching or vectorising across instruments:

1. list the universe (the listed instruments of the markets);
2. RS ratings: one ``pandas.read_sql`` per instrument for its last ``bars`` closes up to the
   day, the weighted RS raw score of the last close, then the percentile rating over the
   universe and the universe median RS raw score (the "index" for out-performance);
3. per instrument: one ``pandas.read_sql`` for its last ``bars`` candles (and, for the closing
   bet, one for its investor flows), indicators with ``rolling`` means/max/min/std, swing
   points and contractions with plain Python loops, and the rules. An instrument stops being
   evaluated at the first rule that rules it out (the Trend Template before the VCP search,
   the hard filters before the closing-bet score), as a screener script would.

Result: ``{"MARKET:TICKER": (score, grade)}`` for the candidates. VCP: the composite score
(0-100, rounded to 0.1) and its rating, which may be ``None`` below 50. Closing bet: the V2
total (0-21 points) and the grade S/A/B/C, with no news analysed (the news filter skipped,
news scores 0), as quantbeat scans when no AI analysis exists.

``daily_candles`` prices are NOT NULL, so a missing bar is an absent row and needs no
handling; windows and lags count rows. A halted day (volume 0) is a row the VCP search and the
closing bet's volume baseline skip, as quantbeat does.

Run alone for a quick look: ``.venv/bin/python benchmarks/pandas_scan.py 2026-11-20 vcp``
(database: ``QUANTBEAT_BENCH_DATABASE_URL``, default ``quantbeat_bench_scan`` on localhost).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import sys
import time
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, bindparam, text

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# ---- parameters (quantbeat's defaults) ----------------------------------------------------------

# RS raw = Σ weight × (C[t] / C[t − lag] − 1), IBD-style
RS_LAGS = (63, 126, 189, 252)
RS_WEIGHTS = (0.4, 0.2, 0.2, 0.2)

# Trend Template
MIN_ABOVE_LOW = 1.30
MIN_OF_HIGH = 0.75
MIN_RS_RATING = 70.0
RISING_LOOKBACK = 22
WEEK52 = 252

# VCP detection
VCP_WINDOW = 120
SWING_NEIGHBOURS = 5
MAX_CONTRACTIONS = 4
MIN_CONTRACTIONS = 2
MIN_FIRST_DEPTH = 0.08
MAX_DEPTH_RATIO = 0.75
MIN_DURATION = 15
DRY_UP_SHORT = 10
DRY_UP_LONG = 50
BREAKOUT_VOLUME = 1.5

# VCP scoring
WEIGHTS = (0.25, 0.25, 0.20, 0.15, 0.15)  # TT, contraction, volume, pivot, RS
RATINGS = (
    (90.0, "Textbook"),
    (80.0, "Strong"),
    (70.0, "Good"),
    (60.0, "Developing"),
    (50.0, "Weak"),
)
TT_POINTS = 14.3
EXTENSION_PENALTIES = ((0.25, 20.0), (0.18, 15.0), (0.12, 10.0), (0.08, 5.0))
PIVOT_BELOW = ((0.02, 90.0), (0.05, 75.0), (0.08, 60.0), (0.10, 45.0), (0.15, 30.0))
RS_SCORES = (
    (0.50, 100.0),
    (0.30, 95.0),
    (0.20, 90.0),
    (0.10, 80.0),
    (0.05, 70.0),
    (0.0, 60.0),
    (-0.05, 50.0),
    (-0.10, 40.0),
    (-0.20, 20.0),
)
RS_RATING_SCORES = (
    (99.0, 100.0),
    (95.0, 95.0),
    (90.0, 90.0),
    (80.0, 80.0),
    (70.0, 70.0),
    (60.0, 60.0),
    (50.0, 50.0),
    (40.0, 40.0),
    (25.0, 20.0),
)

# closing bet V2 (KRW)
MIN_TRADED_VALUE = 50_000_000_000.0  # 500억
MIN_CHANGE_PCT = 5.0
MAX_CHANGE_PCT = 29.9
MAX_UPPER_WICK_TO_BODY = 0.5
MIN_VOLUME_RATIO = 2.0
VOLUME_LOOKBACK = 20
TRADED_VALUE_POINTS = ((1e12, 3), (5e11, 2), (1e11, 1))
VOLUME_RATIO_BONUS = ((10.0, 4), (5.0, 3), (3.0, 2), (2.0, 1))
CHANGE_BONUS = ((25.0, 5), (20.0, 4), (15.0, 3), (10.0, 2), (5.0, 1))
GRADES = (("S", 10, 1e12), ("A", 8, 5e11), ("B", 6, 1e11))  # (grade, min total, min KRW)
GRADE_C_MIN_TOTAL = 8  # otherwise C; below: no grade

# supply/demand
FLOW_BARS = 40  # sessions of flows read (quantbeat's scan reads the same)
SUPPLY_SHORT = 5
SUPPLY_LONG = 20

# ---- SQL ----------------------------------------------------------------------------------------

UNIVERSE_SQL = text(
    "SELECT id, market, ticker FROM instruments "
    "WHERE market IN :markets AND listing_status = 'listed' ORDER BY id"
).bindparams(bindparam("markets", expanding=True))
CLOSES_SQL = text(
    "SELECT trade_date, close FROM daily_candles WHERE instrument_id = :id "
    "AND trade_date <= :day ORDER BY trade_date DESC LIMIT :bars"
)
CANDLES_SQL = text(
    "SELECT trade_date, open, high, low, close, volume, traded_value FROM daily_candles "
    "WHERE instrument_id = :id AND trade_date <= :day ORDER BY trade_date DESC LIMIT :bars"
)
FLOWS_SQL = text(
    "SELECT trade_date, foreign_net_krw, institution_net_krw FROM investor_flows "
    "WHERE instrument_id = :id AND trade_date >= :start AND trade_date <= :day "
    "ORDER BY trade_date"
)


def _first_at_least(value: float, table: Sequence[tuple[float, Any]], default: Any) -> Any:
    for bound, points in table:
        if value >= bound:
            return points
    return default


# ---- RS -----------------------------------------------------------------------------------------


def rs_raw_last(close: pd.Series) -> float:
    """The weighted RS raw score of the last close (NaN with too short a history)."""
    rs = pd.Series(0.0, index=close.index)
    for lag, weight in zip(RS_LAGS, RS_WEIGHTS, strict=True):
        rs = rs + weight * (close / close.shift(lag) - 1.0)
    return float(rs.iloc[-1]) if len(rs) else math.nan


def rs_ratings(raw: dict[str, float]) -> tuple[dict[str, float], float | None]:
    """RS rating 1-99 of every finite raw score (average rank percentile, 98·p rounded half
    up, plus 1) and the universe median raw score."""
    values = pd.Series(raw, dtype=float).dropna()
    n = len(values)
    if n == 0:
        return {}, None
    if n == 1:
        return {values.index[0]: 50.0}, float(values.iloc[0])
    ranks = values.rank(method="average")
    ratings = {}
    for name, rank in ranks.items():
        # floor(1 + 98 (r − 1) / (n − 1) + 1/2) in integers: ranks are k or k + 1/2
        twice = round(2 * rank)
        ratings[str(name)] = float((3 * (n - 1) + 98 * (twice - 2)) // (2 * (n - 1)))
    return ratings, float(values.median())


# ---- Trend Template -----------------------------------------------------------------------------


def trend_template(df: pd.DataFrame, rs_rating: float | None) -> dict[str, bool]:
    close = df["close"]
    sma50 = close.rolling(50).mean()
    sma150 = close.rolling(150).mean()
    sma200 = close.rolling(200).mean()
    high_52w = df["high"].rolling(WEEK52).max()
    low_52w = df["low"].rolling(WEEK52).min()

    c = float(close.iloc[-1])
    s50, s150, s200 = float(sma50.iloc[-1]), float(sma150.iloc[-1]), float(sma200.iloc[-1])
    s200_before = math.nan
    if len(df) > RISING_LOOKBACK:
        s200_before = float(sma200.iloc[-1 - RISING_LOOKBACK])
    low, high = float(low_52w.iloc[-1]), float(high_52w.iloc[-1])
    rating = rs_rating if rs_rating is not None else math.nan
    # NaN compares False: an unknown input fails its criterion
    return {
        "close_above_sma150_and_sma200": c > s150 and c > s200,
        "sma150_above_sma200": s150 > s200,
        "sma200_rising": s200 > s200_before,
        "sma50_above_sma150_and_sma200": s50 > s150 and s50 > s200,
        "close_above_sma50": c > s50,
        "above_52w_low": c >= MIN_ABOVE_LOW * low,
        "near_52w_high": c >= MIN_OF_HIGH * high,
        "rs_rating": rating >= MIN_RS_RATING,
    }


# ---- VCP ----------------------------------------------------------------------------------------


def find_contractions(high: list[float], low: list[float]) -> tuple[list[dict[str, Any]], int]:
    """Swing points (strictly above/below 5 bars each side), then H1 = the highest swing high
    and up to 4 (high, next swing low) pairs. Returns (contractions, index of H1)."""
    n = len(high)
    k = SWING_NEIGHBOURS
    swing_highs = []
    swing_lows = []
    for i in range(k, n - k):
        if all(high[i] > high[i - j] and high[i] > high[i + j] for j in range(1, k + 1)):
            swing_highs.append(i)
        if all(low[i] < low[i - j] and low[i] < low[i + j] for j in range(1, k + 1)):
            swing_lows.append(i)
    if not swing_highs:
        return [], -1

    first = swing_highs[0]
    for i in swing_highs:
        if high[i] > high[first]:
            first = i
    contractions: list[dict[str, Any]] = []
    current = first
    for _ in range(MAX_CONTRACTIONS):
        lows_after = [j for j in swing_lows if j > current]
        if not lows_after:
            break
        trough = lows_after[0]
        top, bottom = high[current], low[trough]
        if not 0 < bottom < top:
            break
        contractions.append(
            {"high_at": current, "high": top, "low_at": trough, "depth": (top - bottom) / top}
        )
        highs_after = [j for j in swing_highs if j > trough]
        if not highs_after:
            break
        current = highs_after[0]
    return contractions, first


def scan_vcp(
    df: pd.DataFrame, rs_rating: float | None, rs_raw: float, benchmark: float | None
) -> tuple[float, str | None] | None:
    """(score, rating) when the Trend Template passes and the VCP is valid, else None."""
    trend = trend_template(df, rs_rating)
    if not all(trend.values()):
        return None

    traded = df[df["volume"] != 0]
    window = traded.tail(VCP_WINDOW)
    contractions, first = find_contractions(window["high"].tolist(), window["low"].tolist())
    if len(contractions) < MIN_CONTRACTIONS:
        return None
    depths = [c["depth"] for c in contractions]
    if depths[0] < MIN_FIRST_DEPTH:
        return None
    for a, b in pairwise(depths):
        if b / a > MAX_DEPTH_RATIO:
            return None
    if contractions[-1]["low_at"] - first < MIN_DURATION:
        return None

    # --- volume
    volumes = traded["volume"].tail(DRY_UP_LONG)
    dry_up: float | None = None
    volume_ratio: float | None = None
    if len(volumes) >= DRY_UP_LONG:
        long_mean = float(volumes.mean())
        if long_mean > 0:
            dry_up = float(volumes.tail(DRY_UP_SHORT).sum()) / DRY_UP_SHORT / long_mean
            today = float(df["volume"].iloc[-1])
            if today != 0:
                volume_ratio = today / long_mean
    close = float(df["close"].iloc[-1])
    pivot = contractions[-1]["high"]
    distance = close / pivot - 1.0
    breakout = distance > 0 and (volume_ratio or 0.0) >= BREAKOUT_VOLUME

    # --- TT component: 7 criteria (without SMA50 > SMA150/200) × 14.3, minus extension penalty
    held = sum(ok for name, ok in trend.items() if name != "sma50_above_sma150_and_sma200")
    tt_raw = min(100.0, round(held * TT_POINTS, 1))
    sma50 = float(df["close"].rolling(50).mean().iloc[-1])
    penalty = _first_at_least(close / sma50 - 1.0, EXTENSION_PENALTIES, 0.0)
    tt = max(0.0, tt_raw - penalty)

    # --- contraction component (the pattern is valid here)
    contraction = 0.0
    if len(depths) >= 4:
        contraction = 90.0
    elif len(depths) >= 3:
        contraction = 80.0
    elif len(depths) >= 2:
        contraction = 60.0
    if depths[-1] < 0.05:
        contraction += 10.0
    ratios = [b / a for a, b in pairwise(depths) if a > 0]
    if ratios and sum(ratios) / len(ratios) < 0.4:
        contraction += 10.0
    if depths[0] > 0.30:
        contraction -= 10.0
    contraction = max(0.0, min(100.0, contraction))

    # --- volume component
    moves = traded["close"].tail(21).diff().dropna()
    net_up = int((moves > 0).sum()) - int((moves < 0).sum())
    if dry_up is None:
        volume = 0.0
    else:
        if dry_up < 0.3:
            volume = 90.0
        elif dry_up < 0.5:
            volume = 75.0
        elif dry_up < 0.7:
            volume = 60.0
        elif dry_up <= 1.0:
            volume = 40.0
        else:
            volume = 20.0
        if distance > 0 and volume_ratio is not None and volume_ratio > BREAKOUT_VOLUME:
            volume += 10.0
        if net_up > 3:
            volume += 10.0
        elif net_up < -3:
            volume -= 10.0
        volume = max(0.0, min(100.0, volume))

    # --- pivot component
    if distance > 0:
        pivot_points = 100.0 if breakout else 85.0
    else:
        pivot_points = 10.0
        for bound, points in PIVOT_BELOW:
            if distance >= -bound:
                pivot_points = points
                break

    # --- RS component: out-performance over the universe median, else the rating
    rs = 0.0
    outperformance = rs_raw - benchmark if benchmark is not None else math.nan
    if not math.isnan(outperformance):
        rs = _first_at_least(outperformance, RS_SCORES, 0.0)
    elif rs_rating is not None:
        rs = _first_at_least(rs_rating, RS_RATING_SCORES, 0.0)

    components = (tt, contraction, volume, pivot_points, rs)
    total = round(sum(w * s for w, s in zip(WEIGHTS, components, strict=True)), 1)
    rating = None
    for least, label in RATINGS:
        if total >= least:
            rating = label
            break
    return total, rating


# ---- supply/demand and the closing bet ----------------------------------------------------------


def _streak(values: pd.Series) -> int:
    """+k for k net-buying sessions ending today, −k for selling (a NaN day breaks)."""
    last = values.iloc[-1]
    if pd.isna(last) or last == 0:
        return 0
    run = 0
    for v in reversed(values.tolist()):
        if (last > 0 and v > 0) or (last < 0 and v < 0):
            run += 1
        else:
            break
    return run if last > 0 else -run


def supply_demand(df: pd.DataFrame) -> dict[str, Any]:
    """Foreign/institutional net buying in KRW over 5 and 20 sessions, the ratios to the
    traded value, streaks and the 0-100 supply score (None unless every ratio is known)."""
    out: dict[str, Any] = {}
    flows = []
    for investor in ("foreign", "institution"):
        net = df[f"{investor}_net_krw"]
        for window in (SUPPLY_SHORT, SUPPLY_LONG):
            tail = net.tail(window)
            traded = df["traded_value"].tail(window)
            if len(df) < window or tail.isna().any():
                out[f"{investor}_{window}d_krw"] = math.nan
                flows.append(math.nan)
                continue
            out[f"{investor}_{window}d_krw"] = tail.sum()
            flows.append(tail.sum() / traded.sum() if traded.sum() > 0 else math.nan)
        out[f"{investor}_streak"] = _streak(net)
    # order: foreign 5, foreign 20, institution 5, institution 20
    weights = (0.20, 0.15, 0.20, 0.15)
    if any(math.isnan(f) for f in flows):
        out["score"] = None
        return out
    total = 0.0
    for weight, flow in zip(weights, flows, strict=True):
        total += weight * (max(-1.0, min(1.0, flow / 0.10)) + 1.0) / 2.0
    for investor in ("foreign", "institution"):
        total += 0.15 * (max(-1.0, min(1.0, out[f"{investor}_streak"] / 5)) + 1.0) / 2.0
    out["score"] = round(100.0 * total, 9)
    return out


def closing_bet(df: pd.DataFrame, flows: pd.DataFrame) -> tuple[float, str] | None:
    """(total, grade) of a graded closing-bet candidate with no news analysed, else None."""
    if len(df) < VOLUME_LOOKBACK + 1:
        return None
    today = df.iloc[-1]
    before = df.iloc[:-1]
    o, h, lo, close = (float(today[c]) for c in ("open", "high", "low", "close"))
    volume, traded_value = float(today["volume"]), float(today["traded_value"])
    if volume <= 0:
        return None  # halted
    prev_close = float(before["close"].iloc[-1])
    if prev_close <= 0:
        return None
    change = round((close / prev_close - 1.0) * 100.0, 10)
    traded_before = before[before["volume"] > 0]
    if len(traded_before) < VOLUME_LOOKBACK:
        return None
    baseline = float(traded_before["volume"].tail(VOLUME_LOOKBACK).mean())
    volume_ratio = round(volume / baseline, 10)

    # hard filters (the news filter is skipped: no news analysed)
    body = abs(close - o)
    upper_wick = h - max(o, close)
    lower_wick = min(o, close) - lo
    if traded_value < MIN_TRADED_VALUE:
        return None
    if not MIN_CHANGE_PCT <= change <= MAX_CHANGE_PCT:
        return None
    if upper_wick > MAX_UPPER_WICK_TO_BODY * body:
        return None
    if volume_ratio < MIN_VOLUME_RATIO:
        return None

    # base score: news 0 + traded value + chart + candle + consolidation + supply
    score = _first_at_least(traded_value, TRADED_VALUE_POINTS, 0)
    high_52w = df["high"].rolling(WEEK52).max()
    if close > high_52w.iloc[-2]:  # a new high: above the 52-week high as of yesterday
        score += 1
    ma20 = df["close"].rolling(20).mean().iloc[-1]
    ma60 = df["close"].rolling(60).mean().iloc[-1]
    if ma20 > ma60 and close > ma20:
        score += 1
    if close > o and body >= 2.0 * (upper_wick + lower_wick) and upper_wick < 0.3 * body:
        score += 1

    middle = df["close"].rolling(20).mean()
    std = df["close"].rolling(20).std(ddof=0)
    upper = middle + 2.0 * std
    lower = middle - 2.0 * std
    width = ((upper - lower) / middle).iloc[:-1].replace([np.inf, -np.inf], np.nan).dropna()
    if len(width) >= 19 and not pd.isna(upper.iloc[-1]):
        recent = width.tail(5).mean()
        older = width.tail(19).head(14).mean()
        if (recent < 0.8 * older or recent < 0.15) and close > upper.iloc[-1]:
            score += 1

    supply = supply_demand(df.join(flows, on="trade_date"))
    for investor in ("foreign", "institution"):
        if supply[f"{investor}_5d_krw"] > 0:  # NaN (unknown) scores no point
            score += 1

    score += _first_at_least(volume_ratio, VOLUME_RATIO_BONUS, 0)
    score += _first_at_least(change, CHANGE_BONUS, 0)

    for grade, least, least_value in GRADES:
        if score >= least and traded_value >= least_value:
            return float(score), grade
    if score >= GRADE_C_MIN_TOTAL:
        return float(score), "C"
    return None  # passed the filters but earns no grade: dropped


# ---- the universe scan --------------------------------------------------------------------------


def scan_universe_pandas(
    engine: Engine,
    trade_date: dt.date,
    strategy: str,
    markets: Sequence[str] = ("KOSPI", "KOSDAQ"),
    bars: int = 300,
) -> dict[str, tuple[float | None, str | None]]:
    """Scan the listed instruments of ``markets`` on ``trade_date`` with ``strategy``
    (``"vcp"`` or ``"closing_bet"``): ``{"MARKET:TICKER": (score, grade)}`` of the
    candidates."""
    if strategy not in ("vcp", "closing_bet"):
        raise ValueError(f"unknown strategy {strategy!r}")
    results: dict[str, tuple[float | None, str | None]] = {}
    with engine.connect() as conn:
        universe = pd.read_sql(UNIVERSE_SQL, conn, params={"markets": list(markets)})
        names = {row.id: f"{row.market}:{row.ticker}" for row in universe.itertuples()}

        # pass 1: RS raw of every instrument, then ratings over the universe
        raw = {}
        for ident, name in names.items():
            params: dict[str, Any] = {"id": ident, "day": trade_date, "bars": bars}
            closes = pd.read_sql(CLOSES_SQL, conn, params=params)
            if len(closes) == 0:
                continue
            closes = closes.sort_values("trade_date").reset_index(drop=True)
            raw[name] = rs_raw_last(closes["close"])
        ratings, benchmark = rs_ratings(raw)

        # pass 2: each instrument
        for ident, name in names.items():
            params = {"id": ident, "day": trade_date, "bars": bars}
            df = pd.read_sql(CANDLES_SQL, conn, params=params)
            if len(df) == 0:
                continue
            df = df.sort_values("trade_date").reset_index(drop=True)
            if strategy == "vcp":
                found = scan_vcp(df, ratings.get(name), raw.get(name, math.nan), benchmark)
            else:
                start = df["trade_date"].iloc[max(0, len(df) - FLOW_BARS)]
                params = {"id": ident, "start": start, "day": trade_date}
                flows = pd.read_sql(FLOWS_SQL, conn, params=params)
                flows = flows.set_index("trade_date").astype(float)
                found = closing_bet(df, flows)
            if found is not None:
                results[name] = found
    return results


def main(argv: list[str]) -> None:
    from db.engine import get_engine

    day = dt.date.fromisoformat(argv[0]) if argv else dt.date(2026, 11, 20)
    strategies = argv[1:] or ["vcp", "closing_bet"]
    url = os.environ.get(
        "QUANTBEAT_BENCH_DATABASE_URL",
        "postgresql+psycopg://postgres@127.0.0.1:5432/quantbeat_bench_scan",
    )
    engine = get_engine(url)
    for strategy in strategies:
        started = time.perf_counter()
        found = scan_universe_pandas(engine, day, strategy)
        elapsed = time.perf_counter() - started
        print(f"{strategy} {day}: {len(found)} candidates in {elapsed:.2f} s")
        for name, (score, grade) in sorted(found.items(), key=lambda kv: -(kv[1][0] or 0)):
            print(f"  {name:16} {score:6.1f} {grade}")


if __name__ == "__main__":
    main(sys.argv[1:])
