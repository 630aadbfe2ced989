"""Processing archived deliveries: real arq worker, real Redis, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from arq.connections import RedisSettings, create_pool
from arq.worker import Worker
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from core.config import Settings
from core.errors import NotFoundError
from jobqueue.outbox import enqueue_deliveries
from models.accounts import Account
from models.deliveries import ENQUEUED, WebhookDelivery
from models.snapshots import Media, Snapshot, raw_body
from models.types import utcnow
from models.views import METRIC_HISTORY_COLUMNS
from workers.main import DELIVERIES, build_worker
from workers.webhooks.process import process_delivery_sync

IG = "17841405309211844"
MEDIA = "18023345989012587"
# Meta's sample value with replies withheld (-1, "fewer than 5"):
# https://developers.facebook.com/docs/instagram-platform/webhooks
STORY = {
    "media_id": MEDIA,
    "exits": 1,
    "replies": -1,
    "reach": 17,
    "taps_forward": 12,
    "taps_back": 0,
    "impressions": 28,
}
STORY_METRICS = {"exits", "replies", "reach", "taps_forward", "taps_back", "impressions"}


def envelope(changes: list[dict[str, Any]], *, ig: str = IG, time: int = 1547687043) -> bytes:
    """Meta's array-wrapped Instagram envelope around `changes`."""
    doc = [{"entry": [{"changes": changes, "id": ig, "time": time}], "object": "instagram"}]
    return json.dumps(doc).encode()


def story_body(*, ig: str = IG, time: int = 1547687043, **extra: Any) -> bytes:
    return envelope([{"field": "story_insights", "value": {**STORY, **extra}}], ig=ig, time=time)


def add_delivery(
    engine: Engine,
    body: bytes,
    *,
    status: str = ENQUEUED,
    enqueued_at: datetime | None = None,
    platform: str = "instagram",
) -> int:
    """An archived delivery as the receiver stores it; `platform` is the route it came on."""
    with Session(engine) as session:
        row = WebhookDelivery(
            platform=platform,
            body=body,
            body_sha256=hashlib.sha256(body).hexdigest(),
            status=status,
            enqueued_at=enqueued_at or utcnow(),
        )
        session.add(row)
        session.commit()
        assert row.id is not None
        return row.id


def add_account(engine: Engine, *, ig: str = IG, name: str = "shop") -> int:
    with Session(engine) as session:
        account = Account(name=name, ig_user_id=ig, ig_token="EAAtoken-0123456789")
        session.add(account)
        session.commit()
        assert account.id is not None
        return account.id


def delivery_row(engine: Engine, delivery_id: int) -> WebhookDelivery:
    with Session(engine) as session:
        row = session.get(WebhookDelivery, delivery_id)
        assert row is not None
        return row


def snapshots(engine: Engine) -> list[Snapshot]:
    with Session(engine) as session:
        return list(session.exec(select(Snapshot).order_by(col(Snapshot.id))).all())


