"""Routing reference series to the provider that has them.

:class:`ReferenceSources` is one :class:`quant.market.base.ReferenceDataSource` over two:
KRX indices and ETFs from ``krx`` (normally :class:`quant.market.krx.KrxSource`) and
exchange rates from ``fx`` (normally :class:`quant.market.yahoo.YahooFxSource`, ``KRW=X``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np
import pandas as pd

from quant.calendar import check_range
from quant.errors import ValidationError
from quant.market.base import ReferenceDataSource
from quant.market.types import REFERENCE_BAR_COLUMNS, ReferenceKind, ReferenceSeries

__all__ = ["ReferenceSources"]


class ReferenceSources:
    """INDEX and ETF series from ``krx``, FX series from ``fx``; ``name`` is
    ``"<krx name>+<fx name>"`` and ``simulated`` is true when either is simulated.
    Errors of either provider propagate unchanged (nothing is half-returned)."""

    def __init__(self, krx: ReferenceDataSource, fx: ReferenceDataSource) -> None:
        self.krx = krx
        self.fx = fx
        self.name = f"{krx.name}+{fx.name}"
        self.simulated = bool(krx.simulated or fx.simulated)

    def __repr__(self) -> str:
        return f"ReferenceSources(krx={self.krx!r}, fx={self.fx!r})"

    def reference_bars(
        self, start: date, end: date, series: Sequence[ReferenceSeries]
    ) -> pd.DataFrame:
        """Bars of ``series`` (see :meth:`quant.market.base.ReferenceDataSource.reference_bars`),
        each from its provider, with REFERENCE_BAR_COLUMNS sorted by code then date.

        Raises:
            quant.errors.ValidationError: bad dates or ``series`` not a sequence of
                ReferenceSeries; and whatever the providers raise.
        """
        check_range(start, end)
        if isinstance(series, str | ReferenceSeries) or not isinstance(series, Sequence):
            raise ValidationError(
                f"series must be a sequence of ReferenceSeries, got {series!r}",
                field="series",
                value=series,
            )
        for item in series:
            if not isinstance(item, ReferenceSeries):
                raise ValidationError(
                    f"series entry {item!r} is not a ReferenceSeries", field="series", value=item
                )
        equity = [s for s in series if s.kind is not ReferenceKind.FX]
        fx = [s for s in series if s.kind is ReferenceKind.FX]
        parts = [
            frame
            for source, chosen in ((self.krx, equity), (self.fx, fx))
            if chosen
            for frame in [source.reference_bars(start, end, chosen)]
            if not frame.empty
        ]
        if not parts:
            return _empty()
        out = pd.concat(parts, ignore_index=True)[list(REFERENCE_BAR_COLUMNS)]
        return out.sort_values(["code", "trade_date"], kind="stable").reset_index(drop=True)


def _empty() -> pd.DataFrame:
    """An empty frame with REFERENCE_BAR_COLUMNS."""
    data: dict[str, object] = {
        "code": pd.array([], dtype="str"),
        "trade_date": np.array([], dtype=object),
    }
    for column in REFERENCE_BAR_COLUMNS[2:]:
        data[column] = np.array([], dtype=np.float64)
    return pd.DataFrame(data, columns=list(REFERENCE_BAR_COLUMNS))
