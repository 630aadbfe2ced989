"""The pages of one subject: a story or Threads post (its metrics across versions) and a Threads
profile (its days). Values Meta withheld stay withheld here: shown as such, never as 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from core.redaction import scrub
from dashboard.charts import Point, Series, line_chart
from dashboard.html import Html, export_links, heading, page, table, text
from dashboard.queries import Day
from models.snapshots import StoredValue as Value

BELOW_THRESHOLD = "below_threshold"


def withheld(value: float | None, flag: str | None) -> bool:
    return value is None or flag == BELOW_THRESHOLD


def shown(value: float | None, flag: str | None) -> Html | float:
    """A value as a cell: the number, or `withheld (<flag>)` in its own style."""
    if withheld(value, flag):
        return Html(f'<span class="withheld">withheld ({text(flag or "no value")})</span>')
    return Html(f"{text(value)} ({text(flag)})") if flag else float(value or 0.0)


def series_key(value: Value) -> str:
    if value.breakdown is None:
        return value.metric
    return f"{value.metric} · {value.breakdown}={value.dimension}"


def version_table(values: list[Value], final_id: int | None, keys: list[str]) -> Html:
    """One row per version (captured, slot, API or webhook, final?), one column per series."""
    cells: dict[int, dict[str, Html | float]] = {}
    heads: dict[int, Value] = {}
    for value in values:
        heads.setdefault(value.snapshot_id, value)
        cells.setdefault(value.snapshot_id, {})[series_key(value)] = shown(value.value, value.flag)
    rows = [
        [
            head.version,
            head.captured_at,
            head.slot,
            head.source,
            Html('<span class="final">final</span>') if snap == final_id else "",
            *(cells[snap].get(key, text(None)) for key in keys),
        ]
        for snap, head in heads.items()
    ]
    return table(("version", "captured", "slot", "source", "", *keys), rows, "versions")


def curves(values: list[Value], final_id: int | None) -> list[Html]:
    """A chart per metric (a line per breakdown dimension) and, under it, its table."""
    by_chart: dict[str, dict[str, list[Point]]] = {}
    for value in values:
        chart = value.metric if value.breakdown is None else f"{value.metric} by {value.breakdown}"
        kind = value.source + (" final" if value.snapshot_id == final_id else "")
        label = f"version {value.version}, {value.slot} ({value.source})"
        if withheld(value.value, value.flag):
            label += f", withheld: {value.flag or 'no value'}"
        point = Point(
            value.captured_at,
            None if withheld(value.value, value.flag) else value.value,
            kind,
            label,
        )
        by_chart.setdefault(chart, {}).setdefault(series_key(value), []).append(point)
    sections: list[Html] = []
    for chart, lines in sorted(by_chart.items(), key=lambda item: (" by " in item[0], item[0])):
        keys = list(lines)
        mine = [v for v in values if series_key(v) in lines]
        sections += [
            Html(f'<h2 id="{text(chart.replace(" ", "-"))}">{text(chart)}</h2>'),
            Html(line_chart(chart, [Series(k, p) for k, p in lines.items()])),
            version_table(mine, final_id, keys),
        ]
    return sections


LEGEND = Html(
    '<p class="legend"><span>● API version</span><span>■ webhook version</span>'
    "<span>large marker: the final capture</span><span>hollow on the axis: withheld</span></p>"
)


def facts(pairs: Iterable[tuple[str, object]]) -> Html:
    return table(("", ""), [[Html(f"<b>{text(k)}</b>"), v] for k, v in pairs], "facts")


def subject_page(
    title: str, media: Any, values: list[Value], *, platform: str, subject_type: str
) -> Html:
    """A story's or a Threads post's page: who, when, state; then every metric's curve."""
    about = facts(
        [
            ("account", media.account_name),
            ("posted", media.posted_at),
            ("expires", media.expires_at),
            ("capture state", media.capture_state),
            ("missed because", scrub(media.missed_reason) if media.missed_reason else None),
            ("versions", len({v.snapshot_id for v in values})),
        ]
    )
    exports = export_links(
        view="metric_history",
        platform=platform,
        subject_type=subject_type,
        subject_id=media.media_id,
    )
    return page(title, about, exports, LEGEND, *curves(values, media.final_snapshot_id))


def day_point(day: str, value: float | None, flag: str | None) -> Point:
    at = datetime.fromisoformat(str(day)).replace(tzinfo=UTC)
    return Point(at, None if withheld(value, flag) else value, "api", f"{day}")


def threads_user_page(user_id: str, owner: str | None, rows: list[Day]) -> Html:
    """Daily views and followers as curves, every plain metric by day, the latest demographics."""
    plain = [r for r in rows if r.breakdown is None]
    metrics = sorted({r.metric for r in plain})
    by_day: dict[str, dict[str, Html | float]] = {}
    for r in plain:
        by_day.setdefault(str(r.day), {})[r.metric] = shown(r.value, r.flag)
    charts = [
        Html(line_chart(f"{metric} per day", [Series(metric, points)]))
        for metric in ("views", "followers_count")
        if (points := [day_point(r.day, r.value, r.flag) for r in plain if r.metric == metric])
    ]
    return page(
        f"Threads profile {user_id}",
        facts([("account", owner), ("days", len(by_day))]),
        export_links(view="threads_user_daily", platform="threads", subject_id=user_id),
        *charts,
        heading("By day"),
        table(
            ("day", *metrics),
            [[d, *(c.get(m, text(None)) for m in metrics)] for d, c in by_day.items()],
            "days",
        ),
        *demographics(rows),
    )


def demographics(rows: list[Day]) -> list[Html]:
    """follower_demographics of the newest day that has them, by breakdown."""
    found = [r for r in rows if r.metric == "follower_demographics"]
    if not found:
        return [heading("Demographics"), text("none captured")]
    day = max(str(r.day) for r in found)
    latest = sorted((r for r in found if str(r.day) == day), key=_demography_order)
    cells = [[r.breakdown, r.dimension, shown(r.value, r.flag)] for r in latest]
    return [
        heading(f"Demographics on {day}"),
        table(("breakdown", "group", "followers"), cells, "demographics"),
    ]


def _demography_order(row: Day) -> tuple[str, float]:
    return (str(row.breakdown), -(row.value or 0.0))
