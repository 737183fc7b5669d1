"""Indicators TA-Lib lacks: 52-week high/low, relative strength (RS) and the volume profile.

Vectorized NumPy, with numba only for the volume profile, whose value-area expansion is an
inherently sequential loop (domain notes §1 for RS, §4 for the volume profile).

Every per-bar function follows the missing-bar policy of :mod:`quant.indicators._arrays`: a bar
with a NaN in any of its inputs is absent (it enters no window, its own output is NaN), windows
and lags are counted in present bars, warm-up outputs are NaN, and a series shorter than the
warm-up gives all-NaN outputs rather than an error. Outputs are float64 arrays of the input
length. Prices are in the instrument's currency (KRW for Korean stocks and KRW markets);
volumes are in shares or coins, or in traded value (KRW) where the caller chooses so.

Raises (every function): :class:`quant.errors.ValidationError` for a bad input (not 1-D, not
numeric, an infinity, lengths that differ) or a parameter out of range; the message names it
(and, for a bad bar, its index).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numba
import numpy as np
import numpy.typing as npt

from quant.errors import ValidationError
from quant.indicators._arrays import (
    FloatArray,
    as_inputs,
    as_series,
    check_float,
    check_int,
    on_present,
    present,
)

#: Longest window or lag any function here accepts (bars).
MAX_WINDOW = 5_000
#: Most bins a volume profile may have.
MAX_BINS = 1_000

_F = TypeVar("_F", bound=Callable[..., Any])


def _jit(func: _F) -> _F:
    """``numba.njit(cache=True, nogil=True)`` keeping ``func``'s signature for the type checker.

    Compiled code is cached on disk (``__pycache__``) and releases the GIL, so threads of one
    worker process can run kernels side by side.
    """
    return cast(_F, numba.njit(cache=True, nogil=True)(func))


# --------------------------------------------------------------------------------------------
# Rolling highest high / lowest low
# --------------------------------------------------------------------------------------------


def _running_max(x: FloatArray, window: int) -> FloatArray:
    """Max of ``x[max(0, t−window+1) … t]`` for every t, in O(n) (van Herk / Gil-Werman).

    ``x`` must be NaN-free. The series is front-padded with −inf so that every window is
    complete, cut into blocks of ``window``; a window spans at most two blocks, so its max is
    max(suffix max of the first block from its start, prefix max of the second up to its end).
    """
    n = len(x)
    if n == 0:
        return np.empty(0, dtype=np.float64)
    length = n + window - 1
    blocks = -(-length // window)
    padded = np.full(blocks * window, -np.inf)
    padded[window - 1 : length] = x
    grid = padded.reshape(blocks, window)
    prefix = np.maximum.accumulate(grid, axis=1).ravel()
    suffix = np.maximum.accumulate(grid[:, ::-1], axis=1)[:, ::-1].ravel()
    starts = np.arange(n)
    return np.maximum(suffix[starts], prefix[starts + window - 1])


def _high_low(
    high: FloatArray, low: FloatArray, *, window: int, min_periods: int
) -> tuple[FloatArray, FloatArray]:
    highest = _running_max(high, window)
    lowest = -_running_max(-low, window)
    # The bars here are all present, so bar t's window holds min(t + 1, window) of them.
    short = np.arange(len(high)) + 1 < min_periods
    highest[short] = np.nan
    lowest[short] = np.nan
    return highest, lowest


def rolling_high_low(
    high: object, low: object, *, window: int = 252, min_periods: int | None = None
) -> tuple[FloatArray, FloatArray]:
    """Rolling highest high and lowest low over the last ``window`` present bars, the current
    bar included (252 daily bars = 52 weeks), in price units.

    ``min_periods`` (default ``window``) is how many present bars the window must hold before a
    value is given; a smaller value lets a new listing have a "52-week" high from its first
    bars. A bar missing in ``high`` or ``low`` is skipped and gives NaN in both outputs.

    Returns:
        ``(highest, lowest)``, float64 arrays of the input length; NaN before ``min_periods``
        present bars.

    Raises:
        quant.errors.ValidationError: a bad input; ``window`` not an integer in [1, 5000];
            ``min_periods`` not an integer in [1, window].
    """
    h, lo = as_inputs(high=high, low=low)
    n = check_int(window, "window", minimum=1, maximum=MAX_WINDOW)
    need = n if min_periods is None else check_int(min_periods, "min_periods", minimum=1, maximum=n)
    highest, lowest = on_present(_high_low, [h, lo], window=n, min_periods=need)
    return highest, lowest


# --------------------------------------------------------------------------------------------
# Relative strength
# --------------------------------------------------------------------------------------------


def _check_weights(
    periods: Sequence[object], weights: Sequence[object]
) -> tuple[list[int], list[float]]:
    if isinstance(periods, str | bytes) or not isinstance(periods, Sequence):
        raise ValidationError(
            f"periods must be a sequence of integers, got {periods!r}",
            field="periods",
            value=periods,
        )
    if isinstance(weights, str | bytes) or not isinstance(weights, Sequence):
        raise ValidationError(
            f"weights must be a sequence of numbers, got {weights!r}",
            field="weights",
            value=weights,
        )
    if len(periods) == 0:
        raise ValidationError("periods must not be empty", field="periods", value=periods)
    if len(periods) != len(weights):
        raise ValidationError(
            f"periods and weights must have the same length, got {len(periods)} periods "
            f"{tuple(periods)!r} and {len(weights)} weights {tuple(weights)!r}",
            field="weights",
            value=weights,
        )
    lags = [
        check_int(p, f"periods[{k}]", minimum=1, maximum=MAX_WINDOW) for k, p in enumerate(periods)
    ]
    factors: list[float] = []
    for k, w in enumerate(weights):
        finite = not isinstance(w, bool) and isinstance(w, int | float | np.integer | np.floating)
        if not (finite and math.isfinite(float(cast(float, w)))):
            raise ValidationError(
                f"weights[{k}] must be a finite number, got {w!r}", field=f"weights[{k}]", value=w
            )
        factors.append(float(cast(float, w)))
    return lags, factors


def _rs_raw(close: FloatArray, *, lags: list[int], factors: list[float]) -> tuple[FloatArray]:
    count = len(close)
    out = np.zeros(count)
    for lag, factor in zip(lags, factors, strict=True):
        ratio = np.full(count, np.nan)
        if count > lag:
            ratio[lag:] = close[lag:] / close[:-lag] - 1.0
        out += factor * ratio
    return (out,)


def rs_raw(
    close: object,
    *,
    periods: tuple[int, ...] = (63, 126, 189, 252),
    weights: tuple[float, ...] = (0.4, 0.2, 0.2, 0.2),
) -> FloatArray:
    """Raw relative-strength score (IBD-style weighting, domain notes §1), a fraction:
    ``RSraw[t] = Σ_k weights[k] · (C[t] / C[t − periods[k]] − 1)``, the lags counted in
    present bars (0.25 means a weighted 25 % gain).

    NaN at the first ``max(periods)`` present bars (fewer bars than that: all NaN) and at
    missing bars. Feed one day's values across the universe to :func:`rs_rating`.

    Raises:
        quant.errors.ValidationError: a bad input; a present close that is not > 0 (the message
            names its index); ``periods`` empty, holding a non-integer or a value outside
            [1, 5000]; a weight that is not a finite number; ``periods`` and ``weights`` of
            different lengths.
    """
    c = as_series(close, "close")
    lags, factors = _check_weights(periods, weights)
    bad = np.flatnonzero(c <= 0)  # NaN compares False: missing bars pass
    if len(bad):
        at = int(bad[0])
        raise ValidationError(
            f"close[{at}] is {c[at]}: closes must be > 0",
            field=f"close[{at}]",
            value=float(c[at]),
        )
    return on_present(_rs_raw, [c], lags=lags, factors=factors)[0]


def rs_rating(raw: object) -> FloatArray:
    """Cross-sectional RS rating, 1–99, of one value per instrument (a universe on one day).

    Definition: among the ``n`` finite values, let ``r`` be each value's average rank (1 … n,
    ascending; tied values share the mean of their ranks), ``p = (r − 1) / (n − 1)`` and
    ``rating = floor(1 + 98·p + 0.5)`` (98·p rounded half up, plus 1). The lowest value rates
    1, the highest 99. ``n == 1`` rates 50; NaN inputs rate NaN (``n == 0``: all NaN). The
    rating is computed in exact integer arithmetic, so half-way cases always round up.

    Returns:
        float64 array of the input length holding integers 1–99 or NaN.

    Raises:
        quant.errors.ValidationError: ``raw`` not 1-D, not numeric, or holding an infinity.
    """
    x = as_series(raw, "raw")
    out = np.full(len(x), np.nan)
    finite = ~np.isnan(x)
    values = x[finite]
    n = len(values)
    if n == 0:
        return out
    if n == 1:
        out[finite] = 50.0
        return out
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    # A group of equal values occupying ranks s+1 … s+c has average rank s + (c + 1)/2, so
    # twice the rank is the integer 2s + c + 1.
    starts = np.cumsum(counts) - counts
    twice_rank = (2 * starts + counts + 1)[inverse.ravel()]
    # floor(1 + 98(r − 1)/(n − 1) + 1/2) = floor((3(n − 1) + 98(2r − 2)) / (2(n − 1)))
    ratings = (3 * (n - 1) + 98 * (twice_rank - 2)) // (2 * (n - 1))
    out[finite] = ratings.astype(np.float64)
    return out


# --------------------------------------------------------------------------------------------
# Volume profile
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class VolumeProfile:
    """A volume profile over ``B`` equal-width price bins (see :func:`volume_profile`).

    Immutable: the arrays are read-only, and equality is identity (compare the fields).

    Attributes:
        edges: the B + 1 bin edges, ascending, in price units (bin i is
            ``[edges[i], edges[i+1])``, the last one closed); all NaN when no bar is present.
        volumes: the volume in each of the B bins (the input's unit).
        poc: point of control, the midpoint price of the POC bin; NaN for an empty profile.
        poc_index: index of the POC bin; −1 for an empty profile.
        vah: value-area high, the upper edge of the highest value-area bin; NaN if empty.
        val: value-area low, the lower edge of the lowest value-area bin; NaN if empty.
        hvn: indices of the high-volume-node bins, ascending; empty for an empty profile.
    """

    edges: FloatArray
    volumes: FloatArray
    poc: float
    poc_index: int
    vah: float
    val: float
    hvn: tuple[int, ...]

    def __post_init__(self) -> None:
        self.edges.flags.writeable = False
        self.volumes.flags.writeable = False

    @property
    def total(self) -> float:
        """Total volume of the profile."""
        return float(self.volumes.sum())

    @property
    def empty(self) -> bool:
        """True when there is no volume (no present bar, or only zero-volume bars)."""
        return self.poc_index < 0


@_jit
def _profile_into(
    high: FloatArray,
    low: FloatArray,
    volume: FloatArray,
    start: int,
    stop: int,
    bins: int,
    value_area: float,
    volumes: FloatArray,
    edges: FloatArray,
) -> tuple[int, float, float, float]:
    """Profile of the bars ``start … stop − 1`` (NaN-free, at least one), written into
    ``volumes`` (``bins``) and ``edges`` (``bins + 1``); returns (poc_index, poc, vah, val),
    (−1, NaN, NaN, NaN) when the total volume is 0."""
    lowest = low[start]
    highest = high[start]
    for j in range(start + 1, stop):
        lowest = min(lowest, low[j])
        highest = max(highest, high[j])
    width = (highest - lowest) / bins
    flat = not width > 0.0
    for b in range(bins):
        volumes[b] = 0.0
        edges[b] = lowest if flat else lowest + b * width
    edges[bins] = highest
    last = bins - 1
    for j in range(start, stop):
        if flat:
            first_bin = 0
            last_bin = 0
        else:
            first_bin = min(math.floor((low[j] - lowest) / width), last)
            last_bin = min(math.floor((high[j] - lowest) / width), last)
        share = volume[j] / (last_bin - first_bin + 1)
        for b in range(first_bin, last_bin + 1):
            volumes[b] += share
    total = 0.0
    for b in range(bins):
        total += volumes[b]
    if not total > 0.0:
        return -1, math.nan, math.nan, math.nan
    # POC: the most volume; ties go to the bin nearest the range midpoint (|2b + 1 − B| is
    # twice that distance in bin widths), then to the lower bin.
    poc = 0
    for b in range(1, bins):
        if volumes[b] > volumes[poc] or (
            volumes[b] == volumes[poc] and abs(2 * b + 1 - bins) < abs(2 * poc + 1 - bins)
        ):
            poc = b
    # Value area, CBOT method: grow from the POC by the heavier of the next two bins above and
    # the next two below (the pair above on a tie) until it holds value_area of the volume.
    target = value_area * total
    top = poc
    bottom = poc
    inside = volumes[poc]
    while inside < target:
        above = min(2, last - top)
        below = min(2, bottom)
        if above == 0 and below == 0:
            break
        up = 0.0
        for b in range(top + 1, top + above + 1):
            up += volumes[b]
        down = 0.0
        for b in range(bottom - below, bottom):
            down += volumes[b]
        if above > 0 and (below == 0 or up >= down):
            inside += up
            top += above
        else:
            inside += down
            bottom -= below
    midpoint = lowest if flat else (edges[poc] + edges[poc + 1]) / 2.0
    return poc, midpoint, edges[top + 1], edges[bottom]


@_jit
def _rolling_profile(
    high: FloatArray,
    low: FloatArray,
    volume: FloatArray,
    window: int,
    bins: int,
    value_area: float,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """POC, VAH and VAL at every t of the profile of the bars ``t − window … t − 1``."""
    n = len(high)
    poc = np.full(n, np.nan)
    vah = np.full(n, np.nan)
    val = np.full(n, np.nan)
    volumes = np.empty(bins)
    edges = np.empty(bins + 1)
    for t in range(window, n):
        index, point, upper, lower = _profile_into(
            high, low, volume, t - window, t, bins, value_area, volumes, edges
        )
        if index >= 0:
            poc[t] = point
            vah[t] = upper
            val[t] = lower
    return poc, vah, val


@_jit
def _rolling_profile_at(
    high: FloatArray,
    low: FloatArray,
    volume: FloatArray,
    window: int,
    bins: int,
    value_area: float,
    at: npt.NDArray[np.bool_],
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """:func:`_rolling_profile`, computed only where ``at`` is True (NaN elsewhere)."""
    n = len(high)
    poc = np.full(n, np.nan)
    vah = np.full(n, np.nan)
    val = np.full(n, np.nan)
    volumes = np.empty(bins)
    edges = np.empty(bins + 1)
    for t in range(window, n):
        if not at[t]:
            continue
        index, point, upper, lower = _profile_into(
            high, low, volume, t - window, t, bins, value_area, volumes, edges
        )
        if index >= 0:
            poc[t] = point
            vah[t] = upper
            val[t] = lower
    return poc, vah, val


def _check_bars(high: FloatArray, low: FloatArray, volume: FloatArray) -> npt.NDArray[np.bool_]:
    """Mask of present bars, after checking that each has ``low <= high`` and ``volume >= 0``."""
    mask = present(high, low, volume)
    crossed = np.flatnonzero(mask & (high < low))
    if len(crossed):
        at = int(crossed[0])
        raise ValidationError(
            f"high[{at}] is {high[at]}, below low[{at}] = {low[at]}",
            field=f"high[{at}]",
            value=float(high[at]),
        )
    negative = np.flatnonzero(mask & (volume < 0))
    if len(negative):
        at = int(negative[0])
        raise ValidationError(
            f"volume[{at}] is {volume[at]}: volumes must be >= 0",
            field=f"volume[{at}]",
            value=float(volume[at]),
        )
    return mask


def _check_profile_params(bins: object, value_area: object) -> tuple[int, float]:
    count = check_int(bins, "bins", minimum=2, maximum=MAX_BINS)
    share = check_float(value_area, "value_area", minimum=0.0, maximum=1.0, inclusive_minimum=False)
    return count, share


def volume_profile(
    high: object,
    low: object,
    volume: object,
    *,
    bins: int = 24,
    value_area: float = 0.70,
) -> VolumeProfile:
    """Volume profile of ALL the given bars (domain notes §4; the caller slices the bars
    ``t − N … t − 1`` it wants), prices in price units, volumes in the input's unit.

    Rules (B = ``bins``; bars missing in any input are ignored):

    - Range ``[m, M]`` = [min low, max high] of the present bars; bin width ``w = (M − m)/B``;
      edges ``m + i·w`` (i < B) and ``M``; a price p falls in bin
      ``min(floor((p − m)/w), B − 1)`` (this formula is the definition, ties at edges included).
    - Each bar's volume is split equally among the bins from bin(low) to bin(high) inclusive
      (not in proportion to overlap), accumulated in bar order.
    - POC = the bin with the most volume; ties go to the bin whose midpoint is nearest the
      range midpoint (m + M)/2, then to the lower bin. ``poc`` is that bin's midpoint.
    - Value area (CBOT): start with the POC bin; compare the sum of the next two bins above the
      value area with the next two below (fewer at an edge; a side with no bin left is
      unavailable), add the larger pair (the pair above on a tie), and repeat until the value
      area holds ≥ ``value_area`` × total volume. ``vah`` = upper edge of its highest bin,
      ``val`` = lower edge of its lowest bin.
    - HVN = the bins whose volume is ≥ mean + 1 population standard deviation (ddof 0) of the
      bin volumes.
    - A single-price range (M == m): every edge is that price, all volume is in bin 0, and
      POC = VAH = VAL = that price.
    - No present bar, or a total volume of 0: an empty profile, ``poc``/``vah``/``val`` NaN,
      ``poc_index`` −1 and no HVN (edges NaN when no bar is present; volumes all 0).

    Raises:
        quant.errors.ValidationError: a bad input; a present bar with high < low or a negative
            volume (the message names its index); ``bins`` not an integer in [2, 1000];
            ``value_area`` not in (0, 1].
    """
    h, lo, v = as_inputs(high=high, low=low, volume=volume)
    count, share = _check_profile_params(bins, value_area)
    mask = _check_bars(h, lo, v)
    volumes = np.zeros(count)
    edges = np.full(count + 1, np.nan)
    if not mask.any():
        return VolumeProfile(edges, volumes, math.nan, -1, math.nan, math.nan, ())
    if not mask.all():
        h, lo, v = h[mask], lo[mask], v[mask]
    index, poc, vah, val = _profile_into(h, lo, v, 0, len(h), count, share, volumes, edges)
    if index < 0:
        return VolumeProfile(edges, volumes, math.nan, -1, math.nan, math.nan, ())
    hvn = np.flatnonzero(volumes >= volumes.mean() + volumes.std())
    return VolumeProfile(
        edges, volumes, float(poc), int(index), float(vah), float(val), tuple(int(i) for i in hvn)
    )


def _rolling(
    high: FloatArray, low: FloatArray, volume: FloatArray, *, window: int, bins: int, share: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    return _rolling_profile(high, low, volume, window, bins, share)


def rolling_volume_profile(
    high: object,
    low: object,
    volume: object,
    *,
    window: int = 60,
    bins: int = 24,
    value_area: float = 0.70,
    at: object = None,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """POC, VAH and VAL, in price units, of the volume profile of the ``window`` present bars
    before each bar (``t − window … t − 1``: the bar itself is excluded, so nothing looks
    ahead), by exactly the rules and arithmetic of :func:`volume_profile` on that slice.

    NaN until ``window`` present bars precede a bar (all NaN for a shorter series), where the
    window's total volume is 0, and at missing bars (a bar missing in any input is skipped
    and reports NaN itself; the value at a present bar depends only on earlier bars).
    With ``at`` (a boolean mask of the input length), only the bars where it is True are
    computed — the others are NaN — for callers that need the profile on a few bars only.

    Returns:
        ``(poc, vah, val)``, float64 arrays of the input length.

    Raises:
        quant.errors.ValidationError: a bad input; a present bar with high < low or a negative
            volume (the message names its index); ``window`` not an integer in [1, 5000];
            ``bins`` not an integer in [2, 1000]; ``value_area`` not in (0, 1].
    """
    h, lo, v = as_inputs(high=high, low=low, volume=volume)
    span = check_int(window, "window", minimum=1, maximum=MAX_WINDOW)
    count, share = _check_profile_params(bins, value_area)
    mask = _check_bars(h, lo, v)
    if at is None:
        poc, vah, val = on_present(_rolling, [h, lo, v], window=span, bins=count, share=share)
        return poc, vah, val
    sel = np.asarray(at)
    if sel.dtype != np.bool_ or sel.shape != h.shape:
        raise ValidationError(
            f"at must be a boolean mask of {len(h)} bars, got {sel.dtype} {sel.shape}",
            field="at",
        )
    outs = [np.full(len(h), np.nan) for _ in range(3)]
    if mask.any():
        found = _rolling_profile_at(
            h[mask], lo[mask], v[mask], span, count, share, np.ascontiguousarray(sel[mask])
        )
        for out, values in zip(outs, found, strict=True):
            out[mask] = values
    return outs[0], outs[1], outs[2]


def warm_up() -> None:
    """Compile (or load from the on-disk cache) every numba kernel, on a tiny input, so that a
    worker process pays for it at start rather than in its first task."""
    high = np.array([2.0, 3.0, 4.0])
    low = np.array([1.0, 2.0, 3.0])
    volume = np.array([1.0, 2.0, 3.0])
    volume_profile(high, low, volume, bins=2)
    rolling_volume_profile(high, low, volume, window=2, bins=2)
