"""Row checks for provider data: impossible rows are rejected (and recorded by the caller),
the rest of the batch is kept.

A rejected row is one that cannot be stored as a fact: a missing key, a duplicate, a
non-finite number, a non-positive price, ``high < low``, an open or close outside the day's
range, a negative volume, or an instrument the caller does not know. Each rejection names the
reason and the offending values. (Merely *suspicious* rows — a move beyond the daily limit,
zero volume on a session — are a later issue's flags, not rejections.)
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from quant.errors import ValidationError
from quant.market.types import (
    DAILY_CANDLE_COLUMNS,
    INTRADAY_CANDLE_COLUMNS,
    INVESTOR_FLOW_COLUMNS,
    REFERENCE_BAR_COLUMNS,
)

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")


@dataclass(frozen=True, slots=True)
class Rejection:
    """One row that was not stored, and why. ``values`` holds the row as received
    (JSON-safe: NaN and infinities become strings)."""

    dataset: str
    market: str
    ticker: str
    trade_date: dt.date | None
    reason: str
    detail: str
    values: dict[str, Any] = field(default_factory=dict)


def _json_safe(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _as_date(value: object) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    return value if isinstance(value, dt.date) else None


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], dataset: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValidationError(
            f"{dataset} frame lacks columns {missing} (has {list(frame.columns)})",
            field="columns",
            value=missing,
        )


def _split(
    frame: pd.DataFrame,
    columns: Sequence[str],
    dataset: str,
    checks: list[tuple[str, pd.Series, str]],
    known: Collection[tuple[str, str]] | None,
    key: Sequence[str] = ("trade_date",),
) -> tuple[pd.DataFrame, list[Rejection]]:
    """Apply ``checks`` — (reason, bad-row mask, detail template) in priority order — and
    return the rows that pass plus one rejection per failing row (its first reason).

    A row is identified by market, ticker and the ``key`` columns; templates may use any
    column and ``{when}`` (the ``key`` values)."""
    frame = frame.reset_index(drop=True)
    reason = pd.Series([""] * len(frame), index=frame.index, dtype=object)
    detail = reason.copy()

    key_missing = frame["ticker"].isna() | (frame["ticker"].astype(str).str.strip() == "")
    key_missing |= frame["market"].isna()
    for col in key:
        key_missing |= frame[col].isna()
    all_checks: list[tuple[str, pd.Series, str]] = [
        ("missing_key", key_missing, f"market, ticker or {'/'.join(key)} is missing"),
    ]
    if known is not None:
        pairs = frame[["market", "ticker"]].astype(str)
        # membership per distinct pair (a batch has thousands of rows per pair at most a few)
        strange = [
            p for p in pairs.drop_duplicates().itertuples(index=False, name=None) if p not in known
        ]
        unknown = pd.Series(
            pd.MultiIndex.from_frame(pairs).isin(strange) if strange else False,
            index=frame.index,
        )
        all_checks.append(
            ("unknown_instrument", unknown & ~key_missing, "{market}:{ticker} is not listed")
        )
    duplicate = frame.duplicated(subset=["market", "ticker", *key], keep="first")
    all_checks.append(("duplicate_row", duplicate, "a second row for {ticker} at {when}"))
    all_checks.extend(checks)

    for code, mask, template in all_checks:
        hit = mask.fillna(True).astype(bool) & (reason == "")
        if not hit.any():
            continue
        reason[hit] = code
        for i in frame.index[hit]:
            row = {c: _json_safe(frame.at[i, c]) for c in columns}
            when = " ".join(str(row[k]) for k in key)
            detail[i] = template.format(when=when, **row)

    bad = reason != ""
    rejections = [
        Rejection(
            dataset=dataset,
            market=str(frame.at[i, "market"]),
            ticker=str(frame.at[i, "ticker"]),
            trade_date=_as_date(frame.at[i, key[-1]]),
            reason=str(reason[i]),
            detail=str(detail[i]),
            values={c: _json_safe(frame.at[i, c]) for c in columns},
        )
        for i in frame.index[bad]
    ]
    return frame.loc[~bad, list(columns)].reset_index(drop=True), rejections


def check_daily_candles(
    frame: pd.DataFrame, known: Collection[tuple[str, str]] | None = None
) -> tuple[pd.DataFrame, list[Rejection]]:
    """Split a daily-candle frame (:data:`DAILY_CANDLE_COLUMNS`) into storable rows and
    rejections. ``known``, when given, is the set of (market, ticker) pairs that exist.

    Raises:
        quant.errors.ValidationError: the frame lacks a required column (nothing can be
            judged row by row then).
    """
    _require_columns(frame, DAILY_CANDLE_COLUMNS, "daily candles")
    frame = frame.reset_index(drop=True)
    checks = _candle_checks(frame)
    return _split(frame, DAILY_CANDLE_COLUMNS, "daily_candles", checks, known)


def check_intraday_candles(
    frame: pd.DataFrame, known: Collection[tuple[str, str]] | None = None
) -> tuple[pd.DataFrame, list[Rejection]]:
    """Split an intraday-candle frame (:data:`INTRADAY_CANDLE_COLUMNS`) like
    :func:`check_daily_candles`; a row is identified by market, ticker, interval and ``ts``.

    Raises:
        quant.errors.ValidationError: the frame lacks a required column.
    """
    _require_columns(frame, INTRADAY_CANDLE_COLUMNS, "intraday candles")
    frame = frame.reset_index(drop=True)
    return _split(
        frame,
        INTRADAY_CANDLE_COLUMNS,
        "intraday_candles",
        _candle_checks(frame),
        known,
        key=("interval", "ts"),
    )


def _candle_checks(frame: pd.DataFrame) -> list[tuple[str, pd.Series, str]]:
    """The value checks every OHLCV bar must pass, in priority order."""
    numbers = frame[[*PRICE_COLUMNS, "volume", "traded_value"]].apply(
        pd.to_numeric, errors="coerce"
    )
    finite = np.isfinite(numbers.to_numpy(dtype=float)).all(axis=1)
    o, h, lo, c = (numbers[col] for col in PRICE_COLUMNS)
    return [
        (
            "non_finite",
            pd.Series(~finite, index=frame.index),
            "a price or volume of {ticker} at {when} is not a finite number",
        ),
        (
            "non_positive_price",
            (numbers[list(PRICE_COLUMNS)] <= 0).any(axis=1),
            "{ticker} at {when}: prices must be > 0 (open {open}, high {high}, "
            "low {low}, close {close})",
        ),
        ("high_below_low", h < lo, "{ticker} at {when}: high {high} < low {low}"),
        (
            "open_outside_range",
            (o < lo) | (o > h),
            "{ticker} at {when}: open {open} outside [low {low}, high {high}]",
        ),
        (
            "close_outside_range",
            (c < lo) | (c > h),
            "{ticker} at {when}: close {close} outside [low {low}, high {high}]",
        ),
        (
            "negative_volume",
            (numbers["volume"] < 0) | (numbers["traded_value"] < 0),
            "{ticker} at {when}: volume {volume} / traded value {traded_value} < 0",
        ),
    ]


#: Net-buying figures are stored as 64-bit integers: their magnitude stays below this.
_INT64_LIMIT = float(2**63)


def check_investor_flows(
    frame: pd.DataFrame, known: Collection[tuple[str, str]] | None = None
) -> tuple[pd.DataFrame, list[Rejection]]:
    """Split an investor-flow frame (:data:`INVESTOR_FLOW_COLUMNS`) like
    :func:`check_daily_candles`: every net-buying figure must be a finite whole number that a
    64-bit integer holds (``|x| < 2**63``, the ``BIGINT`` columns; ``out_of_range`` otherwise).

    Raises:
        quant.errors.ValidationError: the frame lacks a required column.
    """
    _require_columns(frame, INVESTOR_FLOW_COLUMNS, "investor flows")
    frame = frame.reset_index(drop=True)
    value_cols = [c for c in INVESTOR_FLOW_COLUMNS if c not in ("market", "ticker", "trade_date")]
    numbers = frame[value_cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    finite = np.isfinite(numbers).all(axis=1)
    whole = np.zeros(len(frame), dtype=bool)
    whole[finite] = (np.mod(numbers[finite], 1) == 0).all(axis=1)
    fits = np.zeros(len(frame), dtype=bool)
    fits[finite] = (np.abs(numbers[finite]) < _INT64_LIMIT).all(axis=1)
    checks: list[tuple[str, pd.Series, str]] = [
        (
            "non_finite",
            pd.Series(~finite, index=frame.index),
            "a net-buying figure of {ticker} at {when} is not a finite number",
        ),
        (
            "non_integer",
            pd.Series(~whole, index=frame.index),
            "{ticker} at {when}: net buying must be whole shares and won",
        ),
        (
            "out_of_range",
            pd.Series(~fits, index=frame.index),
            "{ticker} at {when}: a net-buying figure is beyond ±9.2e18, the range of a "
            "64-bit integer",
        ),
    ]
    good, rejections = _split(frame, INVESTOR_FLOW_COLUMNS, "investor_flows", checks, known)
    good[value_cols] = good[value_cols].astype("int64")
    return good, rejections


#: Daily price limits by market: a close further than this from the previous close cannot be
#: a real bar there (KOSPI/KOSDAQ ±30 %, KONEX ±15 %; crypto and US have none). A corporate
#: action (split, rights issue) on unadjusted prices is flagged too — rightly: it needs a
#: look before the bar feeds an indicator.
DAILY_LIMITS: dict[str, float] = {"KOSPI": 0.30, "KOSDAQ": 0.30, "KONEX": 0.15}
KRX_DAILY_LIMIT = DAILY_LIMITS["KOSPI"]


def flag_daily_candles(
    frame: pd.DataFrame,
    previous_close: Mapping[tuple[str, str], float] | None = None,
    *,
    limits: Mapping[str, float] = DAILY_LIMITS,
) -> pd.Series:
    """Quality flags for bars that passed :func:`check_daily_candles` but look wrong:

    * ``zero_volume`` — no shares traded on a session (a halt, or missing data);
    * ``limit_move`` — the close moved more than its market's limit (``limits``; markets not
      in it, such as crypto, have none) from the previous close.

    The previous close of a ticker's first row in ``frame`` comes from ``previous_close``
    (keyed by (market, ticker)); later rows use the row before. Returns a Series aligned with
    ``frame``: comma-separated flags, or ``None`` for a clean bar.
    """
    if frame.empty:
        return pd.Series([], dtype=object)
    ordered = frame.sort_values(["market", "ticker", "trade_date"])
    zero = ordered["volume"].to_numpy() == 0
    prev = ordered.groupby(["market", "ticker"], sort=False)["close"].shift(1)
    if previous_close:
        firsts = prev.isna()
        keys = zip(ordered.loc[firsts, "market"], ordered.loc[firsts, "ticker"], strict=True)
        prev.loc[firsts] = [previous_close.get((m, t), np.nan) for m, t in keys]
    move = np.abs(ordered["close"].to_numpy(dtype=float) / prev.to_numpy(dtype=float) - 1.0)
    limit = ordered["market"].map(lambda m: limits.get(str(m), np.inf)).to_numpy(dtype=float)
    beyond = np.nan_to_num(move, nan=0.0) > limit + 1e-9
    labels = np.where(
        zero & beyond,
        "zero_volume,limit_move",
        np.where(zero, "zero_volume", np.where(beyond, "limit_move", "")),
    )
    flags = pd.Series(labels, index=ordered.index, dtype=object).reindex(frame.index)
    return flags.where(flags != "", None)


def check_reference_bars(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[Rejection]]:
    """Split a reference-bar frame (:data:`quant.market.types.REFERENCE_BAR_COLUMNS`: indices,
    ETFs, exchange rates) into storable rows and rejections, with the candle checks — except
    that ``volume`` and ``value`` may be missing (NaN: an exchange rate has none); present,
    they must be finite and ≥ 0. Rejections carry market ``REF`` and the series code as
    ticker.

    Raises:
        quant.errors.ValidationError: the frame lacks a required column.
    """
    _require_columns(frame, REFERENCE_BAR_COLUMNS, "reference bars")
    work = frame.reset_index(drop=True).assign(market="REF", ticker=frame["code"].to_numpy())
    prices = work[list(PRICE_COLUMNS)].apply(pd.to_numeric, errors="coerce")
    sizes = work[["volume", "value"]].apply(pd.to_numeric, errors="coerce")
    finite_prices = np.isfinite(prices.to_numpy(dtype=float)).all(axis=1)
    size_values = sizes.to_numpy(dtype=float)
    bad_sizes = np.isinf(size_values).any(axis=1) | (size_values < 0).any(axis=1)
    o, h, lo, c = (prices[col] for col in PRICE_COLUMNS)
    checks = [
        (
            "non_finite",
            pd.Series(~finite_prices, index=work.index),
            "a price of {code} at {when} is not a finite number",
        ),
        (
            "non_positive_price",
            (prices <= 0).any(axis=1),
            "{code} at {when}: prices must be > 0 (open {open}, high {high}, low {low}, "
            "close {close})",
        ),
        ("high_below_low", h < lo, "{code} at {when}: high {high} < low {low}"),
        (
            "open_outside_range",
            (o < lo) | (o > h),
            "{code} at {when}: open {open} outside [low {low}, high {high}]",
        ),
        (
            "close_outside_range",
            (c < lo) | (c > h),
            "{code} at {when}: close {close} outside [low {low}, high {high}]",
        ),
        (
            "negative_volume",
            pd.Series(bad_sizes, index=work.index),
            "{code} at {when}: volume {volume} / value {value} must be finite and ≥ 0",
        ),
    ]
    columns = (*REFERENCE_BAR_COLUMNS, "market", "ticker")
    kept, rejections = _split(work, columns, "reference_bars", checks, None)
    return kept.loc[:, list(REFERENCE_BAR_COLUMNS)].reset_index(drop=True), rejections
