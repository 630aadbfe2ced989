"""The page of an Instagram account's own insights (`/accounts/{ig_user_id}/insights`): its
closed Meta days from `ig_account_daily` (curves and a table), views by media product type,
and the newest audience demographics from `ig_account_demographics`. Values Meta withheld or
refused are shown as such, never as 0; a day with no row was not fetched.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dashboard.charts import Series, line_chart
from dashboard.html import Html, export_links, heading, page, table, text
from dashboard.queries import Day
from dashboard.subjects import day_point, facts, shown

CURVES = ("reach", "views", "follower_count", "total_interactions")


@dataclass(frozen=True)
class Audience:
    """One row of the newest day of `ig_account_demographics`."""

    day: str
    metric: str
    timeframe: str
    breakdown: str
    dimension: str | None
    value: float | None
    flag: str | None


def _number(value: object) -> float | None:
    return None if value is None else float(str(value))


def account_days(conn: Connection, ig_user_id: str) -> list[Day]:
    """The account's rows of `ig_account_daily`, by day (Decimal on PostgreSQL: made float)."""
    stmt = sa.text(
        "SELECT day, metric, breakdown, dimension, value, flag FROM ig_account_daily "
        "WHERE ig_user_id = :user ORDER BY day, metric, breakdown, dimension"
    )
    return [
        Day(str(r.day), r.metric, r.breakdown, r.dimension, _number(r.value), r.flag)
        for r in conn.execute(stmt, {"user": ig_user_id})
    ]


def newest_audience(conn: Connection, ig_user_id: str) -> list[Audience]:
    """The newest day's demographics of the account, by metric, breakdown and size."""
    stmt = sa.text(
        "SELECT day, metric, timeframe, breakdown, dimension, value, flag "
        "FROM ig_account_demographics WHERE ig_user_id = :user AND day = "
        "(SELECT MAX(day) FROM ig_account_demographics WHERE ig_user_id = :user) "
        "ORDER BY metric, breakdown, value DESC"
    )
    return [
        Audience(
            str(r.day), r.metric, r.timeframe, r.breakdown, r.dimension, _number(r.value), r.flag
        )
        for r in conn.execute(stmt, {"user": ig_user_id})
    ]


def account_name(conn: Connection, ig_user_id: str) -> str | None:
    found = conn.execute(
        sa.text("SELECT name FROM account WHERE ig_user_id = :user"), {"user": ig_user_id}
    ).scalar_one_or_none()
    return None if found is None else str(found)


def account_insights_page(
    ig_user_id: str, owner: str | None, rows: list[Day], audience: list[Audience]
) -> Html:
    """Curves of the main daily metrics, every plain metric by day, views by media product
    type by day, then the newest demographics."""
    plain = [r for r in rows if r.breakdown is None]
    charts = [
        Html(line_chart(f"{metric} per day", [Series(metric, points)]))
        for metric in CURVES
        if (points := [day_point(r.day, r.value, r.flag) for r in plain if r.metric == metric])
    ]
    return page(
        f"Instagram account {ig_user_id}",
        facts([("account", owner), ("days", len({r.day for r in rows}))]),
        export_links(view="ig_account_daily", subject_id=ig_user_id),
        *charts,
        heading("By day"),
        _by_day(plain, "metric"),
        heading("Views by media product type"),
        _by_day(
            [r for r in rows if r.metric == "views" and r.breakdown == "media_product_type"],
            "dimension",
        ),
        *_audience(audience, ig_user_id),
    )


def _by_day(rows: list[Day], column: str) -> Html:
    """One row per day, one column per metric (or dimension)."""
    cells: dict[str, dict[str, Html | float]] = {}
    for r in rows:
        key = str(getattr(r, column))
        cells.setdefault(r.day, {})[key] = shown(r.value, r.flag)
    names = sorted({name for day in cells.values() for name in day})
    body = [[day, *(got.get(n, text("not fetched")) for n in names)] for day, got in cells.items()]
    return table(("day", *names), body, "days")


def _audience(audience: list[Audience], ig_user_id: str) -> list[Html]:
    if not audience:
        return [heading("Demographics"), text("none captured")]
    cells = [
        [a.metric, a.timeframe, a.breakdown, a.dimension, shown(a.value, a.flag)] for a in audience
    ]
    return [
        heading(f"Demographics on {audience[0].day}"),
        export_links(view="ig_account_demographics", subject_id=ig_user_id),
        table(("metric", "timeframe", "breakdown", "group", "accounts"), cells, "demographics"),
    ]
