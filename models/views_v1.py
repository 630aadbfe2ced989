"""The released versions of the public views before the snapshot values were stored together
(migration 0011), frozen: the migrations that created them import them from here. The
current versions, and the column lists that stay the public contract, are in models.views."""

METRIC_HISTORY_V1 = """
CREATE VIEW metric_history AS
SELECT s.account_id   AS account_id,
       s.platform     AS platform,
       s.subject_type AS subject_type,
       s.subject_id   AS subject_id,
       s.id           AS snapshot_id,
       s.version      AS version,
       s.captured_at  AS captured_at,
       s.source       AS source,
       m.metric       AS metric,
       m.breakdown    AS breakdown,
       m.dimension    AS dimension,
       m.end_time     AS end_time,
       m.value        AS value,
       m.flag         AS flag
FROM snapshot s
JOIN metric_value m ON m.snapshot_id = s.id
"""


# Stories only: one row per (story, metric, breakdown, dimension), from the highest version
# that holds that value. A later webhook version therefore wins for the metrics it carries,
# while metrics only the API returns keep their last API value. ROW_NUMBER (SQLite >= 3.25,
# PostgreSQL) picks one row even when a snapshot repeats a key; metric_value.id breaks ties.
STORY_LATEST_V1 = """
CREATE VIEW story_latest AS
SELECT account_id, subject_id, posted_at, expires_at, snapshot_id, version, captured_at,
       source, metric, breakdown, dimension, value, flag
FROM (
    SELECT s.account_id  AS account_id,
           s.subject_id  AS subject_id,
           md.posted_at  AS posted_at,
           md.expires_at AS expires_at,
           s.id          AS snapshot_id,
           s.version     AS version,
           s.captured_at AS captured_at,
           s.source      AS source,
           m.metric      AS metric,
           m.breakdown   AS breakdown,
           m.dimension   AS dimension,
           m.value       AS value,
           m.flag        AS flag,
           ROW_NUMBER() OVER (
               PARTITION BY s.subject_id, m.metric, m.breakdown, m.dimension
               ORDER BY s.version DESC, m.id DESC
           ) AS pick
    FROM snapshot s
    JOIN metric_value m ON m.snapshot_id = s.id
    LEFT JOIN media md ON md.platform = s.platform AND md.media_id = s.subject_id
    WHERE s.platform = 'instagram' AND s.subject_type = 'story' AND s.kind = 'insights'
) ranked
WHERE pick = 1
"""


# Per story, the values as they stood at expiry: the last API snapshot captured before
# `expires_at` (normally slot 'final'; an earlier one when the final capture was missed),
# with the webhook's value for the same metric/breakdown/dimension beside it. Metrics only
# the webhook has (its older names: impressions, taps_forward, ...) get rows of their own
# with the API columns null, and so does every webhook metric of a story with no API
# capture before expiry. FULL OUTER JOIN and IS NOT DISTINCT FROM would say this shorter
# but need SQLite 3.39; UNION ALL and spelled-out null matches work on older files too.
STORY_FINAL_V1 = """
CREATE VIEW story_final AS
WITH api AS (
    SELECT s.id AS snapshot_id, s.subject_id, s.version, s.captured_at,
           ROW_NUMBER() OVER (PARTITION BY s.subject_id ORDER BY s.version DESC) AS pick
    FROM snapshot s
    JOIN media md ON md.platform = s.platform AND md.media_id = s.subject_id
    WHERE s.platform = 'instagram' AND s.subject_type = 'story' AND s.kind = 'insights'
      AND s.source = 'api' AND s.captured_at < md.expires_at
),
hook AS (
    SELECT s.id AS snapshot_id, s.subject_id
    FROM snapshot s
    WHERE s.platform = 'instagram' AND s.subject_type = 'story' AND s.kind = 'insights'
      AND s.slot = 'webhook'
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
SELECT st.account_id    AS account_id,
       st.subject_id    AS subject_id,
       st.posted_at     AS posted_at,
       st.expires_at    AS expires_at,
       st.capture_state AS capture_state,
       st.final_id      AS snapshot_id,
       st.version       AS version,
       st.captured_at   AS captured_at,
       m.metric         AS metric,
       m.breakdown      AS breakdown,
       m.dimension      AS dimension,
       m.value          AS value,
       m.flag           AS flag,
       w.value          AS webhook_value,
       w.flag           AS webhook_flag
FROM story st
JOIN metric_value m ON m.snapshot_id = st.final_id
LEFT JOIN metric_value w
       ON w.snapshot_id = st.hook_id
      AND w.metric = m.metric
      AND (w.breakdown = m.breakdown OR (w.breakdown IS NULL AND m.breakdown IS NULL))
      AND (w.dimension = m.dimension OR (w.dimension IS NULL AND m.dimension IS NULL))
UNION ALL
SELECT st.account_id, st.subject_id, st.posted_at, st.expires_at, st.capture_state,
       NULL, NULL, NULL,
       w.metric, w.breakdown, w.dimension, NULL, NULL,
       w.value, w.flag
FROM story st
JOIN metric_value w ON w.snapshot_id = st.hook_id
WHERE NOT EXISTS (
    SELECT 1
    FROM metric_value m
    WHERE m.snapshot_id = st.final_id
      AND m.metric = w.metric
      AND (m.breakdown = w.breakdown OR (m.breakdown IS NULL AND w.breakdown IS NULL))
      AND (m.dimension = w.dimension OR (m.dimension IS NULL AND w.dimension IS NULL))
)
"""


