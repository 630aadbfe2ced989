"""Instagram account insights, end to end: the real arq worker (or the real job with the
worker's ctx), real Redis, the simulator over HTTP, SQLite and PostgreSQL; closed Meta days
stored with the window they cover, withheld != zero != not fetched, and every failure branch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from arq import Retry
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from archiver.status.as_json import problem_totals
from archiver.status.as_text import account_lines
from core.config import Settings
from metasim.api.instagram_account import daily_value
from metasim.world.entities import Call
from models.accounts import Account, MetricUnavailable
from models.snapshots import Media
from models.types import UTCDateTime, utcnow
from reports.coverage import account_statuses
from reports.pauses import PauseReport
from tests.conftest import make_settings
from tests.metasim_fixtures import RunningSim
from tests.workers_harness import eventually, job_context, running_workers
from workers.captures.account_insights import (
    AFTER_MIDNIGHT,
    CATCH_UP_GAP,
    DAYS_PER_RUN,
    HORIZON_DAYS,
    MAX_TRIES,
    capture_account_insights,
    next_midnight,
)
from workers.captures.tick import schedule_due
from workers.meta.days import Window, closed_days, day_start, pacific
from workers.meta.metric_sets import DAY_CALLS, DEMOGRAPHIC_CALLS, DEMOGRAPHIC_METRICS
from workers.runtime.context import Context

PAUSES = PauseReport(by_ig_user=None, unknown_because="not asked")


def settings_for(engine: Engine, redis_url: str, sim: RunningSim, **kw: Any) -> Settings:
    url = engine.url.render_as_string(hide_password=False)
    base: dict[str, Any] = {
        "story_poll_seconds": 3600,
        "schedule_tick_seconds": 1,
        "meta_minute_seconds": 1.0,
        "ig_account_insights": True,
    }
    return make_settings(url, redis_url, **(base | sim.settings_overrides() | kw))


def register(engine: Engine, sim: RunningSim, **spec: Any) -> Account:
    """An IG account in the simulator and in the archiver."""
    ig = sim.world.add_account(**spec)
    account = Account(name=f"shop{ig.ig_user_id[-4:]}", ig_user_id=ig.ig_user_id, ig_token=ig.token)
    with Session(engine, expire_on_commit=False) as session:
        session.add(account)
        session.commit()
    return account


def account_of(engine: Engine, account_id: int) -> Account:
    with Session(engine) as session:
        found = session.get(Account, account_id)
        assert found is not None
        return found


def rows(engine: Engine, view: str, where: str = "1 = 1", **params: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        result = conn.execute(sa.text(f"SELECT * FROM {view} WHERE {where}"), params)
        return [dict(row._mapping) for row in result]


def as_utc(value: Any, engine: Engine) -> datetime:
    found = UTCDateTime().process_result_value(value, engine.dialect)
    assert found is not None
    return found


def insight_calls(sim: RunningSim) -> list[Call]:
    return [c for c in sim.world.log.calls(kind="account_insights") if c.status == 200]


def day_of(window: Window) -> str:
    return (window.until - timedelta(days=1)).date().isoformat()


@asynccontextmanager
async def run_ctx(
    engine: Engine, redis_url: str, sim: RunningSim, **spec: Any
) -> AsyncIterator[tuple[Context, Account, int]]:
    """(the worker's ctx, an account registered in both, its id)."""
    account = register(engine, sim, **spec)
    assert account.id is not None
    async with job_context(settings_for(engine, redis_url, sim)) as ctx:
        yield ctx, account, account.id


@pytest.mark.anyio
async def test_switched_off_the_tick_enqueues_no_account_insights(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """IG_ACCOUNT_INSIGHTS=false: a due account gets no run and Meta no insights call."""
    register(engine, sim)
    async with job_context(settings_for(engine, redis_url, sim, ig_account_insights=False)) as ctx:
        counts = await schedule_due(ctx)
    assert counts["account_insights"] == 0
    assert counts["story_polls"] == 1  # the same tick did its other work
    assert insight_calls(sim) == []


@pytest.mark.anyio
async def test_the_worker_stores_closed_days_with_their_window_and_the_demographics(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """The tick runs the account's insights: the newest closed Pacific days, each asked with
    since/until on Meta's day bounds and stored with its end, values as Meta gives them
    (views by media_product_type summing to the total), and the demographics of the day."""
    account = register(engine, sim)
    sim_account = sim.world.account(account.ig_user_id)
    async with running_workers(settings_for(engine, redis_url, sim)):
        await eventually(lambda: account_of(engine, account.id or 0).ig_insights_polled_at)
    calls = insight_calls(sim)
    assert len(calls) == DAYS_PER_RUN * len(DAY_CALLS) + len(DEMOGRAPHIC_CALLS)
    for call in calls:
        assert "impressions" not in call.params["metric"]
        if "since" in call.params:
            since, until = (
                datetime.fromtimestamp(int(call.params[k]), UTC) for k in ("since", "until")
            )
            assert (day_start(since), day_start(until)) == (since, until)
            assert until <= utcnow()
    windows = closed_days(utcnow(), DAYS_PER_RUN)
    daily = rows(engine, "ig_account_daily")
    assert {r["day"] for r in daily} == {day_of(w) for w in windows}
    for window in windows:
        day = [r for r in daily if r["day"] == day_of(window)]
        assert {as_utc(r["end_time"], engine) for r in day} == {window.until}
        reach = next(r for r in day if r["metric"] == "reach" and r["breakdown"] is None)
        assert reach["value"] == daily_value(sim_account, "reach", window.since)
        views = [r for r in day if r["metric"] == "views"]
        total = next(r["value"] for r in views if r["breakdown"] is None)
        by_type = {
            r["dimension"]: r["value"] for r in views if r["breakdown"] == "media_product_type"
        }
        assert "STORY" in by_type
        assert sum(by_type.values()) == total
        followers = next(r for r in day if r["metric"] == "follower_count")
        assert followers["value"] == daily_value(sim_account, "follower_count", window.since)
    demographics = rows(engine, "ig_account_demographics")
    assert {(r["metric"], r["breakdown"]) for r in demographics} == {
        (m, call.breakdown) for m in DEMOGRAPHIC_METRICS for call in DEMOGRAPHIC_CALLS
    }
    ages = [
        r["value"]
        for r in demographics
        if r["metric"] == "follower_demographics" and r["breakdown"] == "age"
    ]
    assert sum(ages) == sim_account.followers_count
    found = account_of(engine, account.id or 0)
    assert found.ig_insights_failures == 0
    assert found.next_ig_insights_at is not None
    assert found.next_ig_insights_at - utcnow() < timedelta(minutes=2)  # catch-up continues


@pytest.mark.anyio
async def test_a_withheld_day_is_unavailable_not_zero_and_a_small_account_has_no_followers(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """A day Meta has no data for is stored as null rows flagged `unavailable`, beside days
    with values; below 100 followers follower_count and the demographics are unavailable too."""
    withheld = closed_days(utcnow(), 2)[1]
    async with run_ctx(engine, redis_url, sim, followers_count=40) as (ctx, account, aid):
        sim.world.account(account.ig_user_id).withheld_days = (_pacific_date(withheld),)
        await capture_account_insights(ctx, aid, 0)
    daily = rows(engine, "ig_account_daily")
    gone = [r for r in daily if r["day"] == day_of(withheld)]
    assert gone
    assert all(r["value"] is None and r["flag"] == "unavailable" for r in gone)
    kept = [r for r in daily if r["day"] != day_of(withheld) and r["breakdown"] is None]
    assert any(r["metric"] == "reach" and r["value"] for r in kept)
    followers = [r for r in kept if r["metric"] == "follower_count"]
    assert followers
    assert all(r["flag"] == "unavailable" and r["value"] is None for r in followers)
    demographics = rows(engine, "ig_account_demographics")
    assert len(demographics) == len(DEMOGRAPHIC_METRICS) * len(DEMOGRAPHIC_CALLS)
    assert all(r["flag"] == "unavailable" and r["value"] is None for r in demographics)


def _pacific_date(window: Window) -> str:
    return window.since.astimezone(pacific()).date().isoformat()


@pytest.mark.anyio
async def test_a_metric_meta_refuses_is_not_supported_and_the_rest_is_kept(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """(#100) naming one metric: it is recorded for the account, stored as `not_supported`
    rows (not asked again), and every other metric of the day is stored."""
    async with run_ctx(engine, redis_url, sim) as (ctx, account, aid):
        sim.world.account(account.ig_user_id).insights_refuses = ("profile_links_taps",)
        await capture_account_insights(ctx, aid, 0)
    daily = rows(engine, "ig_account_daily", "metric = 'profile_links_taps'")
    assert daily
    assert all(r["flag"] == "not_supported" and r["value"] is None for r in daily)
    assert {r["breakdown"] for r in daily} == {None, "contact_button_type"}
    with Session(engine) as session:
        refused = session.exec(select(MetricUnavailable.metric).where(
            col(MetricUnavailable.platform) == "instagram")).all()  # fmt: skip
    assert refused == ["profile_links_taps"]
    asked = [c.params["metric"] for c in sim.world.log.calls(kind="account_insights")]
    assert sum("profile_links_taps" in m for m in asked) == 1  # refused once, then dropped
    assert rows(engine, "ig_account_daily", "metric = 'likes' AND value > 0")


@pytest.mark.anyio
async def test_a_throttle_stops_the_run_and_the_next_waits_the_pause_then_recovers(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """(#17) on a day's first call: the cut day is not stored at all (no partial day), the
    next run is due after the pause, with no failure counted; after it all days are stored."""
    async with run_ctx(engine, redis_url, sim) as (ctx, account, aid):
        sim.world.faults.add(account=account.ig_user_id, kind="account_insights", code=17,
                             regain_minutes=1)  # fmt: skip
        outcome = await capture_account_insights(ctx, aid, 0)
        assert outcome.startswith("stopped")
        assert rows(engine, "ig_account_daily") == []
        found = account_of(engine, account.id or 0)
        assert found.next_ig_insights_at is not None
        assert found.next_ig_insights_at > utcnow()
        assert found.ig_insights_failures == 0  # a throttle is no failure of the account
        await _wait_pause(ctx, account)
        await capture_account_insights(ctx, aid, 1)
    assert len({r["day"] for r in rows(engine, "ig_account_daily")}) == DAYS_PER_RUN


async def _wait_pause(ctx: Context, account: Account) -> None:
    """Sleep out the account's shared pause (one simulated minute: 1 s)."""
    pacer = ctx["graph"].pacer
    assert pacer is not None
    remaining = await pacer.remaining(f"ig:{account.ig_user_id}")
    assert 0 < remaining <= 2
    await asyncio.sleep(remaining + 0.05)


@pytest.mark.anyio
async def test_a_5xx_is_retried_then_backs_off_and_a_success_clears_it(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """Meta's 500 after the client's own retries: the job is retried while tries remain,
    then the account backs off with the reason shown; the next success clears it."""
    async with run_ctx(engine, redis_url, sim) as (ctx, account, aid):
        sim.world.faults.add(account=account.ig_user_id, kind="account_insights", status=500,
                             code=1, count=50)  # fmt: skip
        ctx["graph"].transport.backoff_seconds = 0.01  # the client's own retries, quickly
        with pytest.raises(Retry):
            await capture_account_insights(ctx, aid, 0)
        ctx["job_try"] = MAX_TRIES
        outcome = await capture_account_insights(ctx, aid, 0)
        found = account_of(engine, account.id or 0)
        assert "next run in" in outcome
        assert found.ig_insights_failures == 1
        assert found.ig_insights_problem
        assert "Meta kept failing" in found.ig_insights_problem
        statuses = account_statuses(engine, now=utcnow(), grace=timedelta(minutes=5))
        assert problem_totals(statuses)["accounts_with_problem"] == 1
        assert "insights problem" in "\n".join(account_lines(statuses[0], PAUSES, utcnow()))
        sim.world.faults.clear()
        ctx["job_try"] = 1
        await capture_account_insights(ctx, aid, 1)
        found = account_of(engine, account.id or 0)
    assert found.ig_insights_failures == 0
    assert found.ig_insights_problem is None


@pytest.mark.anyio
async def test_a_revoked_token_flags_the_account_and_stops_its_runs(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """An expired token (#190): the account is flagged for re-authorisation, and a flagged
    account is no longer run."""
    async with run_ctx(engine, redis_url, sim) as (ctx, account, aid):
        sim.world.tokens.expire_token(account=account.ig_user_id)
        await capture_account_insights(ctx, aid, 0)
        assert account_of(engine, account.id or 0).state == "reauth_required"
        sim.world.log.clear()
        assert (await capture_account_insights(ctx, aid, 1)).startswith("skipped")
    assert insight_calls(sim) == []


@pytest.mark.anyio
async def test_runs_catch_up_the_recent_days_then_wait_for_the_next_midnight(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """Missing days are filled DAYS_PER_RUN a run, a minute apart, back to HORIZON_DAYS;
    then the next run is due after the next Pacific midnight, and the demographics were
    asked once that day."""
    async with run_ctx(engine, redis_url, sim) as (ctx, _, aid):
        runs, due = 0, None
        while runs < 20:
            runs += 1
            await capture_account_insights(ctx, aid, runs)
            due = account_of(engine, aid).next_ig_insights_at
            assert due is not None
            if due - utcnow() > CATCH_UP_GAP:
                break
    assert runs == -(-HORIZON_DAYS // DAYS_PER_RUN)
    assert due is not None
    assert len({r["day"] for r in rows(engine, "ig_account_daily")}) == HORIZON_DAYS
    assert due - AFTER_MIDNIGHT == next_midnight(utcnow())
    asked = [c for c in insight_calls(sim) if c.params["period"] == "lifetime"]
    assert len(asked) == len(DEMOGRAPHIC_CALLS)


@pytest.mark.parametrize(
    ("local", "midnight"),
    [
        ("2026-03-07T23:30", "2026-03-08T00:00"),  # late in the evening: an hour away
        ("2026-03-08T00:10", "2026-03-09T00:00"),  # the 23-hour day (clocks go forward)
        ("2026-11-01T12:00", "2026-11-02T00:00"),  # the 25-hour day (clocks go back)
    ],
)
def test_the_next_run_follows_the_next_pacific_midnight(local: str, midnight: str) -> None:
    """Whatever the hour and the day's length, the daily run is due after the next midnight."""
    zone = pacific()
    now = datetime.fromisoformat(local).replace(tzinfo=zone)
    assert next_midnight(now) == datetime.fromisoformat(midnight).replace(tzinfo=zone)


@pytest.mark.anyio
async def test_a_story_final_due_soon_goes_first(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """A live story of the account whose final is due within minutes, though a regular slot
    comes before it: the run makes no call and is due again just after that final."""
    async with run_ctx(engine, redis_url, sim) as (ctx, _, aid):
        final_at = utcnow() + timedelta(minutes=3)
        margin = timedelta(seconds=ctx["settings"].story_final_margin_seconds)
        with Session(engine) as session:
            session.add(Media(account_id=aid, platform="instagram", subject_type="story",
                              media_id="18000000000000001", capture_state="live",
                              next_slot="s1", next_capture_at=utcnow(),
                              expires_at=final_at + margin))  # fmt: skip
            session.add(Media(account_id=aid, platform="instagram", subject_type="story",
                              media_id="18000000000000002", capture_state="live",
                              next_slot="s1", next_capture_at=utcnow(),
                              expires_at=final_at + margin + timedelta(hours=5)))  # fmt: skip
            session.commit()
        outcome = await capture_account_insights(ctx, aid, 0)
    assert outcome.startswith("deferred")
    assert insight_calls(sim) == []
    found = account_of(engine, aid)
    assert found.next_ig_insights_at is not None
    assert final_at < found.next_ig_insights_at <= final_at + timedelta(minutes=2)
    assert found.last_error is None  # waiting its turn is no error
