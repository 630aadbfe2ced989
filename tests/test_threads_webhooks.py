"""Threads `publish` and `delete` webhooks: posts tracked, replies never, deleted posts
stopped; deliveries processed as the worker does, on SQLite and PostgreSQL, and end to end
with the real arq worker, real Redis and the simulator over HTTP."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from metasim import ThreadsPost, World
from metasim.webhooks import delete_payload, encode, publish_payload, threads_payload
from models.accounts import Account
from models.deliveries import WebhookDelivery
from models.types import utcnow
from tests.metasim_fixtures import RunningSim
from tests.test_deliveries import add_delivery
from tests.test_threads_jobs import account_of, posts, register, snapshots, threads_settings
from tests.workers_harness import eventually, running_workers
from workers.webhooks.process import process_delivery_sync

APP = "1"
Outcome = tuple[str, str]


def deliver(engine: Engine, payload: dict[str, Any]) -> Outcome:
    """Archive a delivery and process it as the worker's job does: (status, summary)."""
    delivery_id = add_delivery(engine, encode(payload), platform="threads")
    status = process_delivery_sync(engine=engine, delivery_id=delivery_id)
    with Session(engine) as session:
        row = session.get(WebhookDelivery, delivery_id)
        assert row is not None
        return status, row.summary or ""


def publish(world: World, post: ThreadsPost, *, detailed: bool = False) -> dict[str, Any]:
    username = world.threads_user(post.user).username
    return publish_payload(post, username, app_id=APP, detailed=detailed)


def hold_poll(engine: Engine, account_id: int | None, **values: Any) -> datetime:
    """The Threads poll is an hour away (so only a webhook can find a post now)."""
    due = utcnow() + timedelta(hours=1)
    with engine.begin() as conn:
        conn.execute(
            sa.update(Account)
            .where(sa.column("id") == account_id)
            .values(next_threads_poll_at=due, **values)
        )
    return due


def next_poll(engine: Engine, account_id: int | None) -> datetime:
    due = account_of(engine, account_id).next_threads_poll_at
    assert due is not None
    return due


def test_a_publish_saying_post_is_tracked_at_once(engine: Engine, sim: RunningSim) -> None:
    """is_reply false: the post's first capture is due now; the poll stays where it was."""
    account = register(engine, sim.world)
    held = hold_poll(engine, account.id)
    post = sim.world.add_threads_post(account.threads_user_id or "")
    assert deliver(engine, publish(sim.world, post, detailed=True)) == (
        "processed",
        "fields: publish; threads posts: 1 published",
    )
    tracked = posts(engine)[post.id]
    assert (tracked.capture_state, tracked.next_slot) == ("tracked", "first")
    assert next_poll(engine, account.id) == held


def test_a_publish_saying_reply_tracks_nothing(engine: Engine, sim: RunningSim) -> None:
    """replied_to / root_post / is_reply: no post row, no capture, the poll left alone."""
    account = register(engine, sim.world)
    held = hold_poll(engine, account.id)
    root = sim.world.add_threads_post(account.threads_user_id or "")
    reply = sim.world.add_threads_post(account.threads_user_id or "", reply_to=root.id)
    status, summary = deliver(engine, publish(sim.world, reply, detailed=True))
    assert (status, summary) == (
        "ignored",
        f"fields: publish; threads reply {reply.id} is not tracked",
    )
    assert posts(engine) == {}
    assert next_poll(engine, account.id) == held


def test_a_silent_publish_brings_the_poll_forward_once_a_minute_at_most(
    engine: Engine, sim: RunningSim
) -> None:
    """Meta's sample shape says nothing of replies: the poll becomes due now, or a minute
    after the last poll; no post is tracked from the webhook itself."""
    account = register(engine, sim.world)
    hold_poll(engine, account.id, threads_polled_at=utcnow() - timedelta(seconds=10))
    post = sim.world.add_threads_post(account.threads_user_id or "")
    assert deliver(engine, publish(sim.world, post)) == (
        "processed",
        "fields: publish; threads posts: 1 left to the listing",
    )
    assert posts(engine) == {}
    due = next_poll(engine, account.id)
    assert utcnow() + timedelta(seconds=40) < due <= utcnow() + timedelta(seconds=50)
    hold_poll(engine, account.id, threads_polled_at=None)
    before = utcnow()
    again = publish(sim.world, post)
    again["time"] += 1  # Meta's retry: another body
    deliver(engine, again)
    assert before <= next_poll(engine, account.id) <= utcnow()


def test_a_failing_threads_side_keeps_its_back_off(engine: Engine, sim: RunningSim) -> None:
    """A publish never pulls forward the poll of a side backing off (failures > 0)."""
    account = register(engine, sim.world)
    held = hold_poll(engine, account.id, threads_failures=2)
    post = sim.world.add_threads_post(account.threads_user_id or "")
    deliver(engine, publish(sim.world, post))
    assert next_poll(engine, account.id) == held


