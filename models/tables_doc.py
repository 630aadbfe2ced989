"""`python -m models.tables_doc > docs/tables.md`: the base tables, column by column.

What each column means is kept here beside the rendering, and the page is generated from the
SQLModel tables, so it cannot drift from the schema (tests/test_tables_doc.py regenerates it,
compares, and fails when a column has no description).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from models.tables import metadata

TABLES: dict[str, str] = {
    "account": "One registered account: an Instagram professional account and, optionally, "
    "its Threads profile, with their tokens (encrypted) and capture bookkeeping.",
    "media": "A subject the archiver tracks: an Instagram story or a Threads post, one row per "
    "Meta media id.",
    "snapshot": "One capture of a subject (story, post, Reel, Threads profile, Instagram "
    "account), append-only; versions count 1, 2, 3 ... per subject and kind. Its values are "
    "stored together, position by position (the `metric_history` view unfolds them). On "
    "PostgreSQL partitioned by month of `captured_at` (`snapshot_pYYYYMM`).",
    "snapshot_raw": "Meta's answers behind a snapshot, kept apart so that they can be pruned "
    "on their own. On PostgreSQL partitioned by month like `snapshot`.",
    "metric_key": "Each (metric, breakdown, dimension) a snapshot holds, named once.",
    "webhook_delivery": "Every signed webhook delivery, stored before it is acknowledged, and "
    "what became of it.",
    "metric_unavailable": "A metric Meta will not give for an account, so polls stop asking "
    "for it until `retry_at`.",
    "notice": "One event told to operators at NOTIFY_WEBHOOK_URL (README: Notices), kept "
    "after it is sent or given up.",
}

_ACCOUNT = {
    "id": "The archiver's account id (`archiver accounts list`).",
    "name": "The operator's name for the account, unique.",
    "ig_user_id": "Instagram professional account id: the webhook `entry.id`.",
    "ig_token": "Instagram access token, encrypted under TOKEN_ENCRYPTION_KEY when it is set.",
    "login": "`facebook` (Facebook Login, graph.facebook.com) or `instagram` "
    "(Instagram Login, graph.instagram.com).",
    "ig_token_expires_at": "When the Instagram token expires; null: unknown or never.",
    "ig_token_refreshed_at": "When the Instagram token was last refreshed.",
    "ig_data_access_expires_at": "Facebook Login: when the user's data access lapses "
    "(`debug_token` `data_access_expires_at`).",
    "ig_token_checked_at": "Facebook Login: when `debug_token` was last asked about the token.",
    "ig_token_check_error": "What kept the last token check from answering; null: it answered.",
    "threads_user_id": "The linked Threads profile's user id; null: no Threads.",
    "threads_token": "Threads access token, encrypted like `ig_token`.",
    "threads_link_source": "How the Threads profile was linked (`operator`: by `accounts add`).",
    "threads_linked_at": "When the Threads profile was linked.",
    "threads_token_expires_at": "When the Threads token expires.",
    "threads_token_refreshed_at": "When the Threads token was last refreshed.",
    "threads_polled_at": "When Threads insights were last polled.",
    "next_threads_poll_at": "When Threads insights are due again; null: now.",
    "threads_state": "`active` or `reauth_required`, for the Threads side only.",
    "threads_state_reason": "Why the Threads side is not active (scrubbed of tokens).",
    "state": "`active`, `reauth_required` or `disabled`, for the Instagram side.",
    "state_reason": "Why the account is not active (scrubbed of tokens).",
    "last_error": "The last error capturing for this account (scrubbed of tokens).",
    "last_error_at": "When `last_error` happened.",
    "ig_failures": "Errors retrying cannot fix (permissions, #100), in a row, Instagram side.",
    "ig_problem": "The reason shown to operators for `ig_failures`.",
    "threads_failures": "Errors retrying cannot fix, in a row, Threads side.",
    "threads_problem": "The reason shown to operators for `threads_failures`.",
    "stories_polled_at": "When `/stories` was last listed.",
    "next_story_poll_at": "When `/stories` is due to be listed again; null: now.",
    "media_listed_at": "When `/media` (feed posts and Reels) was last listed.",
    "next_media_listing_at": "When `/media` is due to be listed again; null: now.",
    "media_failures": "Errors retrying cannot fix, in a row, listing `/media`.",
    "media_problem": "The reason shown to operators for `media_failures`.",
    "ig_insights_polled_at": "When the account insights run last succeeded.",
    "next_ig_insights_at": "When the account insights run is due again (after the next "
    "Pacific midnight, sooner while days are missing); null: now.",
    "ig_insights_failures": "Account insights runs that failed in a row (errors retrying "
    "cannot fix, or transient ones that kept failing).",
    "ig_insights_problem": "The reason shown to operators for `ig_insights_failures`.",
    "created_at": "When the account was added.",
    "updated_at": "When the row last changed.",
}

_MEDIA = {
    "id": "The archiver's media row id.",
    "account_id": "The account (`account.id`) the subject belongs to.",
    "platform": "`instagram` or `threads`.",
    "subject_type": "`story`, `feed` (feed post), `reel` (Reel) or `threads_post`.",
    "media_id": "Meta's media id.",
    "media_type": "Meta's `media_type` (`IMAGE`, `VIDEO`, `TEXT_POST`, ...).",
    "media_product_type": "Meta's `media_product_type` (`STORY`, `FEED`, `REELS`, ...).",
    "permalink": "Meta's permalink to the media.",
    "caption": "The caption or post text, as Meta gave it.",
    "posted_at": "When the media was published (Meta's `timestamp`).",
    "expires_at": "Stories: when the story expires (24 hours after posting).",
    "discovered_at": "When the archiver first saw the media.",
    "capture_state": "Stories: `live`, `final_captured` or `missed`; posts and Reels: `tracked`, "
    "`done` or `skipped` (no insights).",
    "final_snapshot_id": "Stories: the snapshot taken at expiry (`snapshot.id`).",
    "next_slot": "The capture slot to take next; null once nothing more is scheduled.",
    "next_capture_at": "When `next_slot` is due.",
    "missed_reason": "Why a story's final capture was missed.",
    "last_error": "The last error capturing this media (scrubbed of tokens).",
    "last_error_at": "When `last_error` happened.",
    "deleted_at": "Threads: when Meta reported the post deleted; capturing stopped then.",
    "raw": "Meta's media object as received.",
}

_SNAPSHOT = {
    "id": "The snapshot id.",
    "account_id": "The account (`account.id`) captured.",
    "platform": "`instagram` or `threads`.",
    "subject_type": "`story`, `feed`, `reel`, `threads_post`, `threads_user` or `ig_account` "
    "(an Instagram account's own insights).",
    "subject_id": "Meta's media or user id.",
    "kind": "What was captured: `insights` for metric captures, `demographics` for the "
    "audience breakdowns of a Threads user or Instagram account.",
    "version": "1, 2, 3 ... per (subject, kind), never reused.",
    "slot": "The schedule slot or webhook key; a retried capture of the same slot is a no-op.",
    "captured_at": "When the archiver captured it (UTC).",
    "source": "`webhook` or `api`.",
    "api_version": "The Graph or Threads API version asked.",
    "delivery_id": "For webhook snapshots, the delivery (`webhook_delivery.id`).",
    "metric_keys": "The values' keys (`metric_key.id`), one per value.",
    "metric_values": "The values, position by position; null where Meta withheld one.",
    "end_times": "For time-series values, the end of each value's period; null when no "
    "value of the snapshot has one.",
    "flags": "`below_threshold`, `unavailable` or `not_supported` per value (null: a plain "
    "value); null when no value of the snapshot has one.",
}

_SNAPSHOT_RAW = {
    "snapshot_id": "The snapshot (`snapshot.id`).",
    "captured_at": "The snapshot's `captured_at` (the partition key).",
    "body": "Meta's answers as received, scrubbed of any token an error quoted back, without "
    "the `title` and `description` Meta repeats in every insights answer.",
}

_METRIC_KEY = {
    "id": "The key's id, as `snapshot.metric_keys` holds it.",
    "metric": "Meta's metric name, e.g. `reach`.",
    "breakdown": "Meta's breakdown name, e.g. `story_navigation_action_type`; '' for none.",
    "dimension": "The breakdown's dimension value, e.g. `tap_forward`; '' for none.",
}

_WEBHOOK_DELIVERY = {
    "id": "The delivery id (`archiver replay`).",
    "platform": "`instagram` or `threads`: whose app secret signed it.",
    "body": "The request body, byte for byte as received.",
    "body_sha256": "SHA-256 of the body; a redelivered body is stored once.",
    "headers": "The request headers the receiver keeps (signature, content type, ...).",
    "received_at": "When the receiver stored it.",
    "status": "`received`, `enqueued`, `processed`, `unrouted`, `ignored`, `unparseable`, "
    "`rejected` or `failed`.",
    "enqueued_at": "When it was handed to the workers.",
    "processed_at": "When a worker finished with it.",
    "attempts": "How many times a worker tried it.",
    "summary": "What processing made of it (scrubbed of tokens).",
    "error": "Why processing failed (scrubbed of tokens).",
    "traceback": "The failure's traceback (scrubbed of tokens).",
}

_METRIC_UNAVAILABLE = {
    "id": "The row id.",
    "account_id": "The account (`account.id`).",
    "platform": "`instagram` or `threads`.",
    "metric": "The metric Meta refused.",
    "reason": "Meta's reason (scrubbed of tokens).",
    "first_seen_at": "When Meta first refused it.",
    "retry_at": "When to ask again; null: never.",
}

_NOTICE = {
    "id": "The row id.",
    "dedupe_key": "Names the event, unique: detecting it again inserts nothing.",
    "kind": "`reauth`, `token_expiring`, `final_missed` or `deliveries_failing`.",
    "account_id": "The account it concerns; null for `deliveries_failing`.",
    "subject": "What in the account: `instagram`, `threads`, `instagram_data_access`, "
    "`<platform>:<media id>` or `deliveries`.",
    "text": "The message as sent (scrubbed of tokens).",
    "details": "The event's fields for machines, sent as `archiver.notices[]`.",
    "state": "`pending`, `delivered` or `undeliverable` (attempts exhausted; kept).",
    "created_at": "When the event was detected.",
    "attempts": "POSTs tried so far.",
    "next_attempt_at": "When a pending notice is tried next; null: at once.",
    "delivered_at": "When the receiver answered 2xx.",
    "last_error": "Why the last attempt failed (the URL and tokens masked).",
    "resolved_at": "`reauth`, `deliveries_failing`: when the condition was seen to end.",
}

COLUMNS: dict[str, dict[str, str]] = {
    "account": _ACCOUNT,
    "media": _MEDIA,
    "snapshot": _SNAPSHOT,
    "snapshot_raw": _SNAPSHOT_RAW,
    "metric_key": _METRIC_KEY,
    "webhook_delivery": _WEBHOOK_DELIVERY,
    "metric_unavailable": _METRIC_UNAVAILABLE,
    "notice": _NOTICE,
}

HEADER = """# The base tables

