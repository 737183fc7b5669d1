"""Smart-money supply/demand from investor flows (``docs/domain.md`` §2).

For one instrument on its scan day (the last candle) this measures how much foreigners and
institutions bought on net, in KRW, over a short (5) and a long (20) session window, and puts
it on a size-neutral scale by dividing by the KRW traded in the same sessions::

    flow_N = Σ net_buy_KRW(last N sessions) / Σ traded_value_KRW(last N sessions)

so that a 0.10 reads "net buying equal to 10% of everything traded" for a mega-cap and a
small-cap alike. It also counts the consecutive net-buying (and net-selling) sessions that end
on the scan day, and maps all of that to a 0–100 score (:func:`supply_score`).

**Units.** ``*_krw`` figures are KRW, ``*_flow_*`` ratios and the score are dimensionless,
streaks are sessions. Only the ``*_net_krw`` flow columns enter KRW figures: where a day has
shares but no KRW (``*_net_shares`` known, ``*_net_krw`` NaN) its KRW figure is *unknown* and
a note says so; shares are never converted or substituted (the unit bug in freelife1191's CSV
path, which fed share counts into KRW thresholds).

**Missing flows.** NaN is unknown. A window is the last N bars of the candles (the scan day
included); a window with a missing flow or traded-value day is listed in
:attr:`SupplyDemand.incomplete_windows`, and its figures are NaN unless
:attr:`SupplyParams.max_missing_days` allows gaps, in which case they are taken over the days
that are known (net and traded value over the same days, so the ratio stays size-neutral). A
missing day breaks a streak. The score needs all four ratios; otherwise it is ``None``, the
label is ``"unknown"`` and ``known`` is False.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quant.errors import ValidationError
from quant.indicators._arrays import FloatArray
from quant.scans.inputs import ScanInputs

__all__ = [
    "SUPPLY_LABELS",
    "SupplyDemand",
    "SupplyParams",
    "supply_demand",
    "supply_label",
    "supply_score",
]

#: Score floors and their labels, highest first; below the last floor: "strong distribution".
SUPPLY_LABELS: tuple[tuple[float, str], ...] = (
    (80.0, "strong accumulation"),
    (60.0, "accumulation"),
    (40.0, "neutral"),
    (20.0, "distribution"),
)

_INVESTORS: tuple[tuple[str, str], ...] = (
    ("foreign", "foreigners"),
    ("institution", "institutions"),
)


@dataclass(frozen=True)
class SupplyParams:
    """Windows and the score mapping (defaults as documented in the module and in §2).

    Attributes:
        short_window: sessions of the short window (the ``*_5d*`` fields), default 5.
        long_window: sessions of the long window (the ``*_20d*`` fields), default 20.
        max_missing_days: unknown days a window may hold and still give figures (taken over
            the known days); default 0: any missing day makes the window's figures NaN.
        flow_full_scale: the size-neutral ratio that saturates a flow term (±0.10: net buying
            or selling worth 10% of the window's traded value scores the term's full weight).
        streak_full_scale: consecutive net-buying (selling) sessions that saturate a streak
            term (default 5).
        weight_flow_short: score weight of each investor's short-window ratio (0.20).
        weight_flow_long: score weight of each investor's long-window ratio (0.15).
        weight_streak: score weight of each investor's streak (0.15). The six weights
            (2 investors × 3 terms) must sum to 1.

    Raises:
        quant.errors.ValidationError: a window below 1, ``long_window < short_window``, a
            negative ``max_missing_days`` or one not below the short window, a non-positive
            scale, a negative weight, or weights not summing to 1.
    """

    short_window: int = 5
    long_window: int = 20
    max_missing_days: int = 0
    flow_full_scale: float = 0.10
    streak_full_scale: int = 5
    weight_flow_short: float = 0.20
    weight_flow_long: float = 0.15
    weight_streak: float = 0.15

    def __post_init__(self) -> None:
        if self.short_window < 1 or self.long_window < self.short_window:
            raise ValidationError(
                f"windows must satisfy 1 ≤ short_window ≤ long_window, got "
                f"{self.short_window}, {self.long_window}",
                field="short_window",
                value=self.short_window,
            )
        if not 0 <= self.max_missing_days < self.short_window:
            raise ValidationError(
                f"max_missing_days must be in [0, short_window), got {self.max_missing_days}",
                field="max_missing_days",
                value=self.max_missing_days,
            )
        if not self.flow_full_scale > 0 or self.streak_full_scale < 1:
            raise ValidationError(
                "flow_full_scale must be > 0 and streak_full_scale ≥ 1, got "
                f"{self.flow_full_scale}, {self.streak_full_scale}",
                field="flow_full_scale",
                value=self.flow_full_scale,
            )
        weights = (self.weight_flow_short, self.weight_flow_long, self.weight_streak)
        if min(weights) < 0 or abs(2 * sum(weights) - 1.0) > 1e-9:
            raise ValidationError(
                f"score weights must be ≥ 0 and 2 × their sum must be 1, got {weights}",
                field="weight_flow_short",
                value=weights,
            )


@dataclass(frozen=True)
class SupplyDemand:
    """Foreign and institutional net buying for one instrument on its scan day.

    KRW figures are NaN when unknown (see the module docstring); ``*_flow_*`` are the
    size-neutral ratios (net KRW / traded KRW, dimensionless, NaN when unknown or when
    nothing traded). ``*_buy_days`` / ``*_sell_days``: consecutive sessions ending on the scan
    day with net buying > 0 (selling < 0) in KRW; at most one of the pair is non-zero.
    ``score``: 0–100 (:func:`supply_score`), ``None`` unless every ratio is known; ``label``:
    :func:`supply_label` of the score, ``"unknown"`` without one. ``known``: the score could
    be computed. ``incomplete_windows``: windows with a missing day, named like
    ``"foreign_5d"``, ``"traded_value_20d"``. ``notes``: human-readable sentences about
    missing or shares-only data.
    """

    instrument: str
    date: str | None
    foreign_5d_krw: float
    institution_5d_krw: float
    foreign_20d_krw: float
    institution_20d_krw: float
    traded_value_5d_krw: float
    traded_value_20d_krw: float
    foreign_flow_5: float
    institution_flow_5: float
    foreign_flow_20: float
    institution_flow_20: float
    foreign_buy_days: int
    institution_buy_days: int
    foreign_sell_days: int
    institution_sell_days: int
    score: float | None
    label: str
    known: bool
    incomplete_windows: tuple[str, ...]
    notes: tuple[str, ...]


def supply_score(
    flows: tuple[float, float, float, float],
    streaks: tuple[int, int],
    params: SupplyParams | None = None,
) -> float:
    """The 0–100 supply score: a weighted sum of clipped linear terms.

    ``flows`` = (foreign short, institution short, foreign long, institution long) ratios;
    ``streaks`` = (foreign, institution) signed streaks: +k for k consecutive net-buying
    sessions, −k for k net-selling sessions. Each term is clipped to [−1, 1] —
    ``clip(flow / flow_full_scale)`` and ``clip(streak / streak_full_scale)`` — and mapped to
    [0, 1] by ``(x + 1) / 2``; the score is ``100 × Σ weight × term``. With the defaults:
    every ratio ≤ −0.10 and 5+ selling days each → 0; no net flow and no streak → 50; every
    ratio ≥ +0.10 and 5+ buying days each → 100; each ratio moves the score by
    ``weight × 50 / 0.10`` points per unit inside the band (short: 100 per 1.0 of ratio, i.e.
    1 point per 0.01) and each streak day by 0.15 × 50 / 5 = 1.5 points.

    Raises:
        quant.errors.ValidationError: a NaN ratio (the score needs every ratio).
    """
    p = params or SupplyParams()
    if any(np.isnan(f) for f in flows):
        raise ValidationError(f"supply_score needs every ratio, got {flows}", field="flows")
    weights = (p.weight_flow_short, p.weight_flow_short, p.weight_flow_long, p.weight_flow_long)
    total = 0.0
    for weight, flow in zip(weights, flows, strict=True):
        total += weight * (_clip(flow / p.flow_full_scale) + 1.0) / 2.0
    for streak in streaks:
        total += p.weight_streak * (_clip(streak / p.streak_full_scale) + 1.0) / 2.0
    return round(100.0 * total, 9)


def supply_label(score: float | None) -> str:
    """The label of a score (:data:`SUPPLY_LABELS`); ``"unknown"`` for ``None``."""
    if score is None:
        return "unknown"
    for floor, label in SUPPLY_LABELS:
        if score >= floor:
            return label
    return "strong distribution"


def supply_demand(inputs: ScanInputs, params: SupplyParams | None = None) -> SupplyDemand:
    """Foreign/institutional net buying, its size-neutral ratios, streaks and score.

    Reads ``inputs.flow("foreign_net_krw")``, ``inputs.flow("institution_net_krw")`` (KRW),
    the matching ``*_net_shares`` columns only to tell shares-only days apart in the notes,
    and ``inputs.candles.traded_value`` (KRW). Never raises for missing or short data: the
    figures are NaN, ``known`` is False and ``notes`` says why.

    Raises:
        quant.errors.ValidationError: invalid ``params`` (raised when they are built).
    """
    p = params or SupplyParams()
    n = len(inputs)
    date = str(inputs.candles.time[-1]) if n else None
    traded = inputs.candles.traded_value
    notes: list[str] = []
    incomplete: list[str] = []
    sums: dict[str, float] = {}
    ratios: dict[str, float] = {}
    streaks: dict[str, tuple[int, int]] = {}
    tv_short = _window_sum(traded, n, p.short_window, p.max_missing_days)
    tv_long = _window_sum(traded, n, p.long_window, p.max_missing_days)
    for label, window, tv in (("5d", p.short_window, tv_short), ("20d", p.long_window, tv_long)):
        if n < window:
            notes.append(f"Only {n} sessions of history: the {window}-session window is unknown.")
        elif tv[1]:
            incomplete.append(f"traded_value_{label}")
            notes.append(f"Traded value is missing on {tv[1]} of the last {window} sessions.")
    for investor, plural in _INVESTORS:
        krw = inputs.flow(f"{investor}_net_krw")
        shares = inputs.flow(f"{investor}_net_shares")
        for label, window in (("5d", p.short_window), ("20d", p.long_window)):
            net, missing = _window_sum(krw, n, window, p.max_missing_days)
            sums[f"{investor}_{label}"] = net
            ratios[f"{investor}_{label}"] = _ratio(krw, traded, n, window, p.max_missing_days)
            if missing and n >= window:
                incomplete.append(f"{investor}_{label}")
        if n:
            window = min(n, p.long_window)
            tail_krw = krw[n - window :]
            shares_only = int(
                np.count_nonzero(np.isnan(tail_krw) & ~np.isnan(shares[n - window :]))
            )
            unknown = int(np.count_nonzero(np.isnan(tail_krw))) - shares_only
            if shares_only:
                notes.append(
                    f"{plural.capitalize()}: {shares_only} of the last {window} sessions have "
                    "net buying in shares only; KRW figures for those sessions are unknown "
                    "(shares are not converted to KRW)."
                )
            if unknown:
                notes.append(
                    f"{plural.capitalize()}: net buying is unknown on {unknown} of the last "
                    f"{window} sessions."
                )
        streaks[investor] = _streaks(krw)
        if n and np.isnan(krw[-1]):
            notes.append(
                f"{plural.capitalize()}: the scan day's net buying in KRW is unknown, so there "
                "is no streak."
            )
    flows = (
        ratios["foreign_5d"],
        ratios["institution_5d"],
        ratios["foreign_20d"],
        ratios["institution_20d"],
    )
    signed = tuple(buy - sell for buy, sell in (streaks["foreign"], streaks["institution"]))
    known = not any(np.isnan(f) for f in flows)
    score = supply_score(flows, (signed[0], signed[1]), p) if known else None
    if not known:
        notes.append("The supply score needs every 5- and 20-session ratio; it is unknown.")
    return SupplyDemand(
        instrument=inputs.instrument,
        date=date,
        foreign_5d_krw=sums["foreign_5d"],
        institution_5d_krw=sums["institution_5d"],
        foreign_20d_krw=sums["foreign_20d"],
        institution_20d_krw=sums["institution_20d"],
        traded_value_5d_krw=tv_short[0],
        traded_value_20d_krw=tv_long[0],
        foreign_flow_5=flows[0],
        institution_flow_5=flows[1],
        foreign_flow_20=flows[2],
        institution_flow_20=flows[3],
        foreign_buy_days=streaks["foreign"][0],
        institution_buy_days=streaks["institution"][0],
        foreign_sell_days=streaks["foreign"][1],
        institution_sell_days=streaks["institution"][1],
        score=score,
        label=supply_label(score),
        known=known,
        incomplete_windows=tuple(incomplete),
        notes=tuple(notes),
    )


def _clip(x: float) -> float:
    return -1.0 if x < -1.0 else 1.0 if x > 1.0 else x


def _window_sum(values: FloatArray, n: int, window: int, max_missing: int) -> tuple[float, int]:
    """(sum over the known days of the last ``window`` bars, missing days); the sum is NaN
    when the history is shorter than the window or more than ``max_missing`` days are
    unknown."""
    if n < window:
        return float("nan"), window - n
    tail = values[n - window :]
    known = ~np.isnan(tail)
    missing = window - int(np.count_nonzero(known))
    if missing > max_missing:
        return float("nan"), missing
    return float(tail[known].sum()), missing


def _ratio(net: FloatArray, traded: FloatArray, n: int, window: int, max_missing: int) -> float:
    """Σ net / Σ traded value over the last ``window`` bars, both over the days where both
    are known; NaN when too many days are unknown or nothing traded."""
    if n < window:
        return float("nan")
    a = net[n - window :]
    b = traded[n - window :]
    known = ~(np.isnan(a) | np.isnan(b))
    if window - int(np.count_nonzero(known)) > max_missing:
        return float("nan")
    denominator = float(b[known].sum())
    if denominator <= 0.0:
        return float("nan")
    return float(a[known].sum()) / denominator


def _streaks(net: FloatArray) -> tuple[int, int]:
    """(consecutive sessions with net > 0, with net < 0) ending on the last bar; a NaN day
    ends both."""
    n = len(net)
    if n == 0 or np.isnan(net[-1]) or net[-1] == 0.0:
        return 0, 0
    buying = bool(net[-1] > 0.0)
    same = net > 0.0 if buying else net < 0.0  # NaN compares False: a missing day breaks
    breaks = np.flatnonzero(~same)
    run = n if len(breaks) == 0 else n - 1 - int(breaks[-1])
    return (run, 0) if buying else (0, run)