# The UTC calendar day of a timestamp column as ISO text 'YYYY-MM-DD', per dialect: SQLite
# keeps UTC timestamps as text (date() reads it), PostgreSQL as timestamptz, whose day
# depends on the session's TimeZone unless converted to UTC first. No spelling works on both.
# The UTC day a value belongs to. A series value's `end_time` is the END of its day (midnight
# Pacific, 07:00 or 08:00 UTC the next day), so it belongs to the day before its end_time; a
# value without end_time belongs to the day it was captured. PostgreSQL converts to UTC
# itself, so the session's time zone never moves a day.
UTC_DAY_V1 = {
    "sqlite": "COALESCE(date(m.end_time, '-1 day'), date(s.captured_at))",
    "postgresql": "to_char(COALESCE(m.end_time - interval '1 day', s.captured_at)"
    " AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
}

# Threads user insights, one row per (account, Threads user, UTC day, metric, breakdown,
# dimension). A time-series value (`views`, with end_time) belongs to the day that ended at
# its end_time and comes from the newest snapshot version holding that day: each poll asks
# the last two days again, and the newer answer has settled further. A value without
# end_time (totals, followers_count, clicks per link_url, follower_demographics) belongs to
# the day it was captured, and the day's last capture (its highest version) wins. `{day}` is
# filled in per dialect (UTC_DAY_V1).
_THREADS_USER_DAILY_V1 = """
CREATE VIEW threads_user_daily AS
SELECT account_id, threads_user_id, day, metric, breakdown, dimension, value, flag, end_time,
       snapshot_id, version, captured_at
FROM (
    SELECT s.account_id  AS account_id,
           s.subject_id  AS threads_user_id,
           {day}         AS day,
           m.metric      AS metric,
           m.breakdown   AS breakdown,
           m.dimension   AS dimension,
           m.value       AS value,
           m.flag        AS flag,
           m.end_time    AS end_time,
           s.id          AS snapshot_id,
           s.version     AS version,
           s.captured_at AS captured_at,
           ROW_NUMBER() OVER (
               PARTITION BY s.account_id, s.subject_id, {day}, m.metric, m.breakdown,
                            m.dimension
               ORDER BY s.version DESC, m.id DESC
           ) AS pick
    FROM snapshot s
    JOIN metric_value m ON m.snapshot_id = s.id
    WHERE s.platform = 'threads' AND s.subject_type = 'threads_user'
) ranked
WHERE pick = 1
"""

THREADS_USER_DAILY_V1 = {
    dialect: _THREADS_USER_DAILY_V1.replace("{day}", day) for dialect, day in UTC_DAY_V1.items()
}

