"""Signal outcomes (the track record, ``docs/domain.md`` §9): where each stored signal went,
followed under its strategy's exit plan on the daily bars (and morning snapshots) after it.

One exit plan per strategy, each versioned (:func:`rules_version`: ``<plan>-v<N>.<digest>``,
the digest covering every threshold and the costs, so changing either marks every stored
outcome stale and it is recomputed). Every threshold is a field of the plan's dataclass; the
defaults are §9's. Time is counted in trading *sessions* of the instrument's market (the
``sessions`` of :class:`Bars`), never calendar days.

**closing_bet** (``closing_bet-v1``, preliminary and final phases alike): entry at the
decision price (the signal's ``entry_price``: the 15:10 snapshot price for ``preliminary``,
the close for ``final``) on the signal's session. Next session, with ``o``/``h``/``l`` the
session's open/high/low — or, when a morning snapshot at or before ``time_exit`` (10:00) of
that session is known, the day so far at that snapshot — and ``e`` the entry price:

1. ``o ≥ e·(1 + gap_up)`` (+3 %): ``gap_up`` — sold at the open;
2. ``o ≤ e·(1 − gap_down)`` (−2 %): ``gap_down`` — sold at the open;
3. ``l ≤ e·(1 − stop_loss)`` (−3 %): ``stop_loss`` at the stop (at the open if it opened
   below it) — checked before the target: when one daily bar touches both, the stop counts;
4. ``h ≥ e·(1 + take_profit)`` (+5 %): ``take_profit`` at the target;
5. else ``time_exit`` at the snapshot's last price (the 10:00 time stop), or, without a
   morning snapshot, ``session_close`` at the session's close.

**vcp** (``vcp-v1``): the breakout must be confirmed — a close above the pivot on volume
≥ ``breakout_volume`` (1.5) × the mean of the last ``volume_window`` (50) traded bars, today
included (the scan's rule). A signal stored as a confirmed breakout (``status`` ``breakout``
or ``inputs.breakout``) enters at its session's close; otherwise it is *pending* and enters at
the close of the first later session that confirms. It *expires* (``no_breakout``) after
``confirm_within`` (20) sessions without one, (``below_stop``) when a close falls below the
stop first, or (``extended``) when the confirming close is more than ``max_chase`` (5 %) above
the pivot (the scan's "do not chase"). Once open — the numbers of the backtest's
``vcp_breakout``: stop = the plan's stop (``inputs.stop``, the last contraction's low × 0.99),
at most ``max_stop`` (8 %) below the entry; ``stop_loss`` when a low reaches it (at the open
when the session opens below it: a gap through the stop fills worse than the stop);
``trend_exit`` at the next session's open after a close below the ``exit_sma`` (50)-bar SMA;
``max_hold`` at the close of the ``max_hold``-th (60) session held. The strategy defines no
take-profit or trailing stop, so none is applied.

**generic** (``generic-v1``, every other strategy, e.g. imported ``legacy`` signals): entry at
the signal's ``entry_price`` (its session's close when it has none) on its session;
``stop_loss`` at −``stop_loss`` (7 %, the earlier system's number, but intraday and filled at
the open on a gap); ``max_hold`` at the close of the ``max_hold``-th (5) session after the
entry session.

**States**: ``pending`` (not entered), ``open``, ``closed`` (``reason`` names the rule),
``expired`` (never triggered; ``reason``) and ``void`` (``reason`` ``halted``: a session
without a traded bar — no bar, or volume 0 — while open, so no exit price is known; a missing
bar on the newest session read is not judged until a later session is read (it may not be
collected yet); ``delisted``: the instrument's listing ended before an exit;
``no_entry_price``; ``no_session``: the market has no bar on the signal's day; ``no_costs``:
the exit is known but the tax table has no rate for the market and exit date, so no net
return is given), with ``note``
saying why in words. A signal whose session has not been read yet is ``pending``. Returns are
fractions of the entry price: ``gross`` = exit / entry − 1, ``net`` after
:class:`quant.costs.Costs` (slippage and commission on both sides, the sell tax of the market
and exit date), ``costs`` = gross − net. ``mfe``/``mae`` are the best and worst price reached
from the session after the entry through the exit (the exit session's range up to the exit
rule; an exit at the open sees only the open), relative to the entry and bounded by 0 (the
entry price itself counts). ``sessions_held`` counts sessions from the entry session (1)
through the exit session (or the last session read while open).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from quant.costs import Costs
from quant.errors import ValidationError

FloatArray = npt.NDArray[np.float64]

#: Outcome states.
PENDING, OPEN, CLOSED, EXPIRED, VOID = "pending", "open", "closed", "expired", "void"
STATES: tuple[str, ...] = (PENDING, OPEN, CLOSED, EXPIRED, VOID)
#: States that never change again (only a rules or costs change recomputes them).
FINISHED: frozenset[str] = frozenset({CLOSED, EXPIRED, VOID})
#: Listing states after which no bar will come.
ENDED_LISTINGS: frozenset[str] = frozenset({"delisted"})


def _check_fraction(name: str, value: float, upper: float = 1.0) -> None:
    if isinstance(value, bool) or not (isinstance(value, int | float) and 0 < value < upper):
        raise ValidationError(
            f"{name} must be a fraction in (0, {upper}), got {value!r}", field=name, value=value
        )


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(
            f"{name} must be an integer >= 1, got {value!r}", field=name, value=value
        )


@dataclass(frozen=True)
class ClosingBetRules:
    """The closing bet's next-session exit (fractions of the entry price; ``time_exit``
    ``HH:MM`` in the market's time zone). Raises ValidationError on a bad threshold."""

    gap_up: float = 0.03
    gap_down: float = 0.02
    take_profit: float = 0.05
    stop_loss: float = 0.03
    time_exit: str = "10:00"

    name = "closing_bet"
    version = 1

    def __post_init__(self) -> None:
        for key in ("gap_up", "gap_down", "take_profit", "stop_loss"):
            _check_fraction(key, getattr(self, key))
        try:
            dt.time.fromisoformat(self.time_exit)
        except (TypeError, ValueError):
            raise ValidationError(
                f"time_exit must be HH:MM, got {self.time_exit!r}",
                field="time_exit",
                value=self.time_exit,
            ) from None

    @property
    def time_exit_at(self) -> dt.time:
        return dt.time.fromisoformat(self.time_exit)


