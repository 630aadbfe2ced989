"""What bench/archive.py measures: the archive's size on disk, and each query's time.

Every documented view is asked filtered by account, by subject and by a 7-day window (target:
100 ms each), and the README's examples as written (unfiltered) and with a LIMIT (target: 1 s).
A query's time is PostgreSQL's own (`EXPLAIN (ANALYZE, BUFFERS)`: planning + execution),
the median of `repeats` runs after one warm-up, so the client's transfer is left out.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

FILTERED_MS, LIMITED_MS = 100.0, 1000.0
BEFORE_BYTES = 3173  # per snapshot, the measure of the schema before migration 0011


@dataclass(frozen=True)
class Query:
    name: str
    sql: str
    target_ms: float | None  # None: measured for the record (a README example as written)


def sample(engine: Engine) -> dict[str, str]:
    """The account, subjects and window the queries ask about: an account in the middle, one
    of its stories posted mid-way, the last 7 days of stories."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT a.id, a.ig_user_id, a.threads_user_id FROM account a"
                " ORDER BY a.id OFFSET (SELECT count(*) / 2 FROM account) LIMIT 1"
            )
        ).one()
        account, ig_user, threads_user = row
        until = conn.execute(
            sa.text("SELECT max(posted_at) FROM media WHERE subject_type = 'story'")
        ).scalar_one()
        story = _middle(conn, account, "story")
        post = _middle(conn, account, "threads_post")
    since: datetime = until - timedelta(days=7)
    day = since + timedelta(days=3)
    return {
        "account": str(account), "ig_user": ig_user, "threads_user": threads_user,
        "story": story, "post": post,
        "since": since.isoformat(), "until": until.isoformat(),
        "since_day": since.date().isoformat(), "until_day": until.date().isoformat(),
        "day": day.date().isoformat(), "next_day": (day + timedelta(days=1)).date().isoformat(),
    }  # fmt: skip


def _middle(conn: sa.Connection, account: int, subject_type: str) -> str:
    return str(
        conn.execute(
            sa.text(
                "SELECT media_id FROM media WHERE account_id = :a AND subject_type = :t"
                " ORDER BY posted_at OFFSET (SELECT count(*) / 2 FROM media"
                " WHERE account_id = :a AND subject_type = :t) LIMIT 1"
            ),
            {"a": account, "t": subject_type},
        ).scalar_one()
    )


def print_sizes(engine: Engine) -> None:
    """Bytes on disk (heap, TOAST and indexes of every partition) per snapshot and value."""
    with engine.connect() as conn:
        snapshots, values = conn.execute(
            sa.text("SELECT count(*), COALESCE(sum(cardinality(metric_keys)), 0) FROM snapshot")
        ).one()
        sizes = {t: _size(conn, t) for t in ("snapshot", "snapshot_raw", "metric_key")}
        account_days = conn.execute(
            sa.text(
                "SELECT (SELECT count(*) FROM account) * (SELECT round(extract(epoch FROM"
                " max(posted_at) - min(posted_at)) / 86400) FROM media"
                " WHERE subject_type = 'story')"
            )
        ).scalar_one()
        account_days = int(account_days)
        media = _size(conn, "media")
    total = sum(sizes.values())
    print(f"snapshots {snapshots:>14,}   metric values {values:,} ({values / snapshots:.1f} each)")
    for table, size in sizes.items():
        print(f"  {table:<14} {size / 1e6:>12,.1f} MB  {size / snapshots:>8,.1f} bytes/snapshot")
    print(f"  media (not counted) {media / 1e6:>6,.1f} MB")
    per = total / snapshots
    verdict = "met" if per <= 1200 else "MISSED"
    print(
        f"bytes per snapshot {per:>10,.0f}   (target <= 1,200: {verdict}; before {BEFORE_BYTES:,})"
    )
    print(f"bytes per metric value {total / values:>6,.1f}")
    print(
        f"GB per account-day {total / account_days / 1e9:>10.6f}   ({account_days:,} account-days)"
    )


