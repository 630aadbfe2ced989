"""Line charts as inline SVG, drawn by the server: no JavaScript, no CDN, works offline.

A chart is a few series of points on one time axis. A point whose value Meta withheld (flag
`below_threshold`, or no value) is drawn as a hollow marker on the baseline with a title saying
so, never as a zero; a point's `kind` becomes its CSS class (`api`, `webhook`, `final`), so
API and webhook versions are told apart by shape and colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 28
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")


@dataclass(frozen=True)
class Point:
    at: datetime
    value: float | None  # None: withheld or missing
    kind: str = "api"  # CSS classes, space-separated
    label: str = ""  # the hover title (version, slot, flag)


@dataclass(frozen=True)
class Series:
    name: str
    points: list[Point]


def _scale(low: float, high: float, size: int, start: int) -> tuple[float, float]:
    """(factor, offset) mapping [low, high] onto `size` pixels from `start`."""
    span = high - low or 1.0
    return size / span, start - low * size / span


def line_chart(title: str, series: list[Series]) -> str:
    """One SVG; `data-points` counts every point drawn (tests and screen readers use it)."""
    points = [p for s in series for p in s.points]
    if not points:
        return f'<p class="empty">{escape(title)}: no values yet</p>'
    times = [p.at.timestamp() for p in points]
    values = [p.value for p in points if p.value is not None] or [0.0]
    top = max(max(values), 1.0)
    fx, ox = _scale(min(times), max(times), WIDTH - LEFT - RIGHT, LEFT)
    fy, oy = _scale(0.0, top, -(HEIGHT - TOP - BOTTOM), HEIGHT - BOTTOM)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" data-points="{len(points)}" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        _axes(top, fy, oy, min(times), max(times)),
    ]
    for index, one in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        xy = [(p.at.timestamp() * fx + ox, p, (p.value or 0.0) * fy + oy) for p in one.points]
        drawn = " ".join(f"{x:.1f},{y:.1f}" for x, p, y in xy if p.value is not None)
        parts.append(
            f'<g class="series" data-name="{escape(one.name)}">'
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{drawn}"/>'
        )
        parts += [_marker(x, y, p, colour) for x, p, y in xy]
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _marker(x: float, y: float, point: Point, colour: str) -> str:
    withheld = point.value is None
    classes = f"{point.kind} withheld" if withheld else point.kind
    fill = "white" if withheld else colour
    radius = 5 if "final" in point.kind.split() else 3.5
    shape = (
        f'<rect x="{x - radius:.1f}" y="{y - radius:.1f}" width="{2 * radius}" '
        f'height="{2 * radius}"'
        if "webhook" in point.kind.split()
        else f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}"'
    )
    shown = "withheld" if withheld else f"{point.value:g}"
    return (
        f'{shape} class="point {escape(classes)}" fill="{fill}" stroke="{colour}">'
        f"<title>{escape(point.label)}: {shown}</title>"
        f"{'</rect>' if shape.startswith('<rect') else '</circle>'}"
    )


def _axes(top: float, fy: float, oy: float, first: float, last: float) -> str:
    base, peak = oy, top * fy + oy
    hours = (last - first) / 3600
    return (
        f'<g class="axes" stroke="#999" font-size="11" fill="#555">'
        f'<line x1="{LEFT}" y1="{base:.1f}" x2="{WIDTH - RIGHT}" y2="{base:.1f}"/>'
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base:.1f}"/>'
        f'<text x="{LEFT - 6}" y="{base:.1f}" text-anchor="end" stroke="none">0</text>'
        f'<text x="{LEFT - 6}" y="{peak + 4:.1f}" text-anchor="end" stroke="none">{top:g}</text>'
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" text-anchor="end" stroke="none">'
        f"+{hours:.1f} h</text></g>"
    )
