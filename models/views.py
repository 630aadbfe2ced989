"""The SQL views that are the public query surface, as migration 0011 created them (version 2:
the values of a snapshot stored together, models.snapshots), and the columns each keeps.

The columns are the contract: a changed view gets a new constant and a migration that
replaces it with the same columns. Earlier versions are frozen in models.views_v1.

Each view is written once as a template and rendered per dialect (`render`): PostgreSQL
unfolds a snapshot's values with `unnest`, SQLite with `json_each`. The views of one subject
per row of `media` (story_latest, story_final, threads_post_latest, media_latest) are driven
from `media` with per-subject lookups on PostgreSQL, so that a filter on the account, the
subject or `posted_at` costs the stories it selects, not the whole history; SQLite keeps the
simpler window form. A snapshot is never captured before its subject was posted; story_final
says so (`{since_posted}`, a day of slack for clocks) so that PostgreSQL skips older
partitions, and leaves out a snapshot dated earlier (a wrong clock; metric_history keeps it).
The newest-value lookups leave the bound out: with it the planner ANDs the BRIN index on
`captured_at` into every lookup, which cost 0.3-0.6 ms per subject (bench/archive.py: the
newest Threads posts of 7 days took 3.7 s with it, 0.8 s without), far more than probing the
subject index of the older months.
"""

from __future__ import annotations

# --- Rendering ------------------------------------------------------------------------------

# How a snapshot `s`'s values unfold into rows `m` (position `{n}`) with their key `k`.
_UNFOLD = {
    "postgresql": "CROSS JOIN LATERAL unnest(s.metric_keys, s.metric_values, s.end_times,"
    " s.flags) WITH ORDINALITY AS m(key_id, value, end_time, flag, n)"
    " JOIN metric_key k ON k.id = m.key_id",
    "sqlite": "JOIN json_each(s.metric_keys) j JOIN metric_key k ON k.id = j.value",
}
_AT = "'$[' || j.key || ']'"
_FIELDS = {
    "postgresql": {
        "{value}": "m.value",
        "{end_time}": "m.end_time",
        "{flag}": "m.flag",
        "{n}": "m.n",
    },
    "sqlite": {
        "{value}": f"json_extract(s.metric_values, {_AT})",
        "{end_time}": f"json_extract(s.end_times, {_AT})",
        "{flag}": f"json_extract(s.flags, {_AT})",
        "{n}": "j.key",
    },
}
# The UTC day a value belongs to. A series value's `end_time` is the END of its day (midnight
# Pacific, 07:00 or 08:00 UTC the next day), so it belongs to the day before its end_time; a
# value without end_time belongs to the day it was captured. PostgreSQL converts to UTC
# itself, so the session's time zone never moves a day.
_DAY = {
    "sqlite": "COALESCE(date({end_time}, '-1 day'), date(s.captured_at))",
    "postgresql": "to_char(COALESCE({end_time} - interval '1 day', s.captured_at)"
    " AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
}
_SINCE_POSTED = {
    "postgresql": "s.captured_at >= COALESCE(md.posted_at - interval '1 day', '-infinity')",
    "sqlite": "(md.posted_at IS NULL OR s.captured_at >= datetime(md.posted_at, '-1 day'))",
}
_KEY_COLUMNS = (
    "k.metric AS metric, NULLIF(k.breakdown, '') AS breakdown, NULLIF(k.dimension, '') AS dimension"
)


def render(template: str, dialect: str) -> str:
    """A view template as `dialect` (postgresql or sqlite) spells it."""
    sql = template.replace("{day}", _DAY[dialect]).replace("{values}", _UNFOLD[dialect])
    sql = sql.replace("{since_posted}", _SINCE_POSTED[dialect]).replace("{key}", _KEY_COLUMNS)
    for field, spelled in _FIELDS[dialect].items():
        sql = sql.replace(field, spelled)
    return sql


# --- metric_history ---------------------------------------------------------------------------

_METRIC_HISTORY = """
CREATE VIEW metric_history AS
SELECT s.account_id   AS account_id,
       s.platform     AS platform,
       s.subject_type AS subject_type,
       s.subject_id   AS subject_id,
       s.id           AS snapshot_id,
       s.version      AS version,
       s.captured_at  AS captured_at,
       s.source       AS source,
       {key},
       {end_time}     AS end_time,
       {value}        AS value,
       {flag}         AS flag
FROM snapshot s
{values}
"""

