"""The scan strategies, adapted to :class:`quantbeat.scans.Evaluation` (what a signal row
stores): ``closing_bet`` (종가베팅 V2 with the supply/demand score) and ``vcp`` (Minervini
Trend Template + VCP). Importing this module registers them in
:data:`quantbeat.scans.STRATEGIES`."""

from __future__ import annotations

import math
from typing import Any

from quant.scans.closing_bet import closing_bet
from quant.scans.inputs import ScanInputs
from quant.scans.supply import supply_demand
from quant.scans.vcp import scan_vcp
from quantbeat.scans import STRATEGIES, Evaluation, Strategy


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def evaluate_closing_bet(inputs: ScanInputs) -> Evaluation:
    """A graded closing-bet candidate (S/A/B/C); the score is the V2 total (0–21 points)."""
    supply = supply_demand(inputs)
    bet = closing_bet(inputs, supply)
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


def evaluate_vcp(inputs: ScanInputs) -> Evaluation:
    """A VCP candidate (Trend Template passed and a valid contraction pattern); the score is
    the composite 0–100 VCP score, the grade its rating, the entry price the pivot."""
    result = scan_vcp(inputs)
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
        status="breakout" if pattern.breakout else "forming",
        reasons=result.reasons,
        inputs=used,
    )


def closing_bet_needs_flows(inputs: ScanInputs) -> bool:
    """Flows only feed the supply points of an instrument that passes the hard filters,
    which do not depend on them: the others need no flows."""
    return closing_bet(inputs, None).passed_filters


STRATEGIES["closing_bet"] = Strategy(
    evaluate_closing_bet,
    series=("high_52w", "sma_20", "sma_60", "bb_upper", "bb_middle", "bb_lower"),
    flows=True,
    needs_flows=closing_bet_needs_flows,
)
STRATEGIES["vcp"] = Strategy(
    evaluate_vcp,
    series=("sma_50", "sma_150", "sma_200", "high_52w", "low_52w", "rs_raw"),
)