Generated by `python -m models.tables_doc > docs/tables.md` from the models (`models/`);
do not edit by hand. Types are PostgreSQL's. For everyday questions, query the views
described in the README ([Querying](../README.md#querying-metric_history)) instead.
"""


def column_type(column: sa.Column[object]) -> str:
    """The column's PostgreSQL type as DDL would spell it."""
    return column.type.compile(dialect=postgresql.dialect())  # type: ignore[no-untyped-call]


def _references(column: sa.Column[object]) -> str:
    targets = [f"`{fk.target_fullname}`" for fk in column.foreign_keys]
    return f" References {', '.join(targets)}." if targets else ""


def table_section(table: sa.Table) -> list[str]:
    """One table's heading, purpose and column table."""
    described = COLUMNS[table.name]
    lines = [f"## `{table.name}`", "", TABLES[table.name], ""]
    lines += ["| column | type | null | meaning |", "| --- | --- | --- | --- |"]
    for column in table.columns:
        null = "yes" if column.nullable else "no"
        meaning = described[column.name] + _references(column)
        lines.append(f"| `{column.name}` | {column_type(column)} | {null} | {meaning} |")
    return [*lines, ""]


def render() -> str:
    """The whole page, tables in the order of TABLES."""
    lines = [HEADER]
    for name in TABLES:
        lines += table_section(metadata.tables[name])
    return "\n".join(lines).rstrip("\n") + "\n"


if __name__ == "__main__":
    print(render(), end="")
