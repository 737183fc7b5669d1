"""The scan strategies — the one registry every capability reads.

A :class:`ScanStrategy` says everything quantbeat knows about a strategy: how a scan evaluates
an instrument (:class:`Strategy`: the evaluation and the series and flows it reads), which
parameter dataclasses a stored override (``quantbeat settings set strategy.<name>``) fills, how
its candidates rank (grades before score), and which backtest strategy
(:mod:`quant.backtest.strategies`) replays it. Scans, the nightly backtest, ``quantbeat run``,
health's signal check, the AI analysis and the settings store all ask this module; registering
a strategy here (:func:`register`) is the one step that makes it known everywhere.

Registered: ``closing_bet`` (종가베팅 V2 with the supply/demand score) and ``vcp`` (Minervini
Trend Template + VCP).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from quant.errors import ValidationError
from quant.scans.closing_bet import ClosingBetParams, closing_bet
from quant.scans.inputs import ScanInputs
from quant.scans.supply import SupplyParams, supply_demand
from quant.scans.trend import TrendTemplateParams
from quant.scans.vcp import BREAKOUT, RATINGS, VcpParams, scan_vcp


@dataclass(frozen=True)
class Evaluation:
    """One instrument's verdict: a candidate (a signal row) or not, with why."""

    candidate: bool
    score: float | None = None
    grade: str | None = None
    entry_price: float | None = None
    status: str | None = None
    reasons: tuple[str, ...] = ()
    inputs: Mapping[str, Any] = field(default_factory=dict)
    #: The scan day's volume over the strategy's mean volume (stored as
    #: ``signals.volume_ratio``); ``None`` when the strategy does not measure it or unknown.
    volume_ratio: float | None = None


@dataclass(frozen=True)
class Strategy:
    """How a scan evaluates one instrument: its evaluation and what it reads — the
    precomputed series (names of :data:`quant.scans.inputs.SERIES`; others are computed on
    demand) and whether it needs investor flows. Reading only these keeps a chunk's cache and
    database reads small."""

    evaluate: Callable[[ScanInputs], Evaluation]
    series: tuple[str, ...] = ()
    flows: bool = False
    #: With ``flows``: a cheap test, without flows, of whether an instrument can still be a
    #: candidate; flows are loaded only for those (``None``: for every instrument).
    needs_flows: Callable[[ScanInputs], bool] | None = None


@dataclass(frozen=True)
class ScanStrategy:
    """A registered scan strategy (see the module docstring)."""

    #: The name in task arguments, signal rows, settings keys (``vcp``, ``closing_bet``).
    name: str
    #: What people call it (reports, messages).
    label: str
    #: The evaluation with default parameters.
    evaluator: Strategy
    #: Parameter dataclasses a stored override fills (a flat mapping of their field names);
    #: empty: the strategy takes no overrides.
    params: tuple[type[Any], ...] = ()
    #: Builds the evaluator from parameter objects (one per :attr:`params` type, in order).
    configure: Callable[[tuple[Any, ...]], Strategy] | None = None
    #: The :mod:`quant.backtest.strategies` strategy that replays its signals (``None``: none).
    backtest: str | None = None
    #: Grades ranked before the score (best first), e.g. a closing-bet S outranks an A with
    #: more points; empty: ranked by score only.
    grades: tuple[str, ...] = ()
    #: Statuses ranked before everything else (best first), e.g. VCP's confirmed
    #: ``breakout`` before an ``unconfirmed`` close above the pivot or a ``forming`` pattern;
    #: signals of other statuses follow, by grade and score. Empty: the status does not rank.
    ranked_first: tuple[str, ...] = ()
    #: Its evaluation reads the AI analyses' news scores: when the analyses of its top
    #: candidates finish, the day's scan is re-run so the scores count.
    reads_news: bool = False
    #: Runs in the daily pipeline (after the close, or once investor flows are published
    #: when its evaluator reads flows) and is expected by health's signal check; ``False``
    #: for strategies that are only scanned on request.
    scheduled: bool = True
    #: Every grade its signals may carry, best first (what a grade filter accepts and a
    #: minimum grade is read against); empty: :attr:`grades`.
    grade_labels: tuple[str, ...] = ()

    def grade_ladder(self) -> tuple[str, ...]:
        """The grades its signals may carry, best first (``()``: it does not grade)."""
        return self.grade_labels or self.grades


