"""Storing a generated archive: in bulk (COPY on PostgreSQL, executemany on SQLite) with the
write path's own pieces (`metric_key_ids`, `packed_values`, `models.types.compact_raw` through the
templates), or capture by capture through `record_snapshot` itself, to check the bulk rows
against (tests/test_bench_archive.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

import sqlalchemy as sa
from archive_plan import (
    Capture,
    Plan,
    StoryMedia,
    Templates,
    captures,
    ig_user_id,
    threads_user_id,
)
from sqlalchemy.engine import Engine

from models.db import session_scope
from models.partitions import ensure_months
from models.snapshots import Media, Snapshot
from models.tables import Account, table_of
from models.types import UTCDateTime, pack_json_text
from store.recording import metric_key_ids, packed_values, record_snapshot

BATCH = 20_000
_COLUMNS = (
    "id", "account_id", "platform", "subject_type", "subject_id", "kind", "version", "slot",
    "captured_at", "source", "api_version", "delivery_id",
    "metric_keys", "metric_values", "end_times", "flags",
)  # fmt: skip
_PG_TYPES = (
    "int8", "int4", "varchar", "varchar", "varchar", "varchar", "int4", "varchar",
    "timestamptz", "varchar", "varchar", "int8", "int4[]", "float8[]", "timestamptz[]", "text[]",
)  # fmt: skip


def add_accounts(engine: Engine, plan: Plan) -> list[int]:
    """The plan's accounts (each with its Threads profile); their row ids, in plan order."""
    with session_scope(engine) as session:
        rows = [
            Account(name=f"bench-{i}", ig_user_id=ig_user_id(i), ig_token="EAAbench",
                    threads_user_id=threads_user_id(i), threads_token="THbench")
            for i in range(plan.accounts)
        ]  # fmt: skip
        session.add_all(rows)
        session.flush()
        return [int(row.id or 0) for row in rows]


def write_media(engine: Engine, media: list[StoryMedia]) -> None:
    """The subjects' media rows: stories closed with their final captured, posts done."""
    rows = [_media_row(m) for m in media]
    with engine.begin() as conn:
        for start in range(0, len(rows), BATCH):
            conn.execute(table_of(Media).insert(), rows[start : start + BATCH])


def _media_row(m: StoryMedia) -> dict[str, Any]:
    story = m.subject_type == "story"
    return {
        "account_id": m.account, "platform": m.platform, "subject_type": m.subject_type,
        "media_id": m.media_id, "media_type": "IMAGE" if story else "TEXT_POST",
        "posted_at": m.posted_at, "expires_at": m.posted_at + timedelta(days=1) if story else None,
        "discovered_at": m.posted_at + timedelta(minutes=1),
        "capture_state": "final_captured" if story else "done",
    }  # fmt: skip


