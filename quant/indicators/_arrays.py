"""Input checks and the missing-bar policy shared by every indicator.

**Missing bars.** A bar whose inputs hold a NaN (a halted or not-yet-recorded bar) is treated
as absent: it enters no window and no recursion, and its output is NaN. Every indicator is
computed on the bars that are present and its values are put back at their positions, so a
NaN inside a series costs one output, never the rest of the series (TA-Lib alone would carry
a NaN forward through every later value of a running sum).

**Warm-up.** The first values of a windowed indicator, before its window is full, are NaN.
A series shorter than the warm-up gives all-NaN outputs, not an error.

All outputs are float64 arrays of the input length.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from quant.errors import ValidationError

FloatArray = npt.NDArray[np.float64]


def as_series(values: object, name: str) -> FloatArray:
    """``values`` as a contiguous 1-D float64 array.

    Raises:
        quant.errors.ValidationError: not one-dimensional, not numeric, or holding an infinity;
            the message names the input (``name``).
    """
    try:
        # asarray keeps a scalar 0-d (ascontiguousarray would make it a one-bar series)
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(
            f"{name} must be a sequence of numbers, got {type(values).__name__}",
            field=name,
            value=None,
        ) from None
    if values is None:
        raise ValidationError(f"{name} must be a sequence of numbers, got None", field=name)
    if array.ndim != 1:
        raise ValidationError(
            f"{name} must be one-dimensional, got shape {array.shape}", field=name, value=None
        )
    array = np.ascontiguousarray(array)
    if np.isinf(array).any():
        at = int(np.flatnonzero(np.isinf(array))[0])
        raise ValidationError(
            f"{name}[{at}] is {array[at]}: prices and volumes must be finite (NaN marks a "
            "missing bar)",
            field=name,
            value=float(array[at]),
        )
    return array


def as_inputs(**named: object) -> list[FloatArray]:
    """Check several inputs with :func:`as_series` and that they have one length.

    Raises:
        quant.errors.ValidationError: an input is invalid, or the lengths differ.
    """
    arrays = [as_series(v, k) for k, v in named.items()]
    lengths = {k: len(a) for k, a in zip(named, arrays, strict=True)}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k}={n}" for k, n in lengths.items())
        raise ValidationError(
            f"inputs must have the same length, got {shown}",
            field=next(iter(named)),
            value=None,
        )
    return arrays


def check_int(value: object, name: str, *, minimum: int, maximum: int = 100_000) -> int:
    """``value`` as an int in ``[minimum, maximum]``; a float with an integral value passes.

    Raises:
        quant.errors.ValidationError: not an integer, or out of range; names ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValidationError(f"{name} must be an integer, got {value!r}", field=name, value=value)
    if isinstance(value, float | np.floating) and not float(value).is_integer():
        raise ValidationError(f"{name} must be an integer, got {value!r}", field=name, value=value)
    number = int(value)
    if not minimum <= number <= maximum:
        raise ValidationError(
            f"{name} must be between {minimum} and {maximum}, got {number}",
            field=name,
            value=value,
        )
    return number


def check_float(
    value: object,
    name: str,
    *,
    minimum: float,
    maximum: float,
    inclusive_minimum: bool = True,
) -> float:
    """``value`` as a finite float in the range.

    Raises:
        quant.errors.ValidationError: not a number, not finite, or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValidationError(f"{name} must be a number, got {value!r}", field=name, value=value)
    try:
        number = float(value)
    except OverflowError:  # an int beyond float's range (JSON allows any integer)
        number = math.inf if value > 0 else -math.inf
    low_ok = number >= minimum if inclusive_minimum else number > minimum
    if not (np.isfinite(number) and low_ok and number <= maximum):
        bracket = "[" if inclusive_minimum else "("
        raise ValidationError(
            f"{name} must be in {bracket}{minimum}, {maximum}], got {value!r}",
            field=name,
            value=value,
        )
    return number


def present(*arrays: FloatArray) -> npt.NDArray[np.bool_]:
    """Mask of bars where every input is present (not NaN)."""
    mask = np.ones(len(arrays[0]), dtype=bool)
    for a in arrays:
        mask &= ~np.isnan(a)
    return mask


def on_present(
    compute: Callable[..., Sequence[FloatArray]],
    arrays: Sequence[FloatArray],
    **params: Any,
) -> list[FloatArray]:
    """Apply ``compute(*arrays, **params)`` to the bars present in every array and scatter
    its outputs back to the input positions (NaN at missing bars).

    ``compute`` receives NaN-free arrays (possibly empty) and returns outputs of their length.
    """
    mask = present(*arrays)
    n = len(arrays[0])
    if mask.all():
        return [np.asarray(o, dtype=np.float64) for o in compute(*arrays, **params)]
    compact = [a[mask] for a in arrays]
    outputs = compute(*compact, **params)
    full: list[FloatArray] = []
    for o in outputs:
        out = np.full(n, np.nan)
        out[mask] = o
        full.append(out)
    return full