def _size(conn: sa.Connection, table: str) -> int:
    """pg_total_relation_size over the table and all its partitions (a table that is not
    partitioned has no partition tree: its own size)."""
    return int(
        conn.execute(
            sa.text(
                "SELECT COALESCE((SELECT sum(pg_total_relation_size(relid))"
                " FROM pg_partition_tree(CAST(:t AS regclass))),"
                " pg_total_relation_size(CAST(:t AS regclass)))"
            ),
            {"t": table},
        ).scalar_one()
    )


_TIME = re.compile(r"(Planning|Execution) Time: ([\d.]+) ms")
_ROWS = re.compile(r"actual time=[\d.]+\.\.[\d.]+ rows=(\d+)")


def explain(conn: sa.Connection, sql: str) -> tuple[float, int, str]:
    """(planning + execution ms, rows of the top node, the plan) of one EXPLAIN ANALYZE."""
    lines = [r[0] for r in conn.execute(sa.text(f"EXPLAIN (ANALYZE, BUFFERS) {sql}"))]
    plan = "\n".join(lines)
    ms = sum(float(m.group(2)) for m in _TIME.finditer(plan))
    found = _ROWS.search(plan)
    return ms, int(found.group(1)) if found else 0, plan


def measure(engine: Engine, query: Query, repeats: int) -> tuple[float, int, str]:
    """The median of `repeats` runs after a warm-up; a single run when `repeats` is 1 (the
    unfiltered examples take minutes)."""
    with engine.connect() as conn:
        if repeats > 1:
            explain(conn, query.sql)  # warm-up
        runs = [explain(conn, query.sql) for _ in range(repeats)]
    ms = statistics.median(run[0] for run in runs)
    return ms, runs[-1][1], runs[-1][2]


def measure_all(
    engine: Engine, params: dict[str, str], repeats: int, groups: list[str]
) -> list[tuple[Query, float]]:
    """Time the queries of `groups`; print one line each, and the plan of each one over its
    target."""
    print(f"queries: account {params['account']}, story {params['story']}, 7 days "
          f"{params['since'][:16]} to {params['until'][:16]}; median of {repeats}")  # fmt: skip
    found = []
    for key in groups:
        title, queries = QUERY_GROUPS[key]
        runs = 1 if key == "readme" else repeats
        print(title if runs == repeats else f"{title}, one run each")
        for query in queries:
            filled = Query(query.name, query.sql.format(**params), query.target_ms)
            ms, rows, plan = measure(engine, filled, runs)
            print(f"  {query.name:<52} {ms:9.1f} ms {rows:>9,} rows  {_verdict(query, ms)}",
                  flush=True)  # fmt: skip
            if query.target_ms is not None and ms > query.target_ms:
                print("    " + plan.replace("\n", "\n    "))
            found.append((filled, ms))
    return found


def _verdict(query: Query, ms: float) -> str:
    if query.target_ms is None:
        return ""
    return f"(< {query.target_ms:,.0f} ms: {'met' if ms < query.target_ms else 'MISSED'})"


_F, _L = FILTERED_MS, LIMITED_MS
_STORY = "subject_type = 'story'"
_WEEK = "captured_at >= '{since}' AND captured_at < '{until}'"
_POSTED_WEEK = "posted_at >= '{since}' AND posted_at < '{until}'"

