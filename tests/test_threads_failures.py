"""Every failure branch of the Threads jobs, one try at a time: the real poll and post capture
with the worker's ctx, against the simulator over HTTP, real Redis and both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from arq import Retry
from sqlalchemy.engine import Engine

from models.accounts import Account
from tests.db_faults import failing_inserts
from tests.metasim_fixtures import RunningSim
from tests.test_story_failures import REASONS, REFUSALS, seconds_until
from tests.test_threads_jobs import account_of, posts, register, snapshots, threads_settings
from tests.workers_harness import job_context, job_failures
from workers.captures.jobs import CAPTURE_MAX_TRIES
from workers.captures.threads_polls import POLL_MAX_TRIES, poll_threads
from workers.captures.threads_posts import capture_threads_post
from workers.runtime.context import Context

THROTTLED = {"code": 17, "regain_minutes": 3}  # (#17) User request limit reached


@asynccontextmanager
async def poll_ctx(
    engine: Engine, redis_url: str, sim: RunningSim
) -> AsyncIterator[tuple[Context, Account]]:
    """(ctx, account) for an account with a linked Threads profile; polls hourly, post
    snapshots 1 h and 6 h after posting."""
    account = register(engine, sim.world)
    settings = threads_settings(
        engine,
        redis_url,
        sim,
        threads_poll_seconds=3600,
        threads_post_snapshots="1h,6h",
        threads_post_weekly_until="0s",
    )
    async with job_context(settings) as ctx:
        yield ctx, account


@asynccontextmanager
async def post_ctx(
    engine: Engine, redis_url: str, sim: RunningSim
) -> AsyncIterator[tuple[Context, Account, str]]:
    """(ctx, account, media id) with a post listed by a poll and its first capture due."""
    async with poll_ctx(engine, redis_url, sim) as (ctx, account):
        post = sim.world.add_threads_post(account.threads_user_id or "", age_seconds=60)
        assert account.id is not None
        await poll_threads(ctx, account.id, 0)
        assert posts(engine)[post.id].next_slot == "first"
        yield ctx, account, post.id


def threads_fault(sim: RunningSim, account: Account, kind: str, **fault: Any) -> None:
    sim.world.faults.add(account=account.threads_user_id, kind=kind, **fault)


# --- polls ------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("refusal", sorted(REFUSALS))
async def test_a_poll_meta_refuses_backs_off_says_why_and_clears_on_success(
    engine: Engine, redis_url: str, sim: RunningSim, refusal: str
) -> None:
    """Permission, #100 on the account, ObjectNotFound: the poll stops, waits 1 min, then 2,
    with the reason on the account; the next success resets both."""
    async with poll_ctx(engine, redis_url, sim) as (ctx, account):
        assert account.id is not None
        threads_fault(sim, account, "threads_insights", count=2, status=400, **REFUSALS[refusal])
        first = await poll_threads(ctx, account.id, 0)
        once = account_of(engine, account.id)
        await poll_threads(ctx, account.id, 1)
        twice = account_of(engine, account.id)
        await poll_threads(ctx, account.id, 2)
    fixed = account_of(engine, account.id)
    assert first.endswith("next poll in 1 min")
    assert (once.threads_failures, twice.threads_failures, fixed.threads_failures) == (1, 2, 0)
    assert 55 < seconds_until(once.next_threads_poll_at) <= 60
    assert 115 < seconds_until(twice.next_threads_poll_at) <= 120
    assert (twice.threads_problem or "").startswith(REASONS[refusal])
    assert "threads" in (twice.threads_problem or "")  # the Threads permission or id to check
    assert fixed.threads_problem is None
    assert fixed.threads_polled_at is not None
    assert [s.slot for s in snapshots(engine, "threads_user")] == ["poll:2"]
    assert job_failures(redis_url) == {"poll_threads|gave_up": 2}


@pytest.mark.anyio
async def test_a_throttled_poll_stops_and_waits_out_the_pause(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """#17: no further call in this poll, due again after the regain time, no problem set."""
    async with poll_ctx(engine, redis_url, sim) as (ctx, account):
        assert account.id is not None
        threads_fault(sim, account, "threads_insights", **THROTTLED)
        outcome = await poll_threads(ctx, account.id, 0)
    row = account_of(engine, account.id)
    assert outcome.startswith("stopped:")
    assert len(sim.world.log.calls(kind="threads_insights")) == 1
    assert sim.world.log.calls(kind="threads") == []  # posts are not listed either
    assert 0 < seconds_until(row.next_threads_poll_at) <= 10  # the pause, in "minutes" of 1 s
    assert (row.threads_failures, row.threads_problem) == (0, None)
    assert "17" in (row.last_error or "")
    assert job_failures(redis_url) == {"poll_threads|gave_up": 1}


