"""Charts of the dashboard as inline SVG, drawn on the server (no JavaScript, no network):
the Market Gate gauge, line charts of equity curves and horizontal bars of sector strength.

Every function returns :class:`markupsafe.Markup` whose text parts are escaped; numbers are
written with fixed precision. Colours and sizes are presentation attributes (no ``style``
attribute: the pages' Content-Security-Policy forbids inline styles).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

#: Fill colour per gate colour and sector status.
COLOURS = {
    "GREEN": "#1a9850",
    "YELLOW": "#e0a800",
    "RED": "#d73027",
    "UNKNOWN": "#8a8f98",
    "BULLISH": "#1a9850",
    "NEUTRAL": "#e0a800",
    "BEARISH": "#d73027",
}
TRACK = "#e3e6ea"
INK = "#27313d"
MUTED = "#6b7480"
LINE = "#2b6cb0"


def _markup(parts: list[str]) -> Markup:
    # Every text part was escaped where it was written; the rest are numbers and constants.
    return Markup("".join(parts))  # noqa: S704 (the parts are escaped as they are built)


def colour(name: str | None) -> str:
    """The fill colour of a gate colour or sector status (grey when unknown)."""
    return COLOURS.get((name or "").upper(), COLOURS["UNKNOWN"])


def _n(value: float) -> str:
    return f"{value:.1f}"


def _arc(cx: float, cy: float, r: float, start: float, end: float) -> str:
    """An SVG path of the circle arc from angle ``start`` to ``end`` (radians, 0 = left end
    of the gauge, π = right end, drawn over the top)."""
    x0, y0 = cx - r * math.cos(start), cy - r * math.sin(start)
    x1, y1 = cx - r * math.cos(end), cy - r * math.sin(end)
    large = 1 if end - start > math.pi else 0
    return f"M {_n(x0)} {_n(y0)} A {_n(r)} {_n(r)} 0 {large} 1 {_n(x1)} {_n(y1)}"


def gauge(score: float | None, colour_name: str | None, *, label: str = "") -> Markup:
    """A half-circle gauge of ``score`` (0–100, clamped; ``None``: an empty track and "–")
    in the gate's colour, with the score in the middle and ``label`` under it."""
    width, height, cx, cy, r = 220, 130, 110.0, 110.0, 90.0
    fill = colour(colour_name)
    parts = [
        f'<svg class="gauge" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(label)} {escape(_score_text(score))}">',
        f'<path d="{_arc(cx, cy, r, 0.0, math.pi)}" fill="none" stroke="{TRACK}" '
        'stroke-width="18" stroke-linecap="round"/>',
    ]
    if score is not None and math.isfinite(score):
        share = min(max(score, 0.0), 100.0) / 100.0
        if share > 0:
            parts.append(
                f'<path class="gauge-value" d="{_arc(cx, cy, r, 0.0, math.pi * share)}" '
                f'fill="none" stroke="{fill}" stroke-width="18" stroke-linecap="round"/>'
            )
    parts.append(
        f'<text x="{cx:.0f}" y="{cy - 18:.0f}" text-anchor="middle" font-size="34" '
        f'font-weight="700" fill="{INK}">{escape(_score_text(score))}</text>'
    )
    if label:
        parts.append(
            f'<text x="{cx:.0f}" y="{cy + 12:.0f}" text-anchor="middle" font-size="15" '
            f'font-weight="600" fill="{fill}">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return _markup(parts)


def _score_text(score: float | None) -> str:
    if score is None or not math.isfinite(score):
        return "–"
    return f"{score:.1f}"


def compact(value: float) -> str:
    """``value`` in at most about five significant characters: 1.23B, 45.6M, 12.3K, 950."""
    magnitude = abs(value)
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if magnitude >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def line_chart(
    points: Sequence[tuple[str, float]],
    *,
    label: str = "",
    baseline: float | None = None,
    width: int = 640,
    height: int = 200,
) -> Markup:
    """A line chart of ``points`` (``(x label, value)``, oldest first) scaled to their range
    (and ``baseline``, drawn dashed, e.g. the starting capital), with the first and last x
    labels and the low and high values on the axis. Non-finite values are skipped; fewer
    than two points give an empty frame."""
    kept = [(x, float(v)) for x, v in points if v is not None and math.isfinite(float(v))]
    left, right, top, bottom = 70, 12, 12, 26
    inner_w, inner_h = width - left - right, height - top - bottom
    parts = [
        f'<svg class="line-chart" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMidYMid meet" role="img" aria-label="{escape(label)}">',
        f'<rect x="{left}" y="{top}" width="{inner_w}" height="{inner_h}" fill="#fbfcfd" '
        f'stroke="{TRACK}"/>',
    ]
    if len(kept) < 2:
        parts.append("</svg>")
        return _markup(parts)
    values = [v for _, v in kept] + ([baseline] if baseline is not None else [])
    low, high = min(values), max(values)
    if high == low:
        high, low = high + 1.0, low - 1.0

    def y(v: float) -> float:
        return top + inner_h * (1.0 - (v - low) / (high - low))

    step = inner_w / (len(kept) - 1)
    coords = " ".join(f"{_n(left + i * step)},{_n(y(v))}" for i, (_, v) in enumerate(kept))
    if baseline is not None:
        parts.append(
            f'<line x1="{left}" x2="{left + inner_w}" y1="{_n(y(baseline))}" '
            f'y2="{_n(y(baseline))}" stroke="{MUTED}" stroke-dasharray="4 4"/>'
        )
    end = kept[-1][1]
    rising = end >= (baseline if baseline is not None else kept[0][1])
    stroke = COLOURS["GREEN"] if rising else COLOURS["RED"]
    parts += [
        f'<polyline class="series" points="{coords}" fill="none" stroke="{stroke}" '
        'stroke-width="2" stroke-linejoin="round"/>',
        f'<text x="{left - 6}" y="{top + 10}" text-anchor="end" font-size="11" '
        f'fill="{MUTED}">{escape(compact(high))}</text>',
        f'<text x="{left - 6}" y="{top + inner_h}" text-anchor="end" font-size="11" '
        f'fill="{MUTED}">{escape(compact(low))}</text>',
        f'<text x="{left}" y="{height - 8}" font-size="11" fill="{MUTED}">'
        f"{escape(kept[0][0])}</text>",
        f'<text x="{left + inner_w}" y="{height - 8}" text-anchor="end" font-size="11" '
        f'fill="{MUTED}">{escape(kept[-1][0])}</text>',
        "</svg>",
    ]
    return _markup(parts)


def bar_chart(
    items: Sequence[tuple[str, float | None, str | None]],
    *,
    label: str = "",
    width: int = 640,
    maximum: float = 100.0,
) -> Markup:
    """Horizontal bars, one per ``(name, value, status)`` (value 0–``maximum``, clamped;
    ``None``: no bar and "–"), coloured by status (BULLISH/NEUTRAL/BEARISH, grey
    otherwise)."""
    row, left, right = 24, 150, 48
    height = max(row * len(items) + 8, row)
    inner = width - left - right
    parts = [
        f'<svg class="bar-chart" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMidYMid meet" role="img" aria-label="{escape(label)}">'
    ]
    for i, (name, value, status) in enumerate(items):
        top = 4 + i * row
        parts.append(
            f'<text x="{left - 8}" y="{top + 16}" text-anchor="end" font-size="13" '
            f'fill="{INK}">{escape(name)}</text>'
            f'<rect x="{left}" y="{top + 4}" width="{inner}" height="{row - 8}" fill="{TRACK}"/>'
        )
        shown = "–"
        if value is not None and math.isfinite(value):
            share = min(max(value, 0.0), maximum) / maximum
            parts.append(
                f'<rect class="bar" x="{left}" y="{top + 4}" width="{_n(inner * share)}" '
                f'height="{row - 8}" fill="{colour(status)}"/>'
            )
            shown = f"{value:.0f}"
        parts.append(
            f'<text x="{left + inner + 6}" y="{top + 16}" font-size="12" fill="{MUTED}">'
            f"{escape(shown)}</text>"
        )
    parts.append("</svg>")
    return _markup(parts)