FILTERED = [
    Query("metric_history by subject (one story's history)",
          "SELECT * FROM metric_history WHERE subject_id = '{story}' ORDER BY version", _F),
    Query("metric_history by account, 7 days",
          f"SELECT * FROM metric_history WHERE account_id = {{account}} AND {_WEEK}", _F),
    Query("metric_history reach by day, account, 7 days",
          "SELECT captured_at::date AS day, max(value) AS reach FROM metric_history"
          f" WHERE account_id = {{account}} AND {_STORY} AND metric = 'reach'"
          f" AND breakdown IS NULL AND {_WEEK} GROUP BY 1 ORDER BY 1", _F),
    Query("story_latest by subject",
          "SELECT * FROM story_latest WHERE subject_id = '{story}'", _F),
    Query("story_latest by account, 7 days",
          f"SELECT * FROM story_latest WHERE account_id = {{account}} AND {_POSTED_WEEK}", _F),
    Query("story_final by subject",
          "SELECT * FROM story_final WHERE subject_id = '{story}'", _F),
    Query("story_final by account, one day",
          "SELECT * FROM story_final WHERE account_id = {account}"
          " AND posted_at >= '{day}' AND posted_at < '{next_day}'", _F),
    Query("story_final reach by day, account, 7 days",
          "SELECT posted_at::date AS day, sum(value) AS reach FROM story_final"
          f" WHERE account_id = {{account}} AND metric = 'reach' AND breakdown IS NULL"
          f" AND {_POSTED_WEEK} GROUP BY 1 ORDER BY 1", _F),
    Query("threads_user_daily by account, 7 days",
          "SELECT * FROM threads_user_daily WHERE account_id = {account}"
          " AND day >= '{since_day}' AND day < '{until_day}'", _F),
    Query("threads_user_daily by subject (user)",
          "SELECT * FROM threads_user_daily WHERE threads_user_id = '{threads_user}'", _F),
    Query("threads_post_latest by subject",
          "SELECT * FROM threads_post_latest WHERE media_id = '{post}'", _F),
    Query("threads_post_latest by account, 7 days",
          f"SELECT * FROM threads_post_latest WHERE account_id = {{account}} AND {_POSTED_WEEK}",
          _F),
    Query("ig_account_daily by account, 7 days (no rows generated)",
          "SELECT * FROM ig_account_daily WHERE account_id = {account}"
          " AND day >= '{since_day}'", _F),
    Query("ig_account_demographics by subject (no rows generated)",
          "SELECT * FROM ig_account_demographics WHERE ig_user_id = '{ig_user}'", _F),
    Query("media_latest by account (no rows generated)",
          "SELECT * FROM media_latest WHERE account_id = {account}", _F),
]  # fmt: skip

WINDOW = [
    Query("story_latest 7 days, every account, LIMIT 1000",
          f"SELECT * FROM story_latest WHERE {_POSTED_WEEK} LIMIT 1000", _F),
    Query("story_final reach by day, every account, 7 days",
          "SELECT posted_at::date AS day, sum(value) AS reach FROM story_final"
          f" WHERE metric = 'reach' AND breakdown IS NULL AND {_POSTED_WEEK}"
          " GROUP BY 1 ORDER BY 1", None),
    Query("metric_history 7 days, every account, LIMIT 1000",
          f"SELECT * FROM metric_history WHERE {_WEEK} LIMIT 1000", _F),
]  # fmt: skip

