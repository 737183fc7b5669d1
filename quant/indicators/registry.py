"""Every indicator by name, with its parameters, inputs and outputs: the one entry point that
tasks, the cache and the CLI use.

``canonical_params(name, params)`` validates a request's parameters and fills in defaults, so
``{"stddev": 2, "period": 20}`` and ``{"period": 20}`` describe the same Bollinger Bands and
get the same :func:`params_key` (the cache key never depends on parameter order or on
spelling a default). ``compute(name, candles, params)`` returns ``{output: float64 array}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from quant.errors import ValidationError
from quant.indicators import custom, standard
from quant.indicators._arrays import FloatArray, check_float, check_int
from quant.indicators.candles import COLUMNS, Candles

ParamValue = int | float | str
Params = dict[str, ParamValue]


@dataclass(frozen=True)
class Param:
    """One parameter: its kind (``int``, ``float`` or ``str``), default and bounds/choices."""

    name: str
    kind: type
    default: ParamValue
    minimum: float = 1
    maximum: float = standard.MAX_PERIOD
    choices: tuple[str, ...] = ()
    doc: str = ""

    def check(self, value: object, where: str) -> ParamValue:
        """The validated value.

        Raises:
            quant.errors.ValidationError: wrong type or out of range; names ``where``.
        """
        if self.kind is int:
            return check_int(value, where, minimum=int(self.minimum), maximum=int(self.maximum))
        if self.kind is float:
            return check_float(
                value,
                where,
                minimum=self.minimum,
                maximum=self.maximum,
                inclusive_minimum=False,
            )
        if not isinstance(value, str) or value not in self.choices:
            raise ValidationError(
                f"{where} must be one of {', '.join(self.choices)}, got {value!r}",
                field=where,
                value=value,
            )
        return value


@dataclass(frozen=True)
class IndicatorSpec:
    """An indicator: ``run(candles, params)`` returns its outputs in :attr:`outputs` order."""

    name: str
    description: str
    params: tuple[Param, ...]
    outputs: tuple[str, ...]
    run: Callable[[Candles, Params], tuple[FloatArray, ...]] = field(repr=False)

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


_SOURCE = Param(
    "source",
    str,
    "close",
    choices=COLUMNS,
    doc="candle column the average is taken of (volume for a volume average)",
)


def _i(params: Params, name: str) -> int:
    value = params[name]
    assert isinstance(value, int)
    return value


def _f(params: Params, name: str) -> float:
    value = params[name]
    assert isinstance(value, int | float)
    return float(value)


def _s(params: Params, name: str) -> str:
    return str(params[name])


_SPECS: tuple[IndicatorSpec, ...] = (
    IndicatorSpec(
        "sma",
        "simple moving average (TA-Lib)",
        (Param("period", int, 20), _SOURCE),
        ("sma",),
        lambda c, p: (standard.sma(c.column(_s(p, "source")), _i(p, "period")),),
    ),
    IndicatorSpec(
        "ema",
        "exponential moving average (TA-Lib)",
        (Param("period", int, 20), _SOURCE),
        ("ema",),
        lambda c, p: (standard.ema(c.column(_s(p, "source")), _i(p, "period")),),
    ),
    IndicatorSpec(
        "rsi",
        "Wilder RSI, 0-100 (TA-Lib)",
        (Param("period", int, 14, minimum=2),),
        ("rsi",),
        lambda c, p: (standard.rsi(c.close, _i(p, "period")),),
    ),
    IndicatorSpec(
        "macd",
        "MACD line, signal and histogram (TA-Lib)",
        (
            Param("fast", int, 12, minimum=2),
            Param("slow", int, 26, minimum=2),
            Param("signal", int, 9),
        ),
        ("macd", "signal", "hist"),
        lambda c, p: tuple(standard.macd(c.close, _i(p, "fast"), _i(p, "slow"), _i(p, "signal"))),
    ),
    IndicatorSpec(
        "bbands",
        "Bollinger Bands (TA-Lib)",
        (Param("period", int, 20, minimum=2), Param("stddev", float, 2.0, 0.0, 10.0)),
        ("upper", "middle", "lower"),
        lambda c, p: tuple(standard.bbands(c.close, _i(p, "period"), _f(p, "stddev"))),
    ),
    IndicatorSpec(
        "atr",
        "Wilder average true range, price units (TA-Lib)",
        (Param("period", int, 14),),
        ("atr",),
        lambda c, p: (standard.atr(c.high, c.low, c.close, _i(p, "period")),),
    ),
    IndicatorSpec(
        "obv",
        "on-balance volume, shares (TA-Lib)",
        (),
        ("obv",),
        lambda c, p: (standard.obv(c.close, c.volume),),
    ),
    IndicatorSpec(
        "high_low",
        "rolling highest high / lowest low; 252 bars = 52 weeks",
        (
            Param("window", int, 252),
            Param("min_periods", int, 0, minimum=0, doc="bars required; 0 means window"),
        ),
        ("high", "low"),
        lambda c, p: custom.rolling_high_low(
            c.high,
            c.low,
            window=_i(p, "window"),
            min_periods=_i(p, "min_periods") or None,
        ),
    ),
    IndicatorSpec(
        "rs_raw",
        "relative-strength raw score 0.4 R63 + 0.2 R126 + 0.2 R189 + 0.2 R252",
        (),
        ("rs_raw",),
        lambda c, p: (custom.rs_raw(c.close),),
    ),
    IndicatorSpec(
        "volume_profile",
        "rolling volume profile of the previous bars: POC, value-area high and low",
        (
            Param("window", int, 60, minimum=2),
            Param("bins", int, 24, minimum=2, maximum=1000),
            Param("value_area", float, 0.70, 0.0, 1.0),
        ),
        ("poc", "vah", "val"),
        lambda c, p: custom.rolling_volume_profile(
            c.high,
            c.low,
            c.volume,
            window=_i(p, "window"),
            bins=_i(p, "bins"),
            value_area=_f(p, "value_area"),
        ),
    ),
)

#: Indicators by name.
INDICATORS: dict[str, IndicatorSpec] = {s.name: s for s in _SPECS}


def spec(name: object) -> IndicatorSpec:
    """The indicator called ``name``.

    Raises:
        quant.errors.ValidationError: no such indicator (the message lists the known ones).
    """
    found = INDICATORS.get(name) if isinstance(name, str) else None
    if found is None:
        raise ValidationError(
            f"unknown indicator {name!r} (known: {', '.join(INDICATORS)})",
            field="indicator",
            value=name,
        )
    return found


def canonical_params(
    name: str, params: Mapping[str, object] | None, *, where: str = "params"
) -> Params:
    """``params`` validated, with defaults filled in, in the spec's order.

    Raises:
        quant.errors.ValidationError: unknown indicator, unknown parameter, or a bad value;
            ``field`` is ``<where>.<parameter>``.
    """
    indicator = spec(name)
    if not isinstance(params, Mapping | None):
        raise ValidationError(
            f"{where} must be an object of parameter values, got {params!r}",
            field=where,
            value=params,
        )
    given = dict(params or {})
    unknown = sorted(set(given) - {p.name for p in indicator.params})
    if unknown:
        known = ", ".join(p.name for p in indicator.params) or "none"
        raise ValidationError(
            f"{name} has no parameter {unknown[0]!r} (parameters: {known})",
            field=f"{where}.{unknown[0]}",
            value=given[unknown[0]],
        )
    out: Params = {}
    for p in indicator.params:
        out[p.name] = p.check(given.get(p.name, p.default), f"{where}.{p.name}")
    if name == "macd" and _i(out, "fast") >= _i(out, "slow"):
        raise ValidationError(
            f"{where}.fast ({out['fast']}) must be below {where}.slow ({out['slow']})",
            field=f"{where}.fast",
            value=out["fast"],
        )
    if name == "high_low" and _i(out, "min_periods") > _i(out, "window"):
        raise ValidationError(
            f"{where}.min_periods ({out['min_periods']}) must not exceed {where}.window "
            f"({out['window']})",
            field=f"{where}.min_periods",
            value=out["min_periods"],
        )
    return out


def params_key(params: Params) -> str:
    """A stable text form of canonical parameters: sorted ``name=value`` pairs."""
    return ",".join(f"{k}={params[k]!r}" for k in sorted(params))


def compute(
    name: str, candles: Candles, params: Mapping[str, object] | None = None
) -> dict[str, FloatArray]:
    """Compute indicator ``name`` over ``candles``: ``{output name: float64 array}``, each of
    ``len(candles)`` values (NaN during warm-up and at missing bars).

    Raises:
        quant.errors.ValidationError: unknown indicator or bad parameters (see
            :func:`canonical_params`), or candles the indicator rejects.
    """
    indicator = spec(name)
    canonical = canonical_params(name, params)
    values = indicator.run(candles, canonical)
    return dict(zip(indicator.outputs, values, strict=True))


def describe() -> list[dict[str, Any]]:
    """Every indicator with its parameters (name, kind, default, bounds) and outputs."""
    return [
        {
            "name": s.name,
            "description": s.description,
            "outputs": list(s.outputs),
            "params": [
                {
                    "name": p.name,
                    "type": p.kind.__name__,
                    "default": p.default,
                    **({"choices": list(p.choices)} if p.choices else {}),
                    **({} if p.choices else {"minimum": p.minimum, "maximum": p.maximum}),
                }
                for p in s.params
            ],
        }
        for s in _SPECS
    ]
