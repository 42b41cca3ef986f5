"""Rate-distortion curves drawn as inline SVG: one polyline per series, axes with round ticks."""

import math
from collections.abc import Mapping, Sequence
from html import escape
from itertools import pairwise

WIDTH, HEIGHT = 680, 320
LEGEND_WIDTH = 220  # the legend sits right of the plot, never over the points
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 58, 16 + LEGEND_WIDTH, 28, 44
PALETTE = ("#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7d8c", "#57606a")
MARKERS = ("circle", "square", "diamond", "triangle")
MAX_MARKER, MARKER_STEP, MIN_MARKER = 9.0, 1.5, 2.5

Series = Mapping[str, Sequence[tuple[float, float]]]


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


def rd_chart(series: Series, title: str, x_label: str = "rate (bpp)", y_label: str = "PSNR (dB)") -> str:
    """An SVG document fragment plotting each series' (bpp, psnr) points sorted by rate."""
    points = [p for values in series.values() for p in values if all(map(math.isfinite, p))]
    if not points:
        return f'<p class="muted">{escape(title)}: no RD points.</p>'
    x_ticks = nice_ticks(min(p[0] for p in points), max(p[0] for p in points))
    y_ticks = nice_ticks(min(p[1] for p in points), max(p[1] for p in points))
    scale = _Scale(x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1])
    parts = [
        f'<svg class="rd-chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f'<text class="title" x="{MARGIN_LEFT}" y="18">{escape(title)}</text>',
        *_axes(scale, x_ticks, y_ticks, x_label, y_label),
    ]
    for index, (label, values) in enumerate(series.items()):
        parts.extend(_series(scale, index, label, sorted(p for p in values if all(map(math.isfinite, p)))))
    parts.append("</svg>")
    return "\n".join(parts)


class _Scale:
    def __init__(self, x0: float, x1: float, y0: float, y1: float) -> None:
        self.x0, self.x1, self.y0, self.y1 = x0, x1, y0, y1

    def x(self, value: float) -> float:
        span = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
        return MARGIN_LEFT + (value - self.x0) / ((self.x1 - self.x0) or 1) * span

    def y(self, value: float) -> float:
        span = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
        return HEIGHT - MARGIN_BOTTOM - (value - self.y0) / ((self.y1 - self.y0) or 1) * span


def _axes(scale: _Scale, x_ticks: list[float], y_ticks: list[float], x_label: str, y_label: str) -> list[str]:
    left, right = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    top, bottom = MARGIN_TOP, HEIGHT - MARGIN_BOTTOM
    out = [f'<rect class="plot" x="{left}" y="{top}" width="{right - left}" height="{bottom - top}"/>']
    for tick in x_ticks:
        x = scale.x(tick)
        out.append(f'<line class="grid" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}"/>')
        out.append(
            f'<text class="tick" x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{_fmt(tick)}</text>'
        )
    for tick in y_ticks:
        y = scale.y(tick)
        out.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}"/>')
        out.append(f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(tick)}</text>')
    out.append(
        f'<text class="label" x="{(left + right) / 2}" y="{HEIGHT - 8}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    out.append(
        f'<text class="label" transform="translate(14 {(top + bottom) / 2}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    return out


def _series(scale: _Scale, index: int, label: str, values: list[tuple[float, float]]) -> list[str]:
    """Hollow markers shrinking with the series index, so series that coincide (bit-exact decoders share the
    encoder's points) stay visible as concentric rings."""
    colour, marker = PALETTE[index % len(PALETTE)], MARKERS[(index // len(PALETTE)) % len(MARKERS)]
    size = max(MAX_MARKER - MARKER_STEP * index, MIN_MARKER)
    coords = [(scale.x(bpp), scale.y(psnr)) for bpp, psnr in values]
    out = [f'<g class="series" data-label="{escape(label)}"><title>{escape(label)}</title>']
    if len(coords) > 1 and _rises(values):  # points of different images that do not form a curve stay apart
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.2" '
            f'stroke-opacity="0.7"/>'
        )
    out.extend(_marker(marker, x, y, colour, size) for x, y in coords)
    legend_y = MARGIN_TOP + 14 + 16 * index
    legend_x = WIDTH - LEGEND_WIDTH + 8
    out.append(_marker(marker, legend_x, legend_y - 4, colour, 4.0))
    out.append(
        f'<text class="legend" x="{legend_x + 9}" y="{legend_y}" text-anchor="start">{escape(label)}</text>'
    )
    out.append("</g>")
    return out


def _rises(values: list[tuple[float, float]]) -> bool:
    return all(b[1] >= a[1] for a, b in pairwise(values))


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


def _fmt(value: float) -> str:
    return f"{value:.4g}"