# --- One row per subject and key, from the highest version holding it ------------------------
# A later webhook version wins for the metrics it carries, while metrics only the API returns
# keep their last API value; the value's position breaks ties within one snapshot.

# PostgreSQL: per subject row of `media`, its snapshots' values, the newest per key.
_LATEST_PG = """
CREATE VIEW {name} AS
SELECT {media_columns},
       x.snapshot_id AS snapshot_id, x.version AS version, x.captured_at AS captured_at,
       {extra_out}{key}, x.value AS value, x.flag AS flag
FROM media md
CROSS JOIN LATERAL (
    SELECT DISTINCT ON (m.key_id) m.key_id AS key_id, s.id AS snapshot_id,
           s.version AS version, s.captured_at AS captured_at, s.source AS source,
           m.value AS value, m.flag AS flag
    FROM snapshot s
    CROSS JOIN LATERAL unnest(s.metric_keys, s.metric_values, s.flags)
        WITH ORDINALITY AS m(key_id, value, flag, n)
    WHERE s.subject_id = md.media_id AND s.platform = md.platform
      AND s.subject_type = md.subject_type AND s.kind = 'insights'
    ORDER BY m.key_id, s.version DESC, m.n DESC
) x
JOIN metric_key k ON k.id = x.key_id
WHERE {media_where}
"""

# SQLite: the same rows ranked over every snapshot of the kind.
_LATEST_SQLITE = """
CREATE VIEW {name} AS
SELECT {outer_columns}
FROM (
    SELECT {media_columns},
           s.id AS snapshot_id, s.version AS version, s.captured_at AS captured_at,
           {extra_in}{key}, {value} AS value, {flag} AS flag,
           ROW_NUMBER() OVER (
               PARTITION BY s.subject_id, k.id ORDER BY s.version DESC, {n} DESC
           ) AS pick
    FROM snapshot s
    {values}
    JOIN media md ON md.platform = s.platform AND md.media_id = s.subject_id
    WHERE s.kind = 'insights' AND {media_where}
) ranked
WHERE pick = 1
"""


def _latest(
    name: str, media_columns: str, media_where: str, columns: tuple[str, ...]
) -> dict[str, str]:
    with_source = "source" in columns
    parts = {
        "{name}": name,
        "{media_columns}": media_columns,
        "{media_where}": media_where,
        "{outer_columns}": ", ".join(columns),
    }
    pg = _LATEST_PG.replace("{extra_out}", "x.source AS source, " if with_source else "")
    lite = _LATEST_SQLITE.replace("{extra_in}", "s.source AS source, " if with_source else "")
    for field, text in parts.items():
        pg, lite = pg.replace(field, text), lite.replace(field, text)
    return {"postgresql": render(pg, "postgresql"), "sqlite": render(lite, "sqlite")}


STORY_LATEST_COLUMNS = (
    "account_id",
    "subject_id",
    "posted_at",
    "expires_at",
    "snapshot_id",
    "version",
    "captured_at",
    "source",
    "metric",
    "breakdown",
    "dimension",
    "value",
    "flag",
)

STORY_LATEST = _latest(
    "story_latest",
    "md.account_id AS account_id, md.media_id AS subject_id, md.posted_at AS posted_at,"
    " md.expires_at AS expires_at",
    "md.platform = 'instagram' AND md.subject_type = 'story'",
    STORY_LATEST_COLUMNS,
)

# Threads posts: lifetime counters, so the newest capture is the current figure. Reposts
# (REPOST_FACADE, capture_state 'skipped') have no insights and so no rows.
# The columns every newest-value view ends with, after its subject's own.
_NEWEST_VALUE = (
    "snapshot_id",
    "version",
    "captured_at",
    "metric",
    "breakdown",
    "dimension",
    "value",
    "flag",
)

THREADS_POST_LATEST_COLUMNS = (
    "account_id",
    "media_id",
    "posted_at",
    "permalink",
    "text",
    "media_type",
    "capture_state",
    *_NEWEST_VALUE,
)

THREADS_POST_LATEST = _latest(
    "threads_post_latest",
    "md.account_id AS account_id, md.media_id AS media_id, md.posted_at AS posted_at,"
    " md.permalink AS permalink, md.caption AS text, md.media_type AS media_type,"
    " md.capture_state AS capture_state",
    "md.platform = 'threads' AND md.subject_type = 'threads_post'",
    THREADS_POST_LATEST_COLUMNS,
)