def link_finals(engine: Engine) -> None:
    """Each story's final_snapshot_id, as the final capture sets it."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE media SET final_snapshot_id = ("
                " SELECT s.id FROM snapshot s WHERE s.subject_id = media.media_id"
                " AND s.platform = media.platform AND s.subject_type = 'story'"
                " AND s.kind = 'insights' AND s.slot = 'final')"
                " WHERE platform = 'instagram' AND subject_type = 'story'"
            )
        )


def record_all(engine: Engine, captures: Iterable[Capture]) -> int:
    """Capture by capture through the write path (what the bulk writer must reproduce)."""
    count = 0
    for c in captures:
        with session_scope(engine) as session:
            record_snapshot(
                session=session, subject=c.subject, slot=c.slot, source=c.source,
                metrics=c.rows(), raw=c.raw(), api_version=c.template.shape.api_version,
                delivery_id=c.delivery_id, captured_at=c.captured_at,
            )  # fmt: skip
        count += 1
    return count


def write_all(
    engine: Engine, captures: Iterable[Capture], start: datetime, end: datetime
) -> Iterator[int]:
    """Bulk-store every capture (captured from `start` to `end`), `BATCH` at a time; yields
    the snapshots stored so far."""
    ensure_months(engine, start, end)
    done = 0
    it = iter(captures)
    while batch := list(islice(it, BATCH)):
        with engine.begin() as conn:
            _write_batch(conn, batch)
        done += len(batch)
        yield done


def _write_batch(conn: sa.Connection, batch: list[Capture]) -> None:
    rows = [c.rows() for c in batch]
    keys = metric_key_ids(conn, [row for capture in rows for row in capture])
    first = _reserve_ids(conn, len(batch))
    snapshots, raws = [], []
    for i, (c, values) in enumerate(zip(batch, rows, strict=True)):
        s = c.subject
        packed = packed_values(values, keys)
        snapshots.append((
            first + i, s.account_id, s.platform, s.subject_type, s.subject_id, s.kind,
            c.version, c.slot, c.captured_at, c.source, c.template.shape.api_version,
            c.delivery_id, packed["metric_keys"], packed["metric_values"], packed["end_times"],
            packed["flags"],
        ))  # fmt: skip
        body = c.body_json()
        if body is not None:  # scrubbed already: the templates were stored through the types
            raws.append((first + i, c.captured_at, pack_json_text(body)))
    driver = conn.connection.driver_connection
    if isinstance(driver, sqlite3.Connection):
        _sqlite_insert(conn, snapshots, raws)
    else:
        _pg_copy(driver, snapshots, raws)


def _reserve_ids(conn: sa.Connection, n: int) -> int:
    """The first of `n` fresh snapshot ids, taken as the sequence would hand them out."""
    if conn.dialect.name == "sqlite":
        return (
            int(conn.execute(sa.text("SELECT COALESCE(MAX(id), 0) FROM snapshot")).scalar_one()) + 1
        )
    last = conn.execute(
        sa.text("SELECT setval('snapshot_id_seq', nextval('snapshot_id_seq') + :n - 1)"), {"n": n}
    ).scalar_one()
    return int(last) - n + 1


def _pg_copy(driver: Any, snapshots: list[tuple[Any, ...]], raws: list[tuple[Any, ...]]) -> None:
    with driver.cursor() as cur:
        with cur.copy(f"COPY snapshot ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
            copy.set_types(list(_PG_TYPES))
            for row in snapshots:
                copy.write_row(row)
        with cur.copy("COPY snapshot_raw (snapshot_id, captured_at, body) FROM STDIN") as copy:
            copy.set_types(["int8", "timestamptz", "bytea"])
            for row in raws:
                copy.write_row(row)


def _sqlite_insert(
    conn: sa.Connection, snapshots: list[tuple[Any, ...]], raws: list[tuple[Any, ...]]
) -> None:
    """Through the table's own column types (JSON arrays, UTC times), as record_snapshot
    writes them; the raw bodies are packed already."""
    conn.execute(
        table_of(Snapshot).insert(), [dict(zip(_COLUMNS, row, strict=True)) for row in snapshots]
    )
    stmt = sa.text(
        "INSERT INTO snapshot_raw (snapshot_id, captured_at, body) VALUES (:i, :at, :body)"
    ).bindparams(sa.bindparam("at", type_=UTCDateTime()))
    if raws:
        conn.execute(stmt, [{"i": i, "at": at, "body": body} for i, at, body in raws])


def span(plan: Plan) -> tuple[datetime, datetime]:
    """The captured_at range of the plan's snapshots (posts run a day past `end`)."""
    return plan.start, plan.end + timedelta(days=3)


def build(
    engine: Engine,
    plan: Plan,
    templates: Templates,
    *,
    bulk: bool = True,
    progress: Callable[[int], None] | None = None,
) -> int:
    """The plan's whole archive: accounts, media rows, snapshots (in bulk, or one by one
    through record_snapshot), final ids; the snapshots stored."""
    accounts = add_accounts(engine, plan)
    media: list[StoryMedia] = []
    generated = captures(plan, templates, accounts, media)
    stored = 0
    if bulk:
        for stored in write_all(engine, generated, *span(plan)):
            if progress is not None:
                progress(stored)
    else:
        stored = record_all(engine, generated)
    write_media(engine, media)
    link_finals(engine)
    return stored