@dataclass(frozen=True)
class VcpRules:
    """The VCP breakout plan (see the module docstring). Raises ValidationError on a bad
    threshold."""

    breakout_volume: float = 1.5
    volume_window: int = 50
    max_chase: float = 0.05
    confirm_within: int = 20
    max_stop: float = 0.08
    exit_sma: int = 50
    max_hold: int = 60

    name = "vcp"
    version = 1

    def __post_init__(self) -> None:
        if isinstance(self.breakout_volume, bool) or not self.breakout_volume > 0:
            raise ValidationError(
                f"breakout_volume must be > 0, got {self.breakout_volume!r}",
                field="breakout_volume",
                value=self.breakout_volume,
            )
        _check_fraction("max_chase", self.max_chase)
        _check_fraction("max_stop", self.max_stop)
        for key in ("volume_window", "confirm_within", "exit_sma", "max_hold"):
            _check_count(key, getattr(self, key))


@dataclass(frozen=True)
class GenericRules:
    """The plan of any other strategy: a fixed stop and a time exit. Raises ValidationError
    on a bad threshold."""

    stop_loss: float = 0.07
    max_hold: int = 5

    name = "generic"
    version = 1

    def __post_init__(self) -> None:
        _check_fraction("stop_loss", self.stop_loss)
        _check_count("max_hold", self.max_hold)


Plan = ClosingBetRules | VcpRules | GenericRules