# Feed posts and Reels: lifetime totals; a metric the media refused is null with flag
# 'not_supported', one Meta withheld null with 'unavailable'. Media Meta gives no insights
# for (capture_state 'skipped') have no rows.
MEDIA_LATEST_COLUMNS = (
    "account_id",
    "subject_type",
    "media_id",
    "media_product_type",
    "media_type",
    "posted_at",
    "permalink",
    "caption",
    "capture_state",
    *_NEWEST_VALUE,
)

MEDIA_LATEST = _latest(
    "media_latest",
    "md.account_id AS account_id, md.subject_type AS subject_type, md.media_id AS media_id,"
    " md.media_product_type AS media_product_type, md.media_type AS media_type,"
    " md.posted_at AS posted_at, md.permalink AS permalink, md.caption AS caption,"
    " md.capture_state AS capture_state",
    "md.platform = 'instagram' AND md.subject_type IN ('feed', 'reel')",
    MEDIA_LATEST_COLUMNS,
)

# --- story_final ------------------------------------------------------------------------------
# Per story, the values as they stood at expiry: the last API snapshot captured before
# `expires_at` (normally slot 'final'; an earlier one when the final capture was missed),
# with the webhook's value for the same key beside it. Keys only the webhook has (its older
# names: impressions, taps_forward, ...) get rows of their own with the API columns null, and
# so does every webhook value of a story with no API capture before expiry.

STORY_FINAL_COLUMNS = (
    "account_id",
    "subject_id",
    "posted_at",
    "expires_at",
    "capture_state",
    "snapshot_id",
    "version",
    "captured_at",
    "metric",
    "breakdown",
    "dimension",
    "value",
    "flag",
    "webhook_value",
    "webhook_flag",
)

_STORY_SNAPSHOTS = (
    "s.subject_id = md.media_id AND s.platform = 'instagram' AND s.subject_type = 'story'"
    " AND s.kind = 'insights' AND {since_posted}"
)

_STORY_FINAL_PG = f"""
CREATE VIEW story_final AS
SELECT md.account_id AS account_id, md.media_id AS subject_id, md.posted_at AS posted_at,
       md.expires_at AS expires_at, md.capture_state AS capture_state,
       CASE WHEN x.in_api THEN f.id END AS snapshot_id,
       CASE WHEN x.in_api THEN f.version END AS version,
       CASE WHEN x.in_api THEN f.captured_at END AS captured_at,
       {{key}}, x.value AS value, x.flag AS flag,
       x.webhook_value AS webhook_value, x.webhook_flag AS webhook_flag
FROM media md
LEFT JOIN LATERAL (
    SELECT s.id, s.version, s.captured_at, s.metric_keys, s.metric_values, s.flags
    FROM snapshot s
    WHERE {_STORY_SNAPSHOTS} AND s.source = 'api' AND s.captured_at < md.expires_at
    ORDER BY s.version DESC
    LIMIT 1
) f ON true
LEFT JOIN LATERAL (
    SELECT s.metric_keys, s.metric_values, s.flags
    FROM snapshot s
    WHERE {_STORY_SNAPSHOTS} AND s.slot = 'webhook'
    ORDER BY s.version DESC
    LIMIT 1
) h ON true
CROSS JOIN LATERAL (
    SELECT COALESCE(a.key_id, w.key_id) AS key_id, a.key_id IS NOT NULL AS in_api,
           a.value AS value, a.flag AS flag, w.value AS webhook_value, w.flag AS webhook_flag
    FROM unnest(f.metric_keys, f.metric_values, f.flags) AS a(key_id, value, flag)
    FULL JOIN unnest(h.metric_keys, h.metric_values, h.flags) AS w(key_id, value, flag)
           ON w.key_id = a.key_id
) x
JOIN metric_key k ON k.id = x.key_id
WHERE md.platform = 'instagram' AND md.subject_type = 'story'
"""