def history(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        result = conn.execute(sa.text("SELECT * FROM metric_history ORDER BY metric"))
        assert tuple(result.keys()) == METRIC_HISTORY_COLUMNS
        return [dict(r._mapping) for r in result]


async def burst(
    settings: Settings,
    ids: list[int],
    *,
    enqueues: int = 1,
    cron_jobs: bool = False,
    max_jobs: int = -1,
) -> Worker:
    """Enqueue `ids` `enqueues` times the receiver's way, then drain them with a burst worker
    (`max_jobs` runs at most, e.g. 1 to stop after a try that is retried later)."""
    pool = await create_pool(RedisSettings.from_dsn(settings.redis_url or ""))
    for _ in range(enqueues):
        await enqueue_deliveries(pool, ids)
    worker = build_worker(
        settings,
        lane=DELIVERIES,
        burst=True,
        poll_delay=0,
        redis_pool=pool,
        handle_signals=False,
        cron_jobs=cron_jobs,
    )
    worker.max_burst_jobs = max_jobs
    try:
        await worker.main()
    finally:
        await worker.close()  # closes the pool too
    return worker


def run_burst(settings: Settings, ids: list[int], **kwargs: Any) -> Worker:
    return asyncio.run(burst(settings, ids, **kwargs))


@contextmanager
def failing_metric_inserts(engine: Engine, *, sqlstate: str = "P0001") -> Iterator[None]:
    """A real fault in the database: every insert of a capture's raw answers (the last row it
    writes) raises, until the block ends (on PostgreSQL with `sqlstate`, e.g. a class 22 data
    error)."""
    if engine.dialect.name == "sqlite":
        create = [
            "CREATE TRIGGER fail_metric BEFORE INSERT ON snapshot_raw "
            "BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
        ]
        drop = ["DROP TRIGGER fail_metric"]
    else:
        create = [
            "CREATE FUNCTION fail_metric() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION 'injected fault' USING ERRCODE = '{sqlstate}'; END $$",
            "CREATE TRIGGER fail_metric BEFORE INSERT ON snapshot_raw "
            "FOR EACH ROW EXECUTE FUNCTION fail_metric()",
        ]
        drop = ["DROP TRIGGER fail_metric ON snapshot_raw", "DROP FUNCTION fail_metric()"]
    with engine.begin() as conn:
        for statement in create:
            conn.exec_driver_sql(statement)
    try:
        yield
    finally:
        with engine.begin() as conn:
            for statement in drop:
                conn.exec_driver_sql(statement)


def test_story_insights_becomes_webhook_version_one(engine: Engine, settings: Settings) -> None:
    """A story_insights delivery run by the worker is version 1 in metric_history."""
    account_id = add_account(engine)
    delivery = add_delivery(engine, story_body())
    worker = run_burst(settings, [delivery])
    assert (worker.jobs_complete, worker.jobs_failed, worker.jobs_retried) == (1, 0, 0)
    row = delivery_row(engine, delivery)
    assert (row.status, row.attempts, row.error, row.traceback) == ("processed", 1, None, None)
    assert row.processed_at is not None
    assert row.processed_at.tzinfo == UTC
    assert row.summary == "fields: story_insights; stories: 1 recorded, 0 already recorded"
    rows = {r["metric"]: r for r in history(engine)}
    assert set(rows) == STORY_METRICS
    assert {
        (r["account_id"], r["platform"], r["subject_type"], r["subject_id"], r["version"])
        for r in rows.values()
    } == {(account_id, "instagram", "story", MEDIA, 1)}
    assert {
        (r["source"], r["breakdown"], r["dimension"], r["end_time"]) for r in rows.values()
    } == {("webhook", None, None, None)}
    assert {k: rows[k]["value"] for k in ("reach", "impressions", "taps_back")} == {
        "reach": 17,
        "impressions": 28,
        "taps_back": 0,
    }
    (snap,) = snapshots(engine)
    assert (snap.slot, snap.delivery_id) == ("webhook", delivery)
    with engine.connect() as conn:
        assert raw_body(conn, snap.id) == STORY


def test_story_gets_a_media_row_for_its_account(engine: Engine) -> None:
    """The first capture of a story creates its Media row, owned by the account."""
    account_id = add_account(engine)
    before = utcnow()
    process_delivery_sync(engine=engine, delivery_id=add_delivery(engine, story_body()))
    with Session(engine) as session:
        (media,) = session.exec(select(Media)).all()
    assert (media.account_id, media.platform, media.subject_type, media.media_id) == (
        account_id,
        "instagram",
        "story",
        MEDIA,
    )
    assert before <= media.discovered_at <= utcnow()


def test_media_fields_set_by_another_capture_are_kept(engine: Engine) -> None:
    """A story the API poller already knows keeps its permalink, times and capture state."""
    account_id = add_account(engine)
    posted = datetime(2026, 1, 1, 12, tzinfo=UTC)
    with Session(engine) as session:
        session.add(
            Media(
                account_id=account_id,
                platform="instagram",
                subject_type="story",
                media_id=MEDIA,
                permalink="https://instagram.com/stories/x/1",
                posted_at=posted,
                discovered_at=posted,
                capture_state="final_captured",
            )
        )
        session.commit()
    process_delivery_sync(engine=engine, delivery_id=add_delivery(engine, story_body()))
    with Session(engine) as session:
        (media,) = session.exec(select(Media)).all()
    assert (media.permalink, media.posted_at, media.discovered_at, media.capture_state) == (
        "https://instagram.com/stories/x/1",
        posted,
        posted,
        "final_captured",
    )


def test_minus_one_is_null_and_below_threshold(engine: Engine) -> None:
    """Meta's -1 ("fewer than 5") is stored as no value with the below_threshold flag."""
    add_account(engine)
    process_delivery_sync(engine=engine, delivery_id=add_delivery(engine, story_body()))
    rows = {r["metric"]: r for r in history(engine)}
    assert (rows["replies"]["value"], rows["replies"]["flag"]) == (None, "below_threshold")
    assert {r["flag"] for m, r in rows.items() if m != "replies"} == {None}


def test_unknown_keys_are_kept(engine: Engine) -> None:
    """New numeric keys become metric rows; everything else stays in the raw value."""
    add_account(engine)
    extra: dict[str, Any] = {
        "shares": 4,
        "ratio": 0.5,
        "note": "kept",
        "is_new": True,
        "nested": {"a": 1},
    }
    delivery = add_delivery(engine, story_body(**extra))
    assert process_delivery_sync(engine=engine, delivery_id=delivery) == "processed"
    rows = {r["metric"]: r["value"] for r in history(engine)}
    assert set(rows) == STORY_METRICS | {"shares", "ratio"}
    assert (rows["shares"], rows["ratio"]) == (4, 0.5)
    (snap,) = snapshots(engine)
    with engine.connect() as conn:
        assert raw_body(conn, snap.id) == {**STORY, **extra}


def test_duplicate_enqueue_runs_one_job_and_one_version(engine: Engine, settings: Settings) -> None:
    """The same delivery enqueued twice is one arq job, one run and one version."""
    add_account(engine)
    delivery = add_delivery(engine, story_body())
    worker = run_burst(settings, [delivery], enqueues=2)
    assert worker.jobs_complete == 1
    assert delivery_row(engine, delivery).attempts == 1
    assert len(snapshots(engine)) == 1


def test_processing_twice_makes_one_version(engine: Engine) -> None:
    """A processed delivery is left as it is by a second run (replay, re-enqueue)."""
    add_account(engine)
    delivery = add_delivery(engine, story_body())
    assert process_delivery_sync(engine=engine, delivery_id=delivery) == "processed"
    first = delivery_row(engine, delivery)
    assert process_delivery_sync(engine=engine, delivery_id=delivery) == "processed"
    again = delivery_row(engine, delivery)
    assert (again.attempts, again.processed_at) == (1, first.processed_at)
    assert [s.version for s in snapshots(engine)] == [1]


def test_a_retry_with_another_body_adds_no_second_version(engine: Engine) -> None:
    """Meta's retry with another entry.time is a new delivery but the same webhook version."""
    add_account(engine)
    first = add_delivery(engine, story_body(time=1547687043))
    second = add_delivery(engine, story_body(time=1547690000, reach=18))
    assert process_delivery_sync(engine=engine, delivery_id=first) == "processed"
    assert process_delivery_sync(engine=engine, delivery_id=second) == "processed"
    assert "0 recorded, 1 already recorded" in (delivery_row(engine, second).summary or "")
    (snap,) = snapshots(engine)
    assert (snap.version, snap.delivery_id) == (1, first)
    assert {r["value"] for r in history(engine) if r["metric"] == "reach"} == {17}


def test_unknown_account_is_unrouted_until_it_exists(engine: Engine) -> None:
    """A delivery for an unregistered account waits as unrouted; a rerun then records it."""
    delivery = add_delivery(engine, story_body())
    assert process_delivery_sync(engine=engine, delivery_id=delivery) == "unrouted"
    row = delivery_row(engine, delivery)
    assert f"no account with ig_user_id {IG}" in (row.summary or "")
    assert (row.attempts, snapshots(engine)) == (1, [])
    add_account(engine)
    assert process_delivery_sync(engine=engine, delivery_id=delivery) == "processed"
    assert delivery_row(engine, delivery).attempts == 2
    assert {r["metric"] for r in history(engine)} == STORY_METRICS


def test_one_unknown_account_in_a_batch_leaves_the_delivery_unrouted(engine: Engine) -> None:
    """A batch for a known and an unknown account records one story and waits for the other."""
    add_account(engine)
    doc = {
        "object": "instagram",
        "entry": [
            {"id": IG, "time": 1, "changes": [{"field": "story_insights", "value": STORY}]},
            {
                "id": "999",
                "time": 1,
                "changes": [{"field": "story_insights", "value": {**STORY, "media_id": "77"}}],
            },
        ],
    }
    delivery = add_delivery(engine, json.dumps(doc).encode())
    assert process_delivery_sync(engine=engine, delivery_id=delivery) == "unrouted"
    assert "no account with ig_user_id 999" in (delivery_row(engine, delivery).summary or "")
    add_account(engine, ig="999", name="other")
    assert process_delivery_sync(engine=engine, delivery_id=delivery) == "processed"
    assert sorted(s.subject_id for s in snapshots(engine)) == sorted(["77", MEDIA])


@pytest.mark.parametrize(
    ("body", "fields", "platform"),
    [
        (
            envelope([{"field": "comments", "value": {"id": "1", "text": "hi"}}]),
            "comments",
            "instagram",
        ),
        (
            envelope([{"field": "mentions", "value": {"media_id": "1"}}, {"field": "x"}]),
            "mentions, x",
            "instagram",
        ),
        (
            json.dumps(
                {
                    "object": "instagram",
                    "entry": [{"id": IG, "time": 1458692752478, "messaging": [{"mid": "m"}]}],
                }
            ).encode(),
            "messaging",
            "instagram",
        ),
        (
            json.dumps(
                {
                    "app_id": "1",
                    "topic": "moderate",
                    "target_id": "5",
                    "time": 1,
                    "values": {"field": "replies", "value": {"id": "r"}},
                }
            ).encode(),
            "replies",
            "threads",
        ),
    ],
)
def test_other_fields_are_archived_as_ignored(
    engine: Engine, body: bytes, fields: str, platform: str
) -> None:
    """Comments, mentions, messaging and Threads fields are kept but make no snapshot."""
    delivery = add_delivery(engine, body, platform=platform)
    assert process_delivery_sync(engine=engine, delivery_id=delivery) == "ignored"
    row = delivery_row(engine, delivery)
    assert (row.summary, row.attempts, row.error) == (f"fields: {fields}", 1, None)
    assert snapshots(engine) == []
    assert process_delivery_sync(engine=engine, delivery_id=delivery) == "ignored"
    assert delivery_row(engine, delivery).attempts == 1


def test_mixed_delivery_is_processed_and_lists_its_fields(engine: Engine) -> None:
    """story_insights beside other fields makes the delivery processed; all fields listed."""
    add_account(engine)
    body = envelope(
        [
            {"field": "comments", "value": {"id": "1"}},
            {"field": "story_insights", "value": STORY},
        ]
    )
    delivery = add_delivery(engine, body)
    assert process_delivery_sync(engine=engine, delivery_id=delivery) == "processed"
    summary = delivery_row(engine, delivery).summary or ""
    assert summary.startswith("fields: comments, story_insights;")
    assert len(snapshots(engine)) == 1


def test_story_insights_without_media_id_is_skipped(engine: Engine) -> None:
    """A story_insights change lacking media_id is named in the summary, not recorded."""
    add_account(engine)
    delivery = add_delivery(engine, envelope([{"field": "story_insights", "value": {"reach": 1}}]))
    assert process_delivery_sync(engine=engine, delivery_id=delivery) == "ignored"
    assert "without media_id" in (delivery_row(engine, delivery).summary or "")
    assert snapshots(engine) == []


def test_unparseable_body_keeps_its_error(engine: Engine) -> None:
    """A signed body that is not JSON is final as unparseable, the parse error kept."""
    delivery = add_delivery(engine, b"{not json")
    assert process_delivery_sync(engine=engine, delivery_id=delivery) == "unparseable"
    row = delivery_row(engine, delivery)
    assert (row.status, row.attempts, row.traceback) == ("unparseable", 1, None)
    assert (row.error or "").startswith("body is not JSON")
    assert process_delivery_sync(engine=engine, delivery_id=delivery) == "unparseable"
    assert delivery_row(engine, delivery).attempts == 1


def test_failure_keeps_error_and_traceback_until_a_later_success(
    engine: Engine, settings: Settings
) -> None:
    """A job that raises leaves the row failed with error and traceback, and is retried
    later; a rerun clears it."""
    add_account(engine)
    delivery = add_delivery(engine, story_body())
    with failing_metric_inserts(engine):
        worker = run_burst(settings, [delivery], max_jobs=1)
    assert (worker.jobs_complete, worker.jobs_retried, worker.jobs_failed) == (0, 1, 0)
    row = delivery_row(engine, delivery)
    assert (row.status, row.attempts) == ("failed", 1)
    assert "injected fault" in (row.error or "")
    assert (row.traceback or "").startswith("Traceback (most recent call last)")
    assert "_process" in (row.traceback or "")
    assert snapshots(engine) == []  # the failed transaction left nothing behind
    assert process_delivery_sync(engine=engine, delivery_id=delivery) == "processed"
    row = delivery_row(engine, delivery)
    assert (row.status, row.attempts, row.error, row.traceback) == ("processed", 2, None, None)
    with Session(engine) as session:
        count = session.exec(sa.text("SELECT COUNT(*) FROM metric_history")).one()  # type: ignore[call-overload]
        assert count[0] == len(STORY_METRICS)


def test_missing_delivery_is_not_found(engine: Engine) -> None:
    """Processing an id that was never archived says so by name."""
    with pytest.raises(NotFoundError, match="no webhook delivery with id 424242"):
        process_delivery_sync(engine=engine, delivery_id=424242)