# Version 2 (migration 0007): the range totals (likes, replies, reposts, quotes, clicks) are
# asked for one closed Meta day at a time and stored with that day's end as end_time, so they
# are dated like the views series: by the day that ended at end_time (a Pacific day, named by
# its date), the newest version of that day winning. Totals stored without end_time were asked
# for "yesterday through today" before version 2 and so each cover two days: they are left
# out, so that a SUM over days never counts a day twice (metric_history keeps them).
# Point-in-time values (followers_count, follower_demographics) keep their capture's UTC day.
_THREADS_USER_DAILY_V2 = """
CREATE VIEW threads_user_daily AS
SELECT account_id, threads_user_id, day, metric, breakdown, dimension, value, flag, end_time,
       snapshot_id, version, captured_at
FROM (
    SELECT s.account_id  AS account_id,
           s.subject_id  AS threads_user_id,
           {day}         AS day,
           m.metric      AS metric,
           m.breakdown   AS breakdown,
           m.dimension   AS dimension,
           m.value       AS value,
           m.flag        AS flag,
           m.end_time    AS end_time,
           s.id          AS snapshot_id,
           s.version     AS version,
           s.captured_at AS captured_at,
           ROW_NUMBER() OVER (
               PARTITION BY s.account_id, s.subject_id, {day}, m.metric, m.breakdown,
                            m.dimension
               ORDER BY s.version DESC, m.id DESC
           ) AS pick
    FROM snapshot s
    JOIN metric_value m ON m.snapshot_id = s.id
    WHERE s.platform = 'threads' AND s.subject_type = 'threads_user'
      AND NOT (m.metric IN ('likes', 'replies', 'reposts', 'quotes', 'clicks')
               AND m.end_time IS NULL)
) ranked
WHERE pick = 1
"""

THREADS_USER_DAILY_V2 = {
    dialect: _THREADS_USER_DAILY_V2.replace("{day}", day) for dialect, day in UTC_DAY_V1.items()
}


# Threads posts: one row per (post, metric, breakdown, dimension) from the highest version,
# beside the post itself. Post counters are lifetime totals, so the newest capture is the
# current figure; a value Meta withheld is null with flag 'unavailable'. Reposts
# (REPOST_FACADE, capture_state 'skipped') have no insights and so no rows.
THREADS_POST_LATEST_V1 = """
CREATE VIEW threads_post_latest AS
SELECT account_id, media_id, posted_at, permalink, text, media_type, capture_state,
       snapshot_id, version, captured_at, metric, breakdown, dimension, value, flag
FROM (
    SELECT s.account_id     AS account_id,
           s.subject_id     AS media_id,
           md.posted_at     AS posted_at,
           md.permalink     AS permalink,
           md.caption       AS text,
           md.media_type    AS media_type,
           md.capture_state AS capture_state,
           s.id             AS snapshot_id,
           s.version        AS version,
           s.captured_at    AS captured_at,
           m.metric         AS metric,
           m.breakdown      AS breakdown,
           m.dimension      AS dimension,
           m.value          AS value,
           m.flag           AS flag,
           ROW_NUMBER() OVER (
               PARTITION BY s.subject_id, m.metric, m.breakdown, m.dimension
               ORDER BY s.version DESC, m.id DESC
           ) AS pick
    FROM snapshot s
    JOIN metric_value m ON m.snapshot_id = s.id
    LEFT JOIN media md ON md.platform = s.platform AND md.media_id = s.subject_id
    WHERE s.platform = 'threads' AND s.subject_type = 'threads_post' AND s.kind = 'insights'
) ranked
WHERE pick = 1
"""


# --- Instagram account insights (P10, workers.captures.account_insights) ----------------------

# One row per (account, Meta day, metric, breakdown, dimension) of the account-level insights
# (`subject_type` 'ig_account'). Every value was asked for one closed Meta day (Pacific
# midnight to midnight) and is stored with that day's end as end_time; `day` names the day
# (its date). A day is asked once it closes and once more after 48 h (Meta's data can be
# delayed that long): the newest version of the day wins. `flag` says why a value is null:
# 'unavailable' (Meta answered no data for that day), 'not_supported' (Meta refused the metric
# for this account, so it was not asked). A day with no row was not fetched (yet).
_IG_ACCOUNT_DAILY_V1 = """
CREATE VIEW ig_account_daily AS
SELECT account_id, ig_user_id, day, metric, breakdown, dimension, value, flag, end_time,
       snapshot_id, version, captured_at
FROM (
    SELECT s.account_id  AS account_id,
           s.subject_id  AS ig_user_id,
           {day}         AS day,
           m.metric      AS metric,
           m.breakdown   AS breakdown,
           m.dimension   AS dimension,
           m.value       AS value,
           m.flag        AS flag,
           m.end_time    AS end_time,
           s.id          AS snapshot_id,
           s.version     AS version,
           s.captured_at AS captured_at,
           ROW_NUMBER() OVER (
               PARTITION BY s.account_id, s.subject_id, m.end_time, m.metric, m.breakdown,
                            m.dimension
               ORDER BY s.version DESC, m.id DESC
           ) AS pick
    FROM snapshot s
    JOIN metric_value m ON m.snapshot_id = s.id
    WHERE s.platform = 'instagram' AND s.subject_type = 'ig_account' AND s.kind = 'insights'
      AND m.end_time IS NOT NULL
) ranked
WHERE pick = 1
"""