_registry: dict[str, ScanStrategy] = {}


def register(strategy: ScanStrategy) -> ScanStrategy:
    """Make ``strategy`` known to every capability (replaces one of the same name)."""
    _registry[strategy.name] = strategy
    return strategy


def unregister(name: str) -> None:
    """Forget a registered strategy (tests that register throwaway ones)."""
    _registry.pop(name, None)


def scan_strategy_names() -> tuple[str, ...]:
    """The registered strategies' names, in registration order."""
    return tuple(_registry)


def scan_strategy(name: object) -> ScanStrategy:
    """The strategy called ``name``.

    Raises:
        quant.errors.ValidationError: unknown strategy (the message lists the known ones).
    """
    found = _registry.get(name) if isinstance(name, str) else None
    if found is None:
        raise ValidationError(
            f"unknown strategy {name!r} (known: {', '.join(sorted(_registry))})",
            field="strategy",
            value=name,
        )
    return found


def canonical_strategy(name: str) -> str:
    """``closing-bet`` → ``closing_bet``.

    Raises:
        quant.errors.ValidationError: unknown strategy (the message lists the known ones).
    """
    value = name.strip().lower().replace("-", "_")
    scan_strategy(value)
    return value


def with_parameters() -> tuple[str, ...]:
    """Names of the registered strategies that take stored parameter overrides."""
    return tuple(n for n, s in _registry.items() if s.params)