# The README's examples ("Querying") as written, over the whole archive.
README = [
    Query("metric_history: reach of each story, every version",
          "SELECT subject_id, version, captured_at, source, value FROM metric_history"
          " WHERE subject_type = 'story' AND metric = 'reach'"
          " ORDER BY subject_id, version DESC", None),
    Query("story_latest: views and reach of each story",
          "SELECT subject_id, posted_at, metric, value, flag, source, version FROM story_latest"
          " WHERE metric IN ('views', 'reach') AND breakdown IS NULL"
          " ORDER BY posted_at DESC, subject_id, metric", None),
    Query("story_final: final reach, API and webhook",
          "SELECT subject_id, capture_state, value AS api_reach, webhook_value AS webhook_reach"
          " FROM story_final WHERE metric = 'reach' AND breakdown IS NULL"
          " ORDER BY posted_at DESC", None),
    Query("threads_user_daily: likes over 30 days",
          "SELECT threads_user_id, SUM(value) AS likes_last_30_days FROM threads_user_daily"
          " WHERE metric = 'likes' AND day >= to_char(now() - interval '30 days', 'YYYY-MM-DD')"
          " GROUP BY threads_user_id", None),
    Query("threads_user_daily: follower growth per day",
          "SELECT threads_user_id, day, value AS followers, value - LAG(value) OVER"
          " (PARTITION BY account_id, threads_user_id ORDER BY day) AS gained"
          " FROM threads_user_daily WHERE metric = 'followers_count'"
          " ORDER BY threads_user_id, day", None),
    Query("threads_post_latest: best posts of 30 days",
          "SELECT media_id, posted_at, permalink, text, value AS views FROM threads_post_latest"
          " WHERE metric = 'views' AND posted_at >= now() - interval '30 days'"
          " ORDER BY value DESC LIMIT 10", _L),
    Query("ig_account_daily: reach and story views, 4 weeks",
          "SELECT day, MAX(value) FILTER (WHERE metric = 'reach' AND breakdown IS NULL) AS reach,"
          " MAX(value) FILTER (WHERE metric = 'views' AND dimension = 'STORY') AS story_views,"
          " MAX(flag) AS flag FROM ig_account_daily WHERE ig_user_id = '{ig_user}'"
          " AND day >= to_char(now() - interval '28 days', 'YYYY-MM-DD')"
          " GROUP BY day ORDER BY day", _F),
    Query("ig_account_daily: new followers per week",
          "SELECT ig_user_id, MIN(day) AS week_from, SUM(value) AS new_followers"
          " FROM ig_account_daily WHERE metric = 'follower_count'"
          " GROUP BY ig_user_id, (day::date - date '2026-01-05') / 7 ORDER BY week_from", None),
    Query("ig_account_demographics: followers by country",
          "SELECT dimension AS country, value AS followers FROM ig_account_demographics"
          " WHERE ig_user_id = '{ig_user}' AND metric = 'follower_demographics'"
          " AND breakdown = 'country' AND day = (SELECT MAX(day) FROM ig_account_demographics"
          " WHERE ig_user_id = '{ig_user}') ORDER BY value DESC", _F),
    Query("media_latest: reels by reach",
          "SELECT r.media_id, r.posted_at, r.value AS reach, w.value / 1000.0 AS avg_watch_s"
          " FROM media_latest r JOIN media_latest w ON w.media_id = r.media_id"
          " AND w.metric = 'ig_reels_avg_watch_time' WHERE r.subject_type = 'reel'"
          " AND r.metric = 'reach' AND r.breakdown IS NULL ORDER BY r.value DESC", None),
    Query("metric_history: a post's likes curve",
          "SELECT version, captured_at, value FROM metric_history WHERE subject_type = 'feed'"
          " AND subject_id = '17900000000000001' AND metric = 'likes' ORDER BY version", _F),
]  # fmt: skip

