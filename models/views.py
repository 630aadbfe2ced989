"""The SQL views that are the public query surface. Each version is frozen once released;
a changed view gets a new constant and a migration that replaces it."""

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