@dataclass(frozen=True)
class Rules:
    """The exit plans by strategy and the costs every return pays."""

    closing_bet: ClosingBetRules = field(default_factory=ClosingBetRules)
    vcp: VcpRules = field(default_factory=VcpRules)
    generic: GenericRules = field(default_factory=GenericRules)
    costs: Costs = field(default_factory=Costs)

    def plan(self, strategy: str) -> Plan:
        """The plan that follows ``strategy``'s signals (``generic`` for unknown ones)."""
        if strategy == "closing_bet":
            return self.closing_bet
        if strategy == "vcp":
            return self.vcp
        return self.generic

    def plan_names(self) -> tuple[str, ...]:
        """The names of the exit plans these rules hold (every other strategy follows
        ``generic``)."""
        return (self.closing_bet.name, self.vcp.name, self.generic.name)

    def version(self, strategy: str) -> str:
        """The rules version stored with an outcome of ``strategy`` (:func:`rules_version`)."""
        return rules_version(self.plan(strategy), self.costs)


@functools.lru_cache(maxsize=64)
def rules_version(plan: Plan, costs: Costs) -> str:
    """``<plan>-v<N>.<digest>``: the plan's name and version and 8 hex digits over every
    threshold of the plan and the costs (commission, slippage, each dated tax rate), so a
    changed threshold or tax table gives another string (at most 32 characters)."""
    data = {
        "plan": dataclasses.asdict(plan),
        "commission": costs.commission,
        "slippage": costs.slippage,
        "tax": [(r.market, r.start.isoformat(), r.rate) for r in costs.tax.rates],
        "untaxed": sorted(costs.tax.untaxed),
    }
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:8]
    return f"{plan.name}-v{plan.version}.{digest}"


DEFAULT_RULES = Rules()


@dataclass(frozen=True)
class SignalView:
    """What the rules read of a stored signal: its id, strategy, phase, session
    (``trade_date``), decision price (``entry_price``, the instrument's currency), ``status``
    and ``inputs`` (VCP: ``pivot``, ``stop``, ``breakout``), its instrument's ``market`` (for the
    tax) and ``listing_status``."""

    signal_id: int
    strategy: str
    trade_date: dt.date
    entry_price: float | None
    market: str
    phase: str = "final"
    status: str | None = None
    inputs: Mapping[str, Any] | None = None
    listing_status: str = "listed"


@dataclass(frozen=True)
class Morning:
    """The day so far of a session at its time-exit snapshot (at or before 10:00): open,
    high, low and the last price."""

    open: float
    high: float
    low: float
    last: float