IG_ACCOUNT_DAILY_V1 = {
    dialect: _IG_ACCOUNT_DAILY_V1.replace("{day}", day) for dialect, day in UTC_DAY_V1.items()
}


# The audience demographics (follower_demographics, engaged_audience_demographics,
# reached_audience_demographics), asked once a day per breakdown (age, city, country,
# gender): one row per (account, UTC day of capture, metric, breakdown, dimension), the day's
# last capture winning. They are not day windows but a state at `captured_at`: followers
# then, and for the engaged and reached audiences the current month so far (Meta's
# timeframe=this_month), named in `timeframe`. Meta returns at most the top 45 values of a
# breakdown, and only people it has demographic data for.
_IG_ACCOUNT_DEMOGRAPHICS_V1 = """
CREATE VIEW ig_account_demographics AS
SELECT account_id, ig_user_id, day, metric, timeframe, breakdown, dimension, value, flag,
       snapshot_id, version, captured_at
FROM (
    SELECT s.account_id  AS account_id,
           s.subject_id  AS ig_user_id,
           {day}         AS day,
           m.metric      AS metric,
           CASE WHEN m.metric = 'follower_demographics' THEN 'lifetime'
                ELSE 'this_month' END AS timeframe,
           m.breakdown   AS breakdown,
           m.dimension   AS dimension,
           m.value       AS value,
           m.flag        AS flag,
           s.id          AS snapshot_id,
           s.version     AS version,
           s.captured_at AS captured_at,
           ROW_NUMBER() OVER (
               PARTITION BY s.account_id, s.subject_id, {day}, m.metric, m.breakdown,
                            m.dimension
               ORDER BY s.version DESC, m.id DESC
           ) AS pick
    FROM snapshot s
    JOIN metric_value m ON m.snapshot_id = s.id
    WHERE s.platform = 'instagram' AND s.subject_type = 'ig_account'
      AND s.kind = 'demographics'
) ranked
WHERE pick = 1
"""

IG_ACCOUNT_DEMOGRAPHICS_V1 = {
    dialect: _IG_ACCOUNT_DEMOGRAPHICS_V1.replace("{day}", day)
    for dialect, day in UTC_DAY_V1.items()
}


# --- Feed posts and Reels (P10) -------------------------------------------------------------

# Feed posts and Reels (platform 'instagram', subject_type 'feed' or 'reel'): one row per
# (media, metric, breakdown, dimension) from the highest version, beside the media itself.
# Their counters are lifetime totals, so the newest capture is the current figure; a metric
# the media refused is null with flag 'not_supported', one Meta withheld null with
# 'unavailable'. Media Meta gives no insights for (capture_state 'skipped') have no rows.
MEDIA_LATEST_V1 = """
CREATE VIEW media_latest AS
SELECT account_id, subject_type, media_id, media_product_type, media_type, posted_at,
       permalink, caption, capture_state, snapshot_id, version, captured_at, metric,
       breakdown, dimension, value, flag
FROM (
    SELECT s.account_id          AS account_id,
           s.subject_type        AS subject_type,
           s.subject_id          AS media_id,
           md.media_product_type AS media_product_type,
           md.media_type         AS media_type,
           md.posted_at          AS posted_at,
           md.permalink          AS permalink,
           md.caption            AS caption,
           md.capture_state      AS capture_state,
           s.id                  AS snapshot_id,
           s.version             AS version,
           s.captured_at         AS captured_at,
           m.metric              AS metric,
           m.breakdown           AS breakdown,
           m.dimension           AS dimension,
           m.value               AS value,
           m.flag                AS flag,
           ROW_NUMBER() OVER (
               PARTITION BY s.subject_id, m.metric, m.breakdown, m.dimension
               ORDER BY s.version DESC, m.id DESC
           ) AS pick
    FROM snapshot s
    JOIN metric_value m ON m.snapshot_id = s.id
    LEFT JOIN media md ON md.platform = s.platform AND md.media_id = s.subject_id
    WHERE s.platform = 'instagram' AND s.subject_type IN ('feed', 'reel')
      AND s.kind = 'insights'
) ranked
WHERE pick = 1
"""