def _as_field_value(hint: Any, value: Any, where: str) -> Any:
    """``value`` (JSON) checked against a parameter field's type ``hint`` and converted to it:
    ``float`` a finite number (an int is widened), ``int`` an integer (a float with an
    integral value too), ``str``/``bool`` themselves, ``tuple[X, ...]`` a non-empty list of X,
    ``tuple[X, Y]`` a list of exactly an X and a Y (JSON has no tuples: tier tables arrive as
    lists of lists). Other hints pass the value through.

    Raises:
        quant.errors.ValidationError: a value of the wrong shape; the message names ``where``
            (the parameter and the position inside it) and the value.
    """

    def refuse(expected: str) -> ValidationError:
        return ValidationError(f"{where} must be {expected}, got {value!r}", value=value)

    if typing.get_origin(hint) is tuple:
        items = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise refuse("a list")
        if len(items) == 2 and items[1] is Ellipsis:
            if not value:
                raise refuse("a non-empty list")
            return tuple(_as_field_value(items[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(items):
            raise refuse(f"a list of {len(items)} values")
        return tuple(
            _as_field_value(h, v, f"{where}[{i}]")
            for i, (h, v) in enumerate(zip(items, value, strict=True))
        )
    if hint is bool:
        if not isinstance(value, bool):
            raise refuse("true or false")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise refuse("a string")
        return value
    if hint is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise refuse("an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise refuse("a number")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise refuse("a finite number")
        return number
    return value


_FIELD_TYPES: dict[type[Any], dict[str, Any]] = {}


def _field_types(kind: type[Any]) -> dict[str, Any]:
    """The resolved type hints of a parameter dataclass's fields (cached)."""
    found = _FIELD_TYPES.get(kind)
    if found is None:
        found = _FIELD_TYPES[kind] = typing.get_type_hints(kind)
    return found


def build_params(strategy: str, overrides: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """The parameter objects of ``strategy`` with ``overrides`` applied (defaults elsewhere).

    Raises:
        quant.errors.ValidationError: ``overrides`` is not a mapping, names a field that none
            of the strategy's parameter types has, gives a value of another type or shape
            than the field's (a number for a number, a list of pairs for a tier table ...),
            or a value the type refuses.
    """
    found = _registry.get(strategy)
    types = found.params if found is not None else ()
    if not types:
        raise ValidationError(
            f"strategy {strategy!r} has no parameters to override "
            f"(strategies with parameters: {', '.join(sorted(with_parameters()))})",
            field="strategy",
            value=strategy,
        )
    overrides = overrides or {}
    if not isinstance(overrides, Mapping):
        raise ValidationError(
            f"parameters of {strategy} must be an object of field: value, got {overrides!r}",
            field=f"strategy.{strategy}",
            value=overrides,
        )
    fields = {f.name: kind for kind in types for f in dataclasses.fields(kind)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValidationError(
            f"unknown {strategy} parameter {unknown[0]!r} "
            f"(parameters: {', '.join(sorted(fields))})",
            field=f"strategy.{strategy}",
            value=unknown[0],
        )
    built = []
    for kind in types:
        hints = _field_types(kind)
        try:
            own = {
                k: _as_field_value(hints.get(k), v, k)
                for k, v in overrides.items()
                if fields[k] is kind
            }
        except ValidationError as exc:
            raise ValidationError(
                f"invalid parameter for strategy.{strategy}: {exc}",
                field=f"strategy.{strategy}",
                value=exc.value,
            ) from None
        try:
            built.append(kind(**own))
        except (ValidationError, TypeError, ValueError) as exc:
            raise ValidationError(
                f"invalid parameters for strategy.{strategy} {own!r}: {exc}",
                field=f"strategy.{strategy}",
                value=own,
            ) from exc
    return tuple(built)


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def evaluate_closing_bet(
    inputs: ScanInputs,
    params: ClosingBetParams | None = None,
    supply_params: SupplyParams | None = None,
) -> Evaluation:
    """A graded closing-bet candidate (S/A/B/C); the score is the V2 total (0–21 points)."""
    supply = supply_demand(inputs, supply_params)
    bet = closing_bet(inputs, supply, params)
    plan = bet.exit_plan
    used: dict[str, Any] = {
        "change_pct": _num(bet.change_pct),
        "traded_value_krw": _num(bet.traded_value_krw),
        "volume_ratio": _num(bet.volume_ratio),
        "base": bet.base,
        "bonus": bet.bonus,
        "components": {
            name: getattr(bet.components, name)
            for name in (
                "news",
                "traded_value",
                "chart",
                "candle",
                "consolidation",
                "supply",
                "volume_bonus",
                "change_bonus",
            )
        },
        "news": bet.news,
        "supply_score": _num(supply.score),
        "foreign_5d_krw": _num(supply.foreign_5d_krw),
        "institution_5d_krw": _num(supply.institution_5d_krw),
        "failed_filters": list(bet.failed_filters),
    }
    if plan is not None:
        used["exit_plan"] = {
            "take_profit": plan.take_profit_price,
            "stop_loss": plan.stop_loss_price,
            "gap_up_take_profit": plan.gap_up_take_profit_price,
            "gap_down_stop": plan.gap_down_stop_price,
            "time_stop": plan.time_stop,
            "risk_fraction": plan.risk_fraction,
            "position_fraction": plan.position_fraction,
        }
    return Evaluation(
        candidate=bet.candidate,
        score=float(bet.total),
        grade=bet.grade,
        entry_price=plan.entry_price if plan is not None else None,
        status=bet.news if bet.candidate else None,
        reasons=bet.reasons,
        inputs=used,
    )


def evaluate_vcp(
    inputs: ScanInputs,
    trend_params: TrendTemplateParams | None = None,
    vcp_params: VcpParams | None = None,
) -> Evaluation:
    """A VCP candidate (Trend Template passed and a valid contraction pattern); the score is
    the composite 0–100 VCP score, the grade its rating, the entry price the pivot, the
    status the pattern's state at the pivot (``breakout``, ``unconfirmed`` — above the pivot
    without the breakout volume — or ``forming``; :data:`quant.scans.vcp.PIVOT_STATES`) and
    the volume ratio the scan day's volume over the 50-day mean."""
    result = scan_vcp(inputs, trend_params or TrendTemplateParams(), vcp_params or VcpParams())
    pattern, score, trend = result.pattern, result.score, result.trend
    used: dict[str, Any] = {
        "trend_template": {name: bool(ok) for name, ok in trend.criteria.items()},
        "trend_values": {k: _num(v) for k, v in trend.values.items()},
        "rs_rating": _num(inputs.rs_rating),
        "contractions": [
            {
                "high": c.high,
                "low": c.low,
                "depth": c.depth,
                "high_date": str(inputs.candles.time[c.high_index]),
                "low_date": str(inputs.candles.time[c.low_index]),
            }
            for c in pattern.contractions
        ],
        "pivot": _num(pattern.pivot),
        "stop": _num(pattern.stop),
        "dry_up": _num(pattern.dry_up),
        "breakout": pattern.breakout,
        "pivot_state": pattern.state,
        "volume_ratio": _num(pattern.volume_ratio),
        "breakout_volume": (vcp_params or VcpParams()).breakout_volume,
        "components": {
            "trend": _num(score.tt),
            "contraction": _num(score.contraction),
            "volume": _num(score.volume),
            "pivot": _num(score.pivot),
            "rs": _num(score.rs),
        },
    }
    return Evaluation(
        candidate=result.is_candidate,
        score=_num(score.total),
        grade=score.rating,
        entry_price=_num(pattern.pivot),
        status=pattern.state,
        reasons=result.reasons,
        inputs=used,
        volume_ratio=_num(pattern.volume_ratio),
    )


def closing_bet_needs_flows(inputs: ScanInputs, params: ClosingBetParams | None = None) -> bool:
    """Flows only feed the supply points of an instrument that passes the hard filters,
    which do not depend on them: the others need no flows."""
    return closing_bet(inputs, None, params).passed_filters


def configured(name: str, overrides: Mapping[str, Any] | None) -> Strategy:
    """The evaluator of strategy ``name`` with ``overrides`` applied (see
    :func:`build_params`); its default evaluator when there are none.

    Raises:
        quant.errors.ValidationError: unknown strategy, or as :func:`build_params`.
    """
    found = scan_strategy(name)
    if not overrides:
        return found.evaluator
    params = build_params(name, overrides)
    if found.configure is None:
        return found.evaluator
    return found.configure(params)


def _closing_bet_with(params: tuple[Any, ...]) -> Strategy:
    return dataclasses.replace(
        CLOSING_BET,
        evaluate=functools.partial(evaluate_closing_bet, params=params[0], supply_params=params[1]),
        needs_flows=functools.partial(closing_bet_needs_flows, params=params[0]),
    )


def _vcp_with(params: tuple[Any, ...]) -> Strategy:
    return dataclasses.replace(
        VCP,
        evaluate=functools.partial(evaluate_vcp, trend_params=params[0], vcp_params=params[1]),
    )


CLOSING_BET = Strategy(
    evaluate_closing_bet,
    series=("high_52w", "sma_20", "sma_60", "bb_upper", "bb_middle", "bb_lower"),
    flows=True,
    needs_flows=closing_bet_needs_flows,
)
VCP = Strategy(
    evaluate_vcp,
    series=("sma_50", "sma_150", "sma_200", "high_52w", "low_52w", "rs_raw"),
)

register(
    ScanStrategy(
        name="vcp",
        label="VCP",
        evaluator=VCP,
        params=(TrendTemplateParams, VcpParams),
        configure=_vcp_with,
        backtest="vcp_breakout",
        # a confirmed breakout is never ranked with an unconfirmed close above the pivot
        ranked_first=(BREAKOUT,),
        # the rating of the score (ranked by the score itself, so not in ``grades``)
        grade_labels=tuple(label for _, label in RATINGS),
    )
)
register(
    ScanStrategy(
        name="closing_bet",
        label="closing bet",
        evaluator=CLOSING_BET,
        params=(ClosingBetParams, SupplyParams),
        configure=_closing_bet_with,
        backtest="closing_bet",
        grades=("S", "A", "B", "C"),
        reads_news=True,
    )
)