# The README's examples as proposed: the same questions for one account or a recent window,
# or the newest rows with a LIMIT (the text of README.md "Querying", ids filled in).
_DAYS_AGO = "TIMESTAMPTZ '{until}' - interval '{n} days'"  # README: now() - interval 'n days'
PROPOSED = [
    Query("metric_history: one account's story reach, 7 days",
          "SELECT subject_id, version, captured_at, source, value FROM metric_history"
          " WHERE account_id = {account} AND subject_type = 'story' AND metric = 'reach'"
          f" AND captured_at >= {_DAYS_AGO.replace('{n}', '7')}"
          " ORDER BY subject_id, version DESC", _F),
    Query("metric_history: reach of each story, LIMIT 100",
          "SELECT subject_id, version, captured_at, source, value FROM metric_history"
          " WHERE subject_type = 'story' AND metric = 'reach'"
          " ORDER BY subject_id DESC, version DESC LIMIT 100", _L),
    Query("story_latest: one account's stories, 7 days",
          "SELECT subject_id, posted_at, metric, value, flag, source, version FROM story_latest"
          " WHERE account_id = {account} AND metric IN ('views', 'reach') AND breakdown IS NULL"
          f" AND posted_at >= {_DAYS_AGO.replace('{n}', '7')}"
          " ORDER BY posted_at DESC, subject_id, metric", _F),
    Query("story_latest: the newest stories, LIMIT 100",
          "SELECT subject_id, posted_at, metric, value, flag, source, version FROM story_latest"
          " WHERE metric IN ('views', 'reach') AND breakdown IS NULL"
          " ORDER BY posted_at DESC, subject_id, metric LIMIT 100", _L),
    Query("story_final: one account's final reach, 7 days",
          "SELECT subject_id, capture_state, value AS api_reach, webhook_value AS webhook_reach"
          " FROM story_final WHERE account_id = {account} AND metric = 'reach'"
          f" AND breakdown IS NULL AND posted_at >= {_DAYS_AGO.replace('{n}', '7')}"
          " ORDER BY posted_at DESC", _F),
    Query("story_final: the newest stories' final reach, LIMIT 100",
          "SELECT subject_id, capture_state, value AS api_reach, webhook_value AS webhook_reach"
          " FROM story_final WHERE metric = 'reach' AND breakdown IS NULL"
          " ORDER BY posted_at DESC LIMIT 100", _L),
    Query("threads_user_daily: one account's likes, 30 days",
          "SELECT threads_user_id, SUM(value) AS likes_last_30_days FROM threads_user_daily"
          " WHERE account_id = {account} AND metric = 'likes'"
          " AND day >= to_char(TIMESTAMPTZ '{until}' - interval '30 days', 'YYYY-MM-DD')"
          " GROUP BY threads_user_id", _F),
    Query("threads_user_daily: one account's follower growth",
          "SELECT threads_user_id, day, value AS followers, value - LAG(value) OVER"
          " (PARTITION BY account_id, threads_user_id ORDER BY day) AS gained"
          " FROM threads_user_daily WHERE account_id = {account} AND metric = 'followers_count'"
          " ORDER BY threads_user_id, day", _F),
    Query("threads_post_latest: one account's best posts, 30 days",
          "SELECT media_id, posted_at, permalink, text, value AS views FROM threads_post_latest"
          " WHERE account_id = {account} AND metric = 'views'"
          f" AND posted_at >= {_DAYS_AGO.replace('{n}', '30')} ORDER BY value DESC LIMIT 10", _F),
    Query("threads_post_latest: best posts of 7 days, every account",
          "SELECT media_id, posted_at, permalink, text, value AS views FROM threads_post_latest"
          f" WHERE metric = 'views' AND posted_at >= {_DAYS_AGO.replace('{n}', '7')}"
          " ORDER BY value DESC LIMIT 10", _L),
    Query("ig_account_daily: one account's new followers per week",
          "SELECT ig_user_id, MIN(day) AS week_from, SUM(value) AS new_followers"
          " FROM ig_account_daily WHERE ig_user_id = '{ig_user}' AND metric = 'follower_count'"
          " GROUP BY ig_user_id, (day::date - date '2026-01-05') / 7 ORDER BY week_from", _F),
    Query("media_latest: one account's reels by reach",
          "SELECT r.media_id, r.posted_at, r.value AS reach, w.value / 1000.0 AS avg_watch_s"
          " FROM media_latest r JOIN media_latest w ON w.media_id = r.media_id"
          " AND w.metric = 'ig_reels_avg_watch_time' WHERE r.account_id = {account}"
          " AND r.subject_type = 'reel' AND r.metric = 'reach' AND r.breakdown IS NULL"
          " ORDER BY r.value DESC", _F),
]  # fmt: skip

QUERY_GROUPS = {
    "views": ("filtered by account or subject (target < 100 ms)", FILTERED),
    "window": ("a 7-day window over every account", WINDOW),
    "readme": ("README examples as written before (unfiltered; for the record)", README),
    "proposed": (
        "README examples as proposed: filtered (< 100 ms) or with a LIMIT (< 1 s)",
        PROPOSED,
    ),
}
