"""Scans over the universe: the Minervini Trend Template and VCP, the supply/demand score
from investor flows, and closing-price betting V2 (``docs/domain.md`` §1–3).

Every scan reads one instrument's :class:`quant.scans.inputs.ScanInputs` (candles, the
precomputed indicator series, flows, the universe RS rating) and returns a result that says
why it passed or failed. Every threshold is a parameter with the documented default.
"""