# SQLite: version 1's query over the unfolded values (`vals`).
_STORY_FINAL_SQLITE = """
CREATE VIEW story_final AS
WITH vals AS (
    SELECT s.id AS snapshot_id, k.id AS key_id, {key}, {value} AS value, {flag} AS flag
    FROM snapshot s
    {values}
    WHERE s.platform = 'instagram' AND s.subject_type = 'story' AND s.kind = 'insights'
),
api AS (
    SELECT s.id AS snapshot_id, s.subject_id, s.version, s.captured_at,
           ROW_NUMBER() OVER (PARTITION BY s.subject_id ORDER BY s.version DESC) AS pick
    FROM snapshot s
    JOIN media md ON md.platform = s.platform AND md.media_id = s.subject_id
    WHERE s.platform = 'instagram' AND s.subject_type = 'story' AND s.kind = 'insights'
      AND s.source = 'api' AND s.captured_at < md.expires_at AND {since_posted}
),
hook AS (
    SELECT s.id AS snapshot_id, s.subject_id
    FROM snapshot s
    JOIN media md ON md.platform = s.platform AND md.media_id = s.subject_id
    WHERE s.platform = 'instagram' AND s.subject_type = 'story' AND s.kind = 'insights'
      AND s.slot = 'webhook' AND {since_posted}
),
story AS (
    SELECT md.account_id, md.media_id AS subject_id, md.posted_at, md.expires_at,
           md.capture_state, f.snapshot_id AS final_id, f.version, f.captured_at,
           h.snapshot_id AS hook_id
    FROM media md
    LEFT JOIN api f ON f.subject_id = md.media_id AND f.pick = 1
    LEFT JOIN hook h ON h.subject_id = md.media_id
    WHERE md.platform = 'instagram' AND md.subject_type = 'story'
)
SELECT st.account_id AS account_id, st.subject_id AS subject_id, st.posted_at AS posted_at,
       st.expires_at AS expires_at, st.capture_state AS capture_state,
       st.final_id AS snapshot_id, st.version AS version, st.captured_at AS captured_at,
       a.metric AS metric, a.breakdown AS breakdown, a.dimension AS dimension,
       a.value AS value, a.flag AS flag, w.value AS webhook_value, w.flag AS webhook_flag
FROM story st
JOIN vals a ON a.snapshot_id = st.final_id
LEFT JOIN vals w ON w.snapshot_id = st.hook_id AND w.key_id = a.key_id
UNION ALL
SELECT st.account_id, st.subject_id, st.posted_at, st.expires_at, st.capture_state,
       NULL, NULL, NULL, w.metric, w.breakdown, w.dimension, NULL, NULL, w.value, w.flag
FROM story st
JOIN vals w ON w.snapshot_id = st.hook_id
WHERE NOT EXISTS (
    SELECT 1 FROM vals a WHERE a.snapshot_id = st.final_id AND a.key_id = w.key_id
)
"""

STORY_FINAL = {
    "postgresql": render(_STORY_FINAL_PG, "postgresql"),
    "sqlite": render(_STORY_FINAL_SQLITE, "sqlite"),
}

# --- One row per account and day --------------------------------------------------------------
# These rank the values of one user's (or account's) snapshots; PostgreSQL pushes a filter on
# account_id or the user id into the ranking, since both are in its PARTITION BY.


def _both(template: str) -> dict[str, str]:
    return {dialect: render(template, dialect) for dialect in ("postgresql", "sqlite")}


# Threads user insights: a time-series value (`views` and the day totals likes, replies,
# reposts, quotes, clicks, asked one closed Meta day at a time) belongs to the day that ended
# at its end_time and comes from the newest version holding that day; totals stored without
# end_time (before view version 2 of migration 0007) each covered two days and are left out,
# so that a SUM over days never counts a day twice (metric_history keeps them). Point-in-time
# values (followers_count, follower_demographics) keep their capture's UTC day, the day's last
# capture winning.
THREADS_USER_DAILY_COLUMNS = (
    "account_id",
    "threads_user_id",
    "day",
    "metric",
    "breakdown",
    "dimension",
    "value",
    "flag",
    "end_time",
    "snapshot_id",
    "version",
    "captured_at",
)

THREADS_USER_DAILY = _both("""
CREATE VIEW threads_user_daily AS
SELECT account_id, threads_user_id, day, metric, breakdown, dimension, value, flag, end_time,
       snapshot_id, version, captured_at
FROM (
    SELECT s.account_id  AS account_id,
           s.subject_id  AS threads_user_id,
           {day}         AS day,
           {key},
           {value}       AS value,
           {flag}        AS flag,
           {end_time}    AS end_time,
           s.id          AS snapshot_id,
           s.version     AS version,
           s.captured_at AS captured_at,
           ROW_NUMBER() OVER (
               PARTITION BY s.account_id, s.subject_id, {day}, k.id
               ORDER BY s.version DESC, {n} DESC
           ) AS pick
    FROM snapshot s
    {values}
    WHERE s.platform = 'threads' AND s.subject_type = 'threads_user'
      AND NOT (k.metric IN ('likes', 'replies', 'reposts', 'quotes', 'clicks')
               AND {end_time} IS NULL)
) ranked
WHERE pick = 1
""")