@pytest.mark.anyio
async def test_an_expired_threads_token_flags_its_side_only(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """190: the Threads side needs re-authorisation, the Instagram side stays active."""
    async with poll_ctx(engine, redis_url, sim) as (ctx, account):
        assert account.id is not None
        sim.world.tokens.expire_token(account.threads_token or "")
        await poll_threads(ctx, account.id, 0)
        again = await poll_threads(ctx, account.id, 1)
    row = account_of(engine, account.id)
    assert (row.threads_state, row.state) == ("reauth_required", "active")
    assert again == "skipped: no usable Threads token"
    assert "190" in (row.last_error or "")
    assert row.last_error_at is not None


@pytest.mark.anyio
async def test_a_transient_poll_failure_is_retried_before_anything_is_kept(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """5xx: retried whole (nothing stored under the poll's slot meanwhile); the last try
    keeps what it has and backs off."""
    async with poll_ctx(engine, redis_url, sim) as (ctx, account):
        assert account.id is not None
        threads_fault(sim, account, "threads_insights", status=500, seconds=600)
        with pytest.raises(Retry):
            await poll_threads(ctx, account.id, 0)
        retried = account_of(engine, account.id)
        ctx["job_try"] = POLL_MAX_TRIES
        outcome = await poll_threads(ctx, account.id, 0)
    row = account_of(engine, account.id)
    assert retried.next_threads_poll_at is None
    assert retried.last_error is not None
    assert snapshots(engine, "threads_user") == []
    assert outcome.endswith("next poll in 1 min")
    assert (row.threads_problem or "").startswith("Meta kept failing")
    assert job_failures(redis_url) == {"poll_threads|retry": 1, "poll_threads|gave_up": 1}


@pytest.mark.anyio
async def test_an_unexpected_error_in_a_poll_is_retried_then_backs_off(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """A database fault storing the snapshot: retried, then due again with back-off."""
    async with poll_ctx(engine, redis_url, sim) as (ctx, account):
        assert account.id is not None
        with failing_inserts(engine, "snapshot"):
            with pytest.raises(Retry):
                await poll_threads(ctx, account.id, 0)
            ctx["job_try"] = POLL_MAX_TRIES
            outcome = await poll_threads(ctx, account.id, 0)
    row = account_of(engine, account.id)
    assert outcome == "next poll in 1 min"
    assert (row.threads_problem or "").startswith("polling Threads failed unexpectedly")
    assert "injected fault" in (row.last_error or "")
    assert job_failures(redis_url) == {"poll_threads|retry": 1, "poll_threads|gave_up": 1}


# --- post captures ----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(THROTTLED, id="throttled"),
        pytest.param({"status": 500, "seconds": 600}, id="transient"),
    ],
)
async def test_a_throttled_or_transient_post_capture_is_retried_then_skips_its_slot(
    engine: Engine, redis_url: str, sim: RunningSim, fault: dict[str, Any]
) -> None:
    """Retried while tries remain; the last try skips the slot, the schedule goes on."""
    async with post_ctx(engine, redis_url, sim) as (ctx, account, media_id):
        threads_fault(sim, account, "threads_media_insights", **fault)
        with pytest.raises(Retry):
            await capture_threads_post(ctx, media_id, "first")
        ctx["job_try"] = CAPTURE_MAX_TRIES
        outcome = await capture_threads_post(ctx, media_id, "first")
    post = posts(engine)[media_id]
    assert outcome.startswith("skipped first:")
    assert (post.capture_state, post.next_slot) == ("tracked", "1h")
    assert post.last_error is not None
    assert job_failures(redis_url) == {
        "capture_threads_post|retry": 1,
        "capture_threads_post|gave_up": 1,
    }


@pytest.mark.anyio
@pytest.mark.parametrize("refusal", ["permission", "account"])
async def test_a_post_capture_meta_refuses_skips_its_slot_at_once(
    engine: Engine, redis_url: str, sim: RunningSim, refusal: str
) -> None:
    """No retry: the slot is skipped with the error kept."""
    async with post_ctx(engine, redis_url, sim) as (ctx, account, media_id):
        threads_fault(sim, account, "threads_media_insights", status=400, **REFUSALS[refusal])
        outcome = await capture_threads_post(ctx, media_id, "first")
    post = posts(engine)[media_id]
    assert outcome.startswith("skipped first:")
    assert post.next_slot == "1h"
    assert str(REFUSALS[refusal]["code"]) in (post.last_error or "")


@pytest.mark.anyio
async def test_a_post_meta_no_longer_has_stops_being_captured(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """ObjectNotFound: capturing is over for the post, with the reason."""
    async with post_ctx(engine, redis_url, sim) as (ctx, account, media_id):
        threads_fault(sim, account, "threads_media_insights", status=400, **REFUSALS["not_found"])
        outcome = await capture_threads_post(ctx, media_id, "first")
    post = posts(engine)[media_id]
    assert outcome == "done: post not found"
    assert (post.capture_state, post.next_slot) == ("done", None)
    assert (post.missed_reason or "").startswith("the post is gone")


@pytest.mark.anyio
async def test_an_expired_token_during_a_post_capture_flags_threads_and_skips(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """190: the Threads side is flagged, the slot skipped."""
    async with post_ctx(engine, redis_url, sim) as (ctx, account, media_id):
        sim.world.tokens.expire_token(account.threads_token or "")
        outcome = await capture_threads_post(ctx, media_id, "first")
    assert outcome.startswith("skipped first: AuthError")
    assert account_of(engine, account.id).threads_state == "reauth_required"


@pytest.mark.anyio
async def test_an_unexpected_error_in_a_post_capture_is_retried_then_skips_its_slot(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """A database fault recording the snapshot: retried, then the slot is skipped."""
    async with post_ctx(engine, redis_url, sim) as (ctx, _account, media_id):
        with failing_inserts(engine, "snapshot_raw"):
            with pytest.raises(Retry):
                await capture_threads_post(ctx, media_id, "first")
            ctx["job_try"] = CAPTURE_MAX_TRIES
            outcome = await capture_threads_post(ctx, media_id, "first")
    post = posts(engine)[media_id]
    assert outcome.startswith(f"skipped first: gave up after {CAPTURE_MAX_TRIES} tries")
    assert "injected fault" in (post.last_error or "")
    assert post.next_slot == "1h"