@dataclass(frozen=True, eq=False)
class Bars:
    """One instrument's daily bars on its market's ``sessions`` (``datetime64[D]``,
    ascending): ``open``/``high``/``low``/``close``/``volume`` aligned with them, NaN where the
    instrument has no bar that session. A bar is *traded* when its close is present and its
    volume is not 0 (a halted day is a flat bar with volume 0).

    Raises:
        quant.errors.ValidationError: arrays of different lengths or sessions not ascending.
    """

    sessions: npt.NDArray[np.datetime64]
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    _cache: dict[tuple[str, int], npt.NDArray[Any]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        n = len(self.sessions)
        for name in ("open", "high", "low", "close", "volume"):
            if len(getattr(self, name)) != n:
                raise ValidationError(
                    f"bars.{name} has {len(getattr(self, name))} values for {n} sessions",
                    field=name,
                )
        if n > 1 and not bool(np.all(np.diff(self.sessions.astype(np.int64)) > 0)):
            raise ValidationError("bars.sessions must be strictly ascending", field="sessions")

    @classmethod
    def from_rows(
        cls,
        sessions: list[dt.date],
        rows: Mapping[dt.date, tuple[float, float, float, float, float]],
    ) -> Bars:
        """Bars from ``{date: (open, high, low, close, volume)}`` on ``sessions`` (a session
        without a row has no bar)."""
        data = np.full((5, len(sessions)), np.nan)
        for i, day in enumerate(sessions):
            if day in rows:
                data[:, i] = rows[day]
        return cls(np.array(sessions, dtype="datetime64[D]"), *data)

    @property
    def traded(self) -> npt.NDArray[np.bool_]:
        """Per session: the instrument traded (a close, an open and a volume that is not 0)."""
        found = self._cache.get(("traded", 0))
        if found is None:
            with np.errstate(invalid="ignore"):
                found = ~np.isnan(self.close) & ~np.isnan(self.open) & (self.volume != 0)
            self._cache[("traded", 0)] = found
        return found

    def index(self, day: dt.date) -> int:
        """The position of the first session on or after ``day``."""
        return int(np.searchsorted(self.sessions, np.datetime64(day, "D")))

    def date(self, i: int) -> dt.date:
        value: dt.date = self.sessions[i].astype(dt.date)
        return value

    def sma(self, window: int) -> FloatArray:
        """Mean close of the last ``window`` bars with a close, at each session (NaN before
        ``window`` of them, and on sessions without a close)."""
        return self._trailing("close", window, ~np.isnan(self.close))

    def volume_mean(self, window: int) -> FloatArray:
        """Mean volume of the last ``window`` traded bars, today included (the VCP scan's
        baseline), at each session (NaN before ``window`` of them, and off traded bars)."""
        return self._trailing("volume", window, self.traded & ~np.isnan(self.volume))

    def _trailing(self, name: str, window: int, keep: npt.NDArray[np.bool_]) -> FloatArray:
        key = (name, window)
        found = self._cache.get(key)
        if found is not None:
            return found
        values = getattr(self, name)[keep]
        out = np.full(len(self.sessions), np.nan)
        if len(values) >= window:
            sums = np.concatenate(([0.0], np.cumsum(values)))
            means = (sums[window:] - sums[:-window]) / window
            where = np.flatnonzero(keep)
            out[where[window - 1 :]] = means
        self._cache[key] = out
        return out


@dataclass(frozen=True)
class Outcome:
    """A signal's outcome (the columns of ``signal_outcomes``; see the module docstring)."""

    signal_id: int
    rules: str
    state: str
    reason: str | None = None
    note: str | None = None
    entry_date: dt.date | None = None
    entry_price: float | None = None
    exit_date: dt.date | None = None
    exit_price: float | None = None
    gross_return: float | None = None
    net_return: float | None = None
    costs: float | None = None
    mfe: float | None = None
    mae: float | None = None
    sessions_held: int | None = None
    evaluated_through: dt.date | None = None

    def as_row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


class _Follow:
    """The bookkeeping shared by the plans: entry, excursions, exit, costs."""

    def __init__(self, signal: SignalView, bars: Bars, last: int, rules: str, costs: Costs):
        self.signal = signal
        self.bars = bars
        self.last = last  # the last session index read (−1: none)
        self.rules = rules
        self.costs = costs
        self.entry_i: int | None = None
        self.entry: float | None = None
        self.best = 0.0
        self.worst = 0.0

    def through(self) -> dt.date | None:
        return self.bars.date(self.last) if self.last >= 0 else None

    def outcome(self, state: str, at: int | None = None, **values: Any) -> Outcome:
        """An outcome evaluated through session ``at`` (the session that decided a finished
        state, so it does not move when later sessions are read) or the last one read."""
        through = self.bars.date(at) if at is not None and at >= 0 else self.through()
        return Outcome(
            signal_id=self.signal.signal_id,
            rules=self.rules,
            state=state,
            evaluated_through=through,
            **values,
        )

    def enter(self, i: int, price: float) -> None:
        self.entry_i, self.entry = i, price

    def see(self, high: float, low: float) -> None:
        assert self.entry is not None
        self.best = max(self.best, high / self.entry - 1.0)
        self.worst = min(self.worst, low / self.entry - 1.0)

    def held(self, i: int) -> int:
        assert self.entry_i is not None
        return i - self.entry_i + 1

    def _entered(self) -> dict[str, Any]:
        assert self.entry_i is not None
        return {"entry_date": self.bars.date(self.entry_i), "entry_price": self.entry}

    def closed(self, i: int, price: float, reason: str, note: str | None = None) -> Outcome:
        assert self.entry is not None
        day = self.bars.date(i)
        try:
            net, cost = self.costs.net_return(self.entry, price, self.signal.market, day)
        except ValidationError as exc:
            # no tax rate for the market and date: a return without it would overstate
            return self.outcome(
                VOID,
                i,
                reason="no_costs",
                note=f"exit {reason} at {price:,.2f} on {day}, but its costs are unknown: {exc}",
                **self._entered(),
                exit_date=day,
                exit_price=price,
                gross_return=price / self.entry - 1.0,
                mfe=self.best,
                mae=self.worst,
                sessions_held=self.held(i),
            )
        return self.outcome(
            CLOSED,
            i,
            reason=reason,
            note=note,
            **self._entered(),
            exit_date=day,
            exit_price=price,
            gross_return=price / self.entry - 1.0,
            net_return=net,
            costs=cost,
            mfe=self.best,
            mae=self.worst,
            sessions_held=self.held(i),
        )

    def still_open(self, i: int) -> Outcome:
        return self.outcome(
            OPEN,
            **self._entered(),
            mfe=self.best if i > (self.entry_i or 0) else None,
            mae=self.worst if i > (self.entry_i or 0) else None,
            sessions_held=self.held(i),
        )

    def void(self, i: int | None, reason: str, note: str) -> Outcome:
        values: dict[str, Any] = {"reason": reason, "note": note}
        if self.entry_i is not None:
            values.update(self._entered())
            seen = i is not None and i > self.entry_i
            values.update(
                mfe=self.best if seen else None,
                mae=self.worst if seen else None,
                sessions_held=self.held(i if i is not None else self.last),
            )
        if i is not None:
            values["exit_date"] = self.bars.date(i)
        return self.outcome(VOID, i, **values)

    def halted(self, i: int) -> Outcome:
        """The open position met session ``i`` without a traded bar."""
        bars = self.bars
        rest = bars.traded[i : self.last + 1]
        day = bars.date(i)
        if self.signal.listing_status in ENDED_LISTINGS and not rest.any():
            return self.void(
                i,
                "delisted",
                f"{self.signal.listing_status}: no traded bar from {day} on while open; "
                "the exit price is unknown",
            )
        if math.isnan(bars.close[i]) and i == self.last:
            # The newest session read and no bar of this instrument: maybe not collected yet,
            # so no verdict before a later session is read.
            self.last = i - 1
            return self.still_open(i - 1)
        what = "no bar" if math.isnan(bars.close[i]) else "a bar without volume"
        return self.void(
            i, "halted", f"{what} on {day} while open (trading halted?): the exit is unknown"
        )

    def ended(self) -> Outcome | None:
        """Void when the listing ended and no bar will come; ``None`` otherwise."""
        status = self.signal.listing_status
        if status not in ENDED_LISTINGS:
            return None
        held = "open" if self.entry is not None else "pending"
        traded = np.flatnonzero(self.bars.traded[: self.last + 1])
        # evaluated through the instrument's last traded bar: it does not move afterwards
        if len(traded):
            self.last = max(int(traded[-1]), self.entry_i or 0)
        return self.void(
            None,
            "delisted",
            f"{status} after the last bar read ({self.through()}) while {held}: "
            "no exit price will come",
        )


def _positive(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and number > 0 else None


def follow(
    signal: SignalView,
    bars: Bars,
    *,
    through: dt.date,
    rules: Rules = DEFAULT_RULES,
    mornings: Mapping[dt.date, Morning] | None = None,
) -> Outcome:
    """Follow ``signal`` on ``bars`` up to the session ``through`` (inclusive) under its
    strategy's plan (see the module docstring). ``mornings`` holds the closing bet's
    time-exit snapshots by session (none: daily bars only). Pure and deterministic: the same
    inputs give the same outcome, so a re-run changes nothing.

    Raises:
        quant.errors.ValidationError: the signal's market has no tax rate on an exit date
            (see :meth:`quant.costs.TaxTable.rate`).
    """
    plan = rules.plan(signal.strategy)
    version = rules_version(plan, rules.costs)
    last = int(np.searchsorted(bars.sessions, np.datetime64(through, "D"), side="right")) - 1
    state = _Follow(signal, bars, last, version, rules.costs)
    start = bars.index(signal.trade_date)
    if start > last:
        return state.outcome(
            PENDING, note=f"the bars of the signal's session {signal.trade_date} are not read yet"
        )
    if bars.date(start) != signal.trade_date:
        return state.outcome(
            VOID,
            start,
            reason="no_session",
            note=f"the market has no bar on the signal's day {signal.trade_date}",
        )
    if isinstance(plan, ClosingBetRules):
        return _closing_bet(state, start, plan, mornings or {})
    if isinstance(plan, VcpRules):
        return _vcp(state, start, plan)
    return _generic(state, start, plan)


def _entry_price(state: _Follow, start: int) -> float | None:
    price = _positive(state.signal.entry_price)
    if price is None and start <= state.last and state.bars.traded[start]:
        price = float(state.bars.close[start])
    return price


def _no_entry(state: _Follow, start: int) -> Outcome:
    return state.outcome(
        VOID,
        start,
        reason="no_entry_price",
        note=f"the signal has no usable entry price ({state.signal.entry_price!r})",
    )


def _closing_bet(
    state: _Follow, start: int, plan: ClosingBetRules, mornings: Mapping[dt.date, Morning]
) -> Outcome:
    entry = _positive(state.signal.entry_price)
    if entry is None:
        return _no_entry(state, start)
    state.enter(start, entry)
    nxt = start + 1
    if nxt > state.last:
        return state.ended() or state.still_open(start)
    bars = state.bars
    if not bars.traded[nxt]:
        return state.halted(nxt)
    day = bars.date(nxt)
    morning = mornings.get(day)
    if morning is not None:
        o, h, lo = morning.open, morning.high, morning.low
    else:
        o, h, lo = float(bars.open[nxt]), float(bars.high[nxt]), float(bars.low[nxt])
    if o >= entry * (1.0 + plan.gap_up):
        state.see(o, o)
        return state.closed(nxt, o, "gap_up", f"opened {o / entry - 1.0:+.2%}: sold at the open")
    if o <= entry * (1.0 - plan.gap_down):
        state.see(o, o)
        return state.closed(
            nxt, o, "gap_down", f"opened {o / entry - 1.0:+.2%}: stopped at the open"
        )
    stop = entry * (1.0 - plan.stop_loss)
    target = entry * (1.0 + plan.take_profit)
    if o <= stop:  # only when gap_down is wider than stop_loss
        state.see(o, o)
        return state.closed(nxt, o, "stop_loss", "opened through the stop: filled at the open")
    state.see(h, lo)
    if lo <= stop:
        return state.closed(nxt, stop, "stop_loss", _both(h >= target))
    if h >= target:
        return state.closed(nxt, target, "take_profit")
    if morning is not None:
        return state.closed(
            nxt, morning.last, "time_exit", f"out at the {plan.time_exit} snapshot's price"
        )
    return state.closed(
        nxt,
        float(bars.close[nxt]),
        "session_close",
        f"no snapshot at or before {plan.time_exit}: out at the session's close",
    )


def _both(target_touched: bool) -> str | None:
    if target_touched:
        return "the bar touched both the stop and the target: the stop counts first"
    return None


def _gap_note(price: float, stop: float) -> str:
    return f"opened {price:,.2f} through the stop {stop:,.2f}: filled at the open"


def _vcp(state: _Follow, start: int, plan: VcpRules) -> Outcome:
    signal, bars = state.signal, state.bars
    inputs = signal.inputs or {}
    pivot = _positive(inputs.get("pivot")) or _positive(signal.entry_price)
    if pivot is None:
        return state.outcome(
            VOID,
            start,
            reason="no_entry_price",
            note="the signal has neither a pivot nor an entry price",
        )
    plan_stop = _positive(inputs.get("stop"))
    stored_breakout = signal.status == "breakout" or inputs.get("breakout") is True
    volume_mean = bars.volume_mean(plan.volume_window)
    traded = bars.traded
    entry_i: int | None = None
    i = start
    while i <= state.last:
        if i - start > plan.confirm_within:
            return state.outcome(
                EXPIRED,
                i,
                reason="no_breakout",
                note=f"no close above the pivot {pivot:,.2f} on {plan.breakout_volume}× volume "
                f"within {plan.confirm_within} sessions",
            )
        if traded[i]:
            close = float(bars.close[i])
            if i == start:
                confirmed = stored_breakout
            else:
                confirmed = close > pivot and (
                    float(bars.volume[i]) >= plan.breakout_volume * float(volume_mean[i])
                )  # NaN mean (short history) compares False: unconfirmed
            if confirmed:
                if close > pivot * (1.0 + plan.max_chase):
                    return state.outcome(
                        EXPIRED,
                        i,
                        reason="extended",
                        note=f"the breakout closed {close / pivot - 1.0:+.2%} above the pivot, "
                        f"more than {plan.max_chase:.0%}: not chased",
                    )
                entry_i = i
                break
            if plan_stop is not None and close < plan_stop:
                return state.outcome(
                    EXPIRED,
                    i,
                    reason="below_stop",
                    note=f"closed {close:,.2f} below the stop {plan_stop:,.2f} before a breakout",
                )
        i += 1
    if entry_i is None:
        return state.ended() or state.outcome(PENDING)
    entry = float(bars.close[entry_i])
    state.enter(entry_i, entry)
    floor = entry * (1.0 - plan.max_stop)
    stop = max(plan_stop, floor) if plan_stop is not None and plan_stop < entry else floor
    sma = bars.sma(plan.exit_sma)
    trend_exit = False
    for i in range(entry_i + 1, state.last + 1):
        if not traded[i]:
            return state.halted(i)
        o, h, lo, c = (float(x[i]) for x in (bars.open, bars.high, bars.low, bars.close))
        if trend_exit:
            state.see(o, o)
            return state.closed(
                i,
                o,
                "trend_exit",
                f"closed below the {plan.exit_sma}-session SMA: sold at the open",
            )
        if o <= stop:
            state.see(o, o)
            return state.closed(
                i,
                o,
                "stop_loss",
                f"opened {o:,.2f} through the stop {stop:,.2f}: filled at the open",
            )
        state.see(h, lo)
        if lo <= stop:
            return state.closed(i, stop, "stop_loss")
        if state.held(i) >= plan.max_hold:
            return state.closed(i, c, "max_hold", f"held {plan.max_hold} sessions")
        trend_exit = c < float(sma[i])  # NaN SMA compares False
    return state.ended() or state.still_open(state.last)


def _generic(state: _Follow, start: int, plan: GenericRules) -> Outcome:
    entry = _entry_price(state, start)
    if entry is None:
        if start > state.last:
            return state.outcome(PENDING)
        return _no_entry(state, start)
    state.enter(start, entry)
    bars = state.bars
    stop = entry * (1.0 - plan.stop_loss)
    for i in range(start + 1, state.last + 1):
        if not bars.traded[i]:
            return state.halted(i)
        o, h, lo, c = (float(x[i]) for x in (bars.open, bars.high, bars.low, bars.close))
        if o <= stop:
            state.see(o, o)
            return state.closed(
                i,
                o,
                "stop_loss",
                f"opened {o:,.2f} through the stop {stop:,.2f}: filled at the open",
            )
        state.see(h, lo)
        if lo <= stop:
            return state.closed(i, stop, "stop_loss")
        if i - start >= plan.max_hold:
            return state.closed(i, c, "max_hold", f"held {plan.max_hold} sessions after the entry")
    return state.ended() or state.still_open(state.last)


__all__ = [
    "CLOSED",
    "DEFAULT_RULES",
    "EXPIRED",
    "FINISHED",
    "OPEN",
    "PENDING",
    "STATES",
    "VOID",
    "Bars",
    "ClosingBetRules",
    "GenericRules",
    "Morning",
    "Outcome",
    "Rules",
    "SignalView",
    "VcpRules",
    "follow",
    "rules_version",
]
