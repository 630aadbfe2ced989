"""Every failure branch of the story jobs, driven one try at a time: the real job functions,
with the ctx the worker gives them, against the simulator over HTTP, real Redis and both
databases. Throttled, expired token, transient, permission denied, #100 on the account,
ObjectNotFound, and an exception nobody planned for (a real database fault)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from arq import Retry
from sqlalchemy.engine import Engine

from core.config import Settings
from jobqueue.names import MAIN_QUEUE, capture_job_id
from models.types import utcnow
from tests.db_faults import failing_inserts
from tests.metasim_fixtures import RunningSim
from tests.test_stories import DAY, account_row, register, stories, story_settings
from tests.workers_harness import job_context, job_failures
from workers.captures.jobs import CAPTURE_MAX_TRIES
from workers.captures.stories import LISTING_MAX_TRIES, capture_story, poll_stories
from workers.captures.tick import schedule_due
from workers.runtime.context import Context

# Meta's answers for errors that retrying cannot fix, on the account's own listing.
REFUSALS: dict[str, dict[str, Any]] = {
    "permission": {"code": 10, "message": "(#10) Application does not have permission"},
    "account": {"code": 100, "message": "(#100) Unsupported get request."},
    "not_found": {
        "code": 100,
        "subcode": 33,
        "message": "Unsupported get request. Object with ID '1' does not exist",
    },
}
REASONS = {
    "permission": "permission denied",
    "account": "Meta rejected the account",
    "not_found": "Meta rejected the account",
}


def settings_for(engine: Engine, redis_url: str, sim: RunningSim) -> Settings:
    """Listings every 15 min (the back-off's cap for transient failures), slots every 10."""
    url = engine.url.render_as_string(hide_password=False)
    return story_settings(url, redis_url, sim, story_poll_seconds=900, story_snapshot_seconds=600)


def seconds_until(when: datetime | None) -> float:
    assert when is not None
    return (when - utcnow()).total_seconds()


@asynccontextmanager
async def listing_ctx(
    engine: Engine, redis_url: str, sim: RunningSim
) -> AsyncIterator[tuple[Context, str, int]]:
    """(ctx, ig user id, account id) for an account registered on both sides."""
    ig = register(engine, sim.world)
    account_id = account_row(engine, ig).id
    assert account_id is not None
    async with job_context(settings_for(engine, redis_url, sim)) as ctx:
        yield ctx, ig, account_id


@asynccontextmanager
async def capture_ctx(
    engine: Engine, redis_url: str, sim: RunningSim
) -> AsyncIterator[tuple[Context, str, str]]:
    """(ctx, ig user id, media id) with a live story listed and its first slot due."""
    async with listing_ctx(engine, redis_url, sim) as (ctx, ig, account_id):
        story = sim.world.add_story(ig, age_seconds=DAY - 3600)
        await poll_stories(ctx, account_id)
        assert stories(engine)[story.id].next_slot == "first"
        yield ctx, ig, story.id


# --- listings ---------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("refusal", sorted(REFUSALS))
async def test_a_listing_meta_refuses_backs_off_says_why_and_clears_on_success(
    engine: Engine, redis_url: str, sim: RunningSim, refusal: str
) -> None:
    """Permission, #100 on the account, ObjectNotFound: next try in 1 min, then 2, with the
    reason and last error on the account; the next success resets both."""
    async with listing_ctx(engine, redis_url, sim) as (ctx, ig, account_id):
        sim.world.faults.add(account=ig, kind="stories", count=2, status=400, **REFUSALS[refusal])
        first = await poll_stories(ctx, account_id)
        once = account_row(engine, ig)
        await poll_stories(ctx, account_id)
        twice = account_row(engine, ig)
        await poll_stories(ctx, account_id)  # the fault is spent
        fixed = account_row(engine, ig)
    assert "next listing in 1 min" in first
    assert (once.ig_failures, twice.ig_failures, fixed.ig_failures) == (1, 2, 0)
    assert 55 < seconds_until(once.next_story_poll_at) <= 60
    assert 115 < seconds_until(twice.next_story_poll_at) <= 120
    assert (once.ig_problem or "").startswith(REASONS[refusal])
    assert "failed 2x in a row; next try in 2 min" in (twice.ig_problem or "")
    assert str(REFUSALS[refusal]["code"]) in (twice.last_error or "")
    assert twice.last_error_at is not None
    assert fixed.ig_problem is None
    assert fixed.stories_polled_at is not None
    assert 890 < seconds_until(fixed.next_story_poll_at) <= 900
    assert len(sim.world.log.calls(kind="stories")) == 3
    assert job_failures(redis_url) == {"poll_stories|gave_up": 2}


@pytest.mark.anyio
async def test_a_throttled_listing_waits_out_the_pause_without_calling(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """80002: due again after the regain time; a listing meanwhile makes no call; a
    throttle is no account problem."""
    async with listing_ctx(engine, redis_url, sim) as (ctx, ig, account_id):
        sim.world.faults.add(code=80002, account=ig, kind="stories", regain_minutes=3)
        first = await poll_stories(ctx, account_id)
        paused = await poll_stories(ctx, account_id)
    row = account_row(engine, ig)
    assert first.startswith("listing failed (Throttled): throttled, next listing in")
    assert paused.startswith("listing failed (AccountPaused)")
    assert len(sim.world.log.calls(kind="stories")) == 1  # the second never reached Meta
    assert 0 < seconds_until(row.next_story_poll_at) <= 10  # the pause, in "minutes" of 1 s
    assert (row.ig_failures, row.ig_problem, row.state) == (0, None, "active")
    assert "is paused for" in (row.last_error or "")  # the second try's reason
    assert job_failures(redis_url) == {"poll_stories|gave_up": 2}


@pytest.mark.anyio
async def test_an_expired_token_flags_the_account_and_keeps_the_error(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """190: reauth_required, with the error and its time; not counted as an account problem."""
    async with listing_ctx(engine, redis_url, sim) as (ctx, ig, account_id):
        sim.world.tokens.expire_token(account_row(engine, ig).ig_token)
        outcome = await poll_stories(ctx, account_id)
        again = await poll_stories(ctx, account_id)
    row = account_row(engine, ig)
    assert outcome == "listing failed (AuthError): the token needs re-authorisation"
    assert again == "skipped: account removed or not active"
    assert row.state == "reauth_required"
    assert "190" in (row.last_error or "")
    assert row.last_error_at is not None
    assert (row.ig_failures, row.ig_problem) == (0, None)


@pytest.mark.anyio
async def test_a_transient_listing_failure_is_retried_then_backs_off(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """5xx: arq retries the job (1 s, 2 s); the last try gives up: due again in 1 min."""
    async with listing_ctx(engine, redis_url, sim) as (ctx, ig, account_id):
        sim.world.faults.add(status=500, account=ig, kind="stories", seconds=600)
        with pytest.raises(Retry) as first:
            await poll_stories(ctx, account_id)
        retried = account_row(engine, ig)
        ctx["job_try"] = LISTING_MAX_TRIES
        outcome = await poll_stories(ctx, account_id)
    row = account_row(engine, ig)
    assert first.value.defer_score == 1000
    assert retried.next_story_poll_at is None  # still due: arq holds the job meanwhile
    assert "unknown error" in (retried.last_error or "")
    assert outcome == "listing failed (Transient): next listing in 1 min"
    assert (row.ig_problem or "").startswith("Meta kept failing")
    assert 55 < seconds_until(row.next_story_poll_at) <= 60
    assert job_failures(redis_url) == {"poll_stories|retry": 1, "poll_stories|gave_up": 1}


@pytest.mark.anyio
async def test_an_unexpected_error_in_a_listing_is_retried_then_backs_off_and_recovers(
    engine: Engine, redis_url: str, sim: RunningSim, caplog: pytest.LogCaptureFixture
) -> None:
    """A database fault storing the stories: kept as the last error, logged with its
    traceback, retried; the last try backs off; once the fault is gone the listing works."""
    async with listing_ctx(engine, redis_url, sim) as (ctx, ig, account_id):
        story = sim.world.add_story(ig, age_seconds=DAY - 3600)
        with failing_inserts(engine, "media"):
            with pytest.raises(Retry):
                await poll_stories(ctx, account_id)
            retried = account_row(engine, ig)
            ctx["job_try"] = LISTING_MAX_TRIES
            outcome = await poll_stories(ctx, account_id)
        gave_up = account_row(engine, ig)
        ctx["job_try"] = 1
        await poll_stories(ctx, account_id)
    assert "injected fault" in (retried.last_error or "")
    assert outcome == "next listing in 1 min"
    assert (gave_up.ig_problem or "").startswith("listing stories failed unexpectedly")
    assert gave_up.ig_failures == 1
    assert "Traceback (most recent call last)" in caplog.text
    assert "_store_listing" in caplog.text
    assert set(stories(engine)) == {story.id}
    assert (account_row(engine, ig).ig_failures, account_row(engine, ig).ig_problem) == (0, None)
    assert job_failures(redis_url) == {"poll_stories|retry": 1, "poll_stories|gave_up": 1}


# --- captures ---------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"code": 80002, "regain_minutes": 2}, id="throttled"),
        pytest.param({"status": 500, "seconds": 600}, id="transient"),
    ],
)
async def test_a_throttled_or_transient_capture_is_retried_then_skips_its_slot(
    engine: Engine, redis_url: str, sim: RunningSim, fault: dict[str, Any]
) -> None:
    """arq retries the capture (after the pause, or 1 s); the last try skips the slot and
    the story's schedule goes on."""
    async with capture_ctx(engine, redis_url, sim) as (ctx, ig, media_id):
        sim.world.faults.add(account=ig, kind="insights", **fault)
        with pytest.raises(Retry) as first:
            await capture_story(ctx, media_id, "first")
        retried = stories(engine)[media_id]
        ctx["job_try"] = CAPTURE_MAX_TRIES
        outcome = await capture_story(ctx, media_id, "first")
    media = stories(engine)[media_id]
    assert (first.value.defer_score or 0) >= 1000
    assert retried.next_slot == "first"
    assert retried.last_error is not None
    assert retried.last_error_at is not None
    assert outcome.startswith("skipped first:")
    assert media.capture_state == "live"
    assert media.next_slot not in (None, "first")
    assert job_failures(redis_url) == {"capture_story|retry": 1, "capture_story|gave_up": 1}


def set_next(engine: Engine, media_id: str, slot: str, due: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE media SET next_slot = :s, next_capture_at = :due WHERE media_id = :m"),
            {"s": slot, "due": due, "m": media_id},
        )


@pytest.mark.anyio
async def test_a_throttled_final_waits_in_the_database_and_keeps_its_headstart(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """A final refused by a pause is not retried by arq (which would score it behind every
    capture the pause held back): it is due again when the pause ends, and the tick then
    enqueues it an hour ahead of its due time."""
    async with capture_ctx(engine, redis_url, sim) as (ctx, _ig, media_id):
        set_next(engine, media_id, "final", utcnow())  # the final is due (the tick's doing)
        pacer = ctx["graph"].pacer
        assert pacer is not None
        await pacer.pause("app", 30, reason="app_limit")
        outcome = await capture_story(ctx, media_id, "final")
        waiting = stories(engine)[media_id]
        await ctx["redis"].delete("archiver:pause:app")
        set_next(engine, media_id, "final", utcnow() - timedelta(seconds=1))  # the pause ended
        ctx.pop("score", None)
        await schedule_due(ctx)
        score = await ctx["redis"].zscore(
            MAIN_QUEUE, capture_job_id("instagram", media_id, "final")
        )
    assert outcome.startswith("final throttled")
    assert (waiting.next_slot, waiting.capture_state) == ("final", "live")
    assert 29 <= seconds_until(waiting.next_capture_at) <= 34  # the pause, plus jitter
    assert score is not None
    assert score / 1000 < utcnow().timestamp() - 3000  # an hour's headstart
    assert sim.world.log.calls(kind="insights") == []
    assert job_failures(redis_url) == {"capture_story|retry": 1}


@pytest.mark.anyio
@pytest.mark.parametrize("refusal", ["permission", "account"])
async def test_a_capture_meta_refuses_skips_its_slot_at_once(
    engine: Engine, redis_url: str, sim: RunningSim, refusal: str
) -> None:
    """Retrying cannot fix it: no retry, the slot is skipped with the error kept."""
    async with capture_ctx(engine, redis_url, sim) as (ctx, ig, media_id):
        sim.world.faults.add(account=ig, kind="insights", status=400, **REFUSALS[refusal])
        outcome = await capture_story(ctx, media_id, "first")
    media = stories(engine)[media_id]
    assert outcome.startswith("skipped first:")
    assert media.next_slot not in (None, "first")
    assert str(REFUSALS[refusal]["code"]) in (media.last_error or "")
    assert job_failures(redis_url) == {"capture_story|gave_up": 1}


@pytest.mark.anyio
async def test_a_story_meta_no_longer_has_is_closed_as_missed(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """ObjectNotFound: the story is gone; it is closed with the reason, nothing scheduled."""
    async with capture_ctx(engine, redis_url, sim) as (ctx, ig, media_id):
        sim.world.faults.add(account=ig, kind="insights", status=400, **REFUSALS["not_found"])
        outcome = await capture_story(ctx, media_id, "first")
    media = stories(engine)[media_id]
    assert outcome == "missed: story not found"
    assert (media.capture_state, media.next_slot) == ("missed", None)
    assert (media.missed_reason or "").startswith("the story is gone")


@pytest.mark.anyio
async def test_an_expired_token_during_a_capture_flags_the_account_and_skips(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """190 on insights: the account is flagged, the slot skipped, the error kept."""
    async with capture_ctx(engine, redis_url, sim) as (ctx, ig, media_id):
        sim.world.tokens.expire_token(account_row(engine, ig).ig_token)
        outcome = await capture_story(ctx, media_id, "first")
    assert outcome.startswith("skipped first: AuthError")
    assert account_row(engine, ig).state == "reauth_required"
    assert "190" in (stories(engine)[media_id].last_error or "")


@pytest.mark.anyio
async def test_an_unexpected_error_in_a_capture_is_retried_then_skips_its_slot(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """A database fault recording the snapshot: retried, then the slot is skipped with the
    reason; the next slot is captured once the fault is gone."""
    async with capture_ctx(engine, redis_url, sim) as (ctx, _ig, media_id):
        with failing_inserts(engine, "snapshot_raw"):
            with pytest.raises(Retry):
                await capture_story(ctx, media_id, "first")
            retried = stories(engine)[media_id]
            ctx["job_try"] = CAPTURE_MAX_TRIES
            outcome = await capture_story(ctx, media_id, "first")
        skipped = stories(engine)[media_id]
        ctx["job_try"] = 1
        assert skipped.next_slot is not None
        captured = await capture_story(ctx, media_id, skipped.next_slot)
    assert "injected fault" in (retried.last_error or "")
    assert outcome.startswith(f"skipped first: gave up after {CAPTURE_MAX_TRIES} tries")
    assert captured.startswith("captured")
    assert job_failures(redis_url) == {"capture_story|retry": 1, "capture_story|gave_up": 1}