# Instagram account insights: every value was asked for one closed Meta day and is stored
# with that day's end as end_time; `day` names the day. A day is asked once it closes and once
# more after 48 h: the newest version of the day wins. `flag` says why a value is null:
# 'unavailable' (no data for that day) or 'not_supported' (refused for this account, so not
# asked). A day with no row was not fetched (yet).
IG_ACCOUNT_DAILY_COLUMNS = (
    "account_id",
    "ig_user_id",
    *THREADS_USER_DAILY_COLUMNS[2:],
)

IG_ACCOUNT_DAILY = _both("""
CREATE VIEW ig_account_daily AS
SELECT account_id, ig_user_id, day, metric, breakdown, dimension, value, flag, end_time,
       snapshot_id, version, captured_at
FROM (
    SELECT s.account_id  AS account_id,
           s.subject_id  AS ig_user_id,
           {day}         AS day,
           {key},
           {value}       AS value,
           {flag}        AS flag,
           {end_time}    AS end_time,
           s.id          AS snapshot_id,
           s.version     AS version,
           s.captured_at AS captured_at,
           ROW_NUMBER() OVER (
               PARTITION BY s.account_id, s.subject_id, {end_time}, k.id
               ORDER BY s.version DESC, {n} DESC
           ) AS pick
    FROM snapshot s
    {values}
    WHERE s.platform = 'instagram' AND s.subject_type = 'ig_account' AND s.kind = 'insights'
      AND {end_time} IS NOT NULL
) ranked
WHERE pick = 1
""")

# The audience demographics, asked once a day per breakdown: one row per (account, UTC day of
# capture, key), the day's last capture winning. Not day windows but a state at captured_at:
# followers then, and for the engaged and reached audiences the month so far (`timeframe`).
IG_ACCOUNT_DEMOGRAPHICS_COLUMNS = (
    "account_id",
    "ig_user_id",
    "day",
    "metric",
    "timeframe",
    "breakdown",
    "dimension",
    "value",
    "flag",
    "snapshot_id",
    "version",
    "captured_at",
)

IG_ACCOUNT_DEMOGRAPHICS = _both("""
CREATE VIEW ig_account_demographics AS
SELECT account_id, ig_user_id, day, metric, timeframe, breakdown, dimension, value, flag,
       snapshot_id, version, captured_at
FROM (
    SELECT s.account_id  AS account_id,
           s.subject_id  AS ig_user_id,
           {day}         AS day,
           k.metric      AS metric,
           CASE WHEN k.metric = 'follower_demographics' THEN 'lifetime'
                ELSE 'this_month' END AS timeframe,
           NULLIF(k.breakdown, '') AS breakdown,
           NULLIF(k.dimension, '') AS dimension,
           {value}       AS value,
           {flag}        AS flag,
           s.id          AS snapshot_id,
           s.version     AS version,
           s.captured_at AS captured_at,
           ROW_NUMBER() OVER (
               PARTITION BY s.account_id, s.subject_id, {day}, k.id
               ORDER BY s.version DESC, {n} DESC
           ) AS pick
    FROM snapshot s
    {values}
    WHERE s.platform = 'instagram' AND s.subject_type = 'ig_account'
      AND s.kind = 'demographics'
) ranked
WHERE pick = 1
""")

METRIC_HISTORY_COLUMNS = (
    "account_id",
    "platform",
    "subject_type",
    "subject_id",
    "snapshot_id",
    "version",
    "captured_at",
    "source",
    "metric",
    "breakdown",
    "dimension",
    "end_time",
    "value",
    "flag",
)

METRIC_HISTORY = _both(_METRIC_HISTORY)

# Every view of this version, in the order they are created (and dropped in reverse).
VIEWS: dict[str, dict[str, str]] = {
    "metric_history": METRIC_HISTORY,
    "story_latest": STORY_LATEST,
    "story_final": STORY_FINAL,
    "threads_user_daily": THREADS_USER_DAILY,
    "threads_post_latest": THREADS_POST_LATEST,
    "ig_account_daily": IG_ACCOUNT_DAILY,
    "ig_account_demographics": IG_ACCOUNT_DEMOGRAPHICS,
    "media_latest": MEDIA_LATEST,
}
