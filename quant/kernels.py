"""Every numba kernel of :mod:`quant`, compiled — or loaded from numba's on-disk cache
(``cache=True``: ``__pycache__`` beside each module, valid while the module's source is
unchanged) — at once, on tiny inputs.

Workers call :func:`warm_up` when they start, so no task pays for compiling. ``make`` runs it
once right after installing (``python -m quant.kernels``), so neither the first ``make run``
nor the first test process pays for it either: compiling the backtest engine alone takes
about 13 s on a 2-core machine, three times that under coverage's tracer.
"""

from __future__ import annotations

import time

from quant.backtest.engine import warm_up as _engine
from quant.backtest.strategies import warm_up as _strategies
from quant.indicators.custom import warm_up as _indicators


def warm_up() -> float:
    """Compile or load every kernel (indicators, backtest engine, strategy builders); returns
    the seconds it took."""
    t0 = time.perf_counter()
    _indicators()
    _engine()
    _strategies()
    return time.perf_counter() - t0


if __name__ == "__main__":
    print(f"numba kernels compiled or loaded from the cache in {warm_up():.1f} s")
