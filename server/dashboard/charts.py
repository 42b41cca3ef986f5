"""Rate-distortion charts drawn as inline SVG: one line per curve (or a scatter of per-image points), axes
with round ticks, and a legend right of the plot that grows the figure rather than lose an entry."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from itertools import pairwise

WIDTH, HEIGHT = 740, 320
LEGEND_WIDTH = 280  # the legend sits right of the plot, never over the points
LEGEND_ROW, LEGEND_CHARS = 16, 40  # a longer label wraps onto a second row, then is cut (whole in <title>)
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 58, 16 + LEGEND_WIDTH, 28, 44
PALETTE = ("#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7d8c", "#57606a")
ANCHOR_COLOUR = "#6e7781"
MARKERS = ("circle", "square", "diamond", "triangle")
MAX_MARKER, MARKER_STEP, MIN_MARKER = 9.0, 1.5, 2.5
CURVE_MARKER, ANCHOR_MARKER = 7.0, 3.5
MIN_X_SPAN, MIN_Y_SPAN = 0.05, 0.01  # of the largest value: a rate axis spans 5 %, a quality axis 1 % or more

Point = tuple[float, float]


@dataclass(frozen=True)
class Line:
    """One legend entry: a curve (points joined in rate order), a scatter (per-image points, unjoined), or an
    anchor (JPEG, WebP: dashed, grey)."""

    label: str
    points: Sequence[Point]
    joined: bool = True
    anchor: bool = False


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (at least two)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high <= low:
        low, high = low - 0.5, high + 0.5
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 10))
    return ticks


def rd_chart(
    lines: Sequence[Line], title: str, x_label: str = "rate (bpp)", y_label: str = "PSNR (dB)"
) -> str:
    """An SVG document fragment plotting every line, each with one legend entry."""
    lines = [Line(ln.label, sorted(p for p in ln.points if _finite(p)), ln.joined, ln.anchor) for ln in lines]
    points = [p for line in lines for p in line.points]
    if not points:
        return f'<p class="muted">{escape(title)}: no RD points.</p>'
    texts = [legend_text(line.label) for line in lines]
    height = max(HEIGHT, MARGIN_TOP + LEGEND_ROW * sum(map(len, texts)) + 8 + MARGIN_BOTTOM)
    x_ticks = nice_ticks(*_widened([p[0] for p in points], MIN_X_SPAN))
    y_ticks = nice_ticks(*_widened([p[1] for p in points], MIN_Y_SPAN))
    scale = _Scale(x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1], height)
    parts = [
        f'<svg class="rd-chart" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f'<text class="title" x="{MARGIN_LEFT}" y="18">{escape(title)}</text>',
        *_axes(scale, x_ticks, y_ticks, x_label, y_label),
    ]
    curve_index, legend_row = 0, 0
    for row, (line, text) in enumerate(zip(lines, texts, strict=True)):
        parts.extend(_line(scale, row, curve_index, line))
        parts.extend(_legend_entry(row, curve_index, line, text, legend_row))
        curve_index += not line.anchor
        legend_row += len(text)
    parts.append("</svg>")
    return "\n".join(parts)


class _Scale:
    def __init__(self, x0: float, x1: float, y0: float, y1: float, height: int) -> None:
        self.x0, self.x1, self.y0, self.y1, self.height = x0, x1, y0, y1, height

    def x(self, value: float) -> float:
        span = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
        return MARGIN_LEFT + (value - self.x0) / ((self.x1 - self.x0) or 1) * span

    def y(self, value: float) -> float:
        span = self.height - MARGIN_TOP - MARGIN_BOTTOM
        return self.height - MARGIN_BOTTOM - (value - self.y0) / ((self.y1 - self.y0) or 1) * span


def _axes(scale: _Scale, x_ticks: list[float], y_ticks: list[float], x_label: str, y_label: str) -> list[str]:
    left, right = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    top, bottom = MARGIN_TOP, scale.height - MARGIN_BOTTOM
    out = [f'<rect class="plot" x="{left}" y="{top}" width="{right - left}" height="{bottom - top}"/>']
    for tick, text in zip(x_ticks, tick_labels(x_ticks), strict=True):
        x = scale.x(tick)
        out.append(f'<line class="grid" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}"/>')
        out.append(f'<text class="tick" x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{text}</text>')
    for tick, text in zip(y_ticks, tick_labels(y_ticks), strict=True):
        y = scale.y(tick)
        out.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}"/>')
        out.append(f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{text}</text>')
    out.append(
        f'<text class="label" x="{(left + right) / 2}" y="{scale.height - 8}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    out.append(
        f'<text class="label" transform="translate(14 {(top + bottom) / 2}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    return out


def _line(scale: _Scale, row: int, index: int, line: Line) -> list[str]:
    """Hollow markers that shrink with the line's index and change shape, so lines that coincide (an int16
    curve on its float twin's, bit-exact decoders on the encoder's points) stay visible as nested rings."""
    colour, marker = _style(row, index, line)
    if line.anchor:
        size = ANCHOR_MARKER
    else:
        size = max((CURVE_MARKER if line.joined else MAX_MARKER) - MARKER_STEP * index, MIN_MARKER)
    coords = [(scale.x(bpp), scale.y(quality)) for bpp, quality in line.points]
    kind = "anchor" if line.anchor else "curve" if line.joined else "scatter"
    out = [f'<g class="series {kind}" data-label="{escape(line.label)}"><title>{escape(line.label)}</title>']
    if line.joined and len(coords) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        dash = ' stroke-dasharray="5 3"' if line.anchor else ""
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.4"{dash} '
            f'stroke-opacity="0.8"/>'
        )
    out.extend(_marker(marker, x, y, colour, size) for x, y in coords)
    out.append("</g>")
    return out


def _style(row: int, index: int, line: Line) -> tuple[str, str]:
    """(colour, marker) of a line: anchors grey, each curve its own colour, shapes cycling."""
    colour = ANCHOR_COLOUR if line.anchor else PALETTE[index % len(PALETTE)]
    return colour, MARKERS[(row if line.anchor else index) % len(MARKERS)]


def _legend_entry(row: int, index: int, line: Line, text: list[str], legend_row: int) -> list[str]:
    colour, marker = _style(row, index, line)
    x, y = WIDTH - LEGEND_WIDTH + 8, MARGIN_TOP + 14 + LEGEND_ROW * legend_row
    rows = "".join(
        f'<tspan x="{x + 9}" dy="{LEGEND_ROW}">{escape(part)}</tspan>' if n else escape(part)
        for n, part in enumerate(text)
    )
    return [
        f'<g class="legend-item" data-label="{escape(line.label)}"><title>{escape(line.label)}</title>',
        _marker(marker, x, y - 4, colour, 4.0),
        f'<text class="legend-entry" x="{x + 9}" y="{y}" text-anchor="start">{rows}</text></g>',
    ]


def legend_text(label: str) -> list[str]:
    """The label on one legend row, or two split at a space; what is still too long ends in an ellipsis."""
    if len(label) <= LEGEND_CHARS:
        return [label]
    split = label.rfind(" ", 0, LEGEND_CHARS + 1)
    first, rest = (
        (label[:split], label[split + 1 :]) if split > 0 else (label[:LEGEND_CHARS], label[LEGEND_CHARS:])
    )
    return [first, rest if len(rest) <= LEGEND_CHARS else rest[: LEGEND_CHARS - 1] + "…"]


def _finite(point: Point) -> bool:
    return all(map(math.isfinite, point))


def _marker(kind: str, x: float, y: float, colour: str, r: float) -> str:
    paint = f'fill="none" stroke="{colour}" stroke-width="1.6"'
    if kind == "square":
        return f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r:.1f}" height="{2 * r:.1f}" {paint}/>'
    if kind == "diamond":
        return (
            f'<polygon points="{x:.1f},{y - r:.1f} {x + r:.1f},{y:.1f} {x:.1f},{y + r:.1f} '
            f'{x - r:.1f},{y:.1f}" {paint}/>'
        )
    if kind == "triangle":
        return (
            f'<polygon points="{x:.1f},{y - r:.1f} {x + r:.1f},{y + r * 0.8:.1f} '
            f'{x - r:.1f},{y + r * 0.8:.1f}" {paint}/>'
        )
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" {paint}/>'


def tick_labels(ticks: list[float]) -> list[str]:
    """The fewest decimals that tell every tick apart (29.315, 29.32, ... rather than 29.32 four times)."""
    step = min((b - a for a, b in pairwise(ticks)), default=1.0)
    for decimals in range(10):
        labels = [f"{tick:.{decimals}f}" for tick in ticks]
        if all(abs(float(label) - tick) <= step * 1e-3 for label, tick in zip(labels, ticks, strict=True)):
            return labels
    return [f"{tick:g}" for tick in ticks]


def _widened(values: list[float], min_span: float) -> tuple[float, float]:
    """The values' range, widened around its middle to at least `min_span` of the largest magnitude, so
    points a thousandth of a dB apart are drawn together, not at opposite corners."""
    low, high = min(values), max(values)
    span = min_span * max(abs(low), abs(high))
    if high - low >= span:
        return low, high
    middle = (low + high) / 2
    return middle - span / 2, middle + span / 2