@pytest.mark.anyio
async def test_the_listing_tracks_the_post_and_never_the_reply(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """A post and a reply published in Meta's sample shape: the poll brought forward lists
    /threads, which holds the post only; the post is captured, the reply never asked."""
    account = register(engine, sim.world)
    hold_poll(engine, account.id)
    post = sim.world.add_threads_post(account.threads_user_id or "")
    reply = sim.world.add_threads_post(account.threads_user_id or "", reply_to=post.id)
    for item in (post, reply):
        deliver(engine, publish(sim.world, item))
    settings = threads_settings(engine, redis_url, sim, threads_poll_seconds=3600)
    async with running_workers(settings):
        await eventually(lambda: snapshots(engine, "threads_post"))
    assert set(posts(engine)) == {post.id}
    assert len(sim.world.log.calls(kind="threads")) == 1
    asked = {c.object_id for c in sim.world.log.calls(kind="threads_media_insights")}
    assert asked == {post.id}


@pytest.mark.anyio
async def test_delete_stops_captures_and_keeps_the_snapshots(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """After `delete` the post is `deleted` with Meta's deleted_at and nothing scheduled;
    its first snapshot stays, and no later slot (3 s and 4 s after posting: the delete comes
    first even on a loaded machine) is asked though their due times and polls pass."""
    account = register(engine, sim.world)
    post = sim.world.add_threads_post(account.threads_user_id or "", age_seconds=0)
    settings = threads_settings(
        engine, redis_url, sim, threads_poll_seconds=1, threads_post_snapshots="3s,4s"
    )
    async with running_workers(settings):
        await eventually(lambda: snapshots(engine, "threads_post"))
        sim.world.delete_threads_post(post.id)
        user = sim.world.threads_user(post.user).username
        assert deliver(engine, delete_payload(post, user, app_id=APP))[0] == "processed"
        polls = len(snapshots(engine, "threads_user"))
        await eventually(lambda: len(snapshots(engine, "threads_user")) >= polls + 2)
        last_due = post.timestamp + timedelta(seconds=5)
        await eventually(lambda: utcnow() > last_due)
    gone = posts(engine)[post.id]
    assert (gone.capture_state, gone.next_slot, gone.next_capture_at) == ("deleted", None, None)
    assert post.deleted_at is not None
    assert gone.deleted_at == post.deleted_at.replace(microsecond=0)  # Meta's, to the second
    assert [s.slot for s in snapshots(engine, "threads_post")] == ["first"]
    assert len(sim.world.log.calls(kind="threads_media_insights")) == 1


def test_a_delete_before_its_publish_keeps_the_post_untracked(
    engine: Engine, sim: RunningSim
) -> None:
    """Meta keeps no order: a delete for a post not seen yet records it deleted, and the
    publish delivered afterwards starts no captures."""
    account = register(engine, sim.world)
    post = sim.world.add_threads_post(account.threads_user_id or "")
    sim.world.delete_threads_post(post.id)
    user = sim.world.threads_user(post.user).username
    assert deliver(engine, delete_payload(post, user, app_id=APP)) == (
        "processed",
        "fields: delete; threads posts: 1 deleted",
    )
    deliver(engine, publish(sim.world, post, detailed=True))
    recorded = posts(engine)[post.id]
    assert (recorded.capture_state, recorded.next_slot) == ("deleted", None)
    assert recorded.account_id == account.id


def _value(field: str, value: Any) -> dict[str, Any]:
    return {"field": field, "value": value}


@pytest.mark.parametrize(
    ("field", "value", "target", "outcome"),
    [
        ("publish", {"media_type": "TEXT_POST"}, "user", ("ignored", "without a post id")),
        ("delete", {"deleted_at": "2026-12-01T10:00:00+0000"}, "user", ("ignored", "without")),
        ("delete", "not an object", "user", ("ignored", "without a post id")),
        ("delete", {"id": "17890000000009999"}, "nobody", ("unrouted", "no account")),
        ("publish", {"id": "17890000000009999", "is_reply": False}, "nobody", ("unrouted", "")),
        ("replies", {"id": "1", "replied_to": {"id": "2"}}, "user", ("ignored", "replies")),
    ],
)
def test_unknown_shapes_are_archived_never_crash(
    engine: Engine, sim: RunningSim, field: str, value: Any, target: str, outcome: Outcome
) -> None:
    """Values without an id, for no account, or of other fields: the delivery is kept with
    a note, nothing is tracked and nothing raises."""
    account = register(engine, sim.world)
    target_id = account.threads_user_id if target == "user" else "25999999999999999"
    payload = threads_payload(app_id=APP, target_id=target_id or "", field=field, value={})
    payload["values"] = _value(field, value)
    status, summary = deliver(engine, payload)
    assert status == outcome[0]
    assert outcome[1] in summary
    assert posts(engine) == {}
