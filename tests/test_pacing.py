"""Usage headers and the per-account pause shared through the real Redis."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import httpx
import pytest
from redis.asyncio import Redis

from workers.meta.api_errors import AccountPaused, AppThrottled, Throttled
from workers.meta.pacing import Pacer, Usage, account_usage, parse_app_usage, parse_buc_usage

IG = "17841405309211844"
BUC = {IG: [{"type": "instagram", "call_count": 95, "total_cputime": 20, "total_time": 20,
             "estimated_time_to_regain_access": 0}]}  # fmt: skip


def buc_header(entries: Mapping[str, Any]) -> httpx.Headers:
    return httpx.Headers({"X-Business-Use-Case-Usage": json.dumps(entries)})


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def redis_pair(redis_url: str) -> AsyncIterator[tuple[Redis, Redis]]:
    """Two connections, as two worker processes would have."""
    first, second = Redis.from_url(redis_url), Redis.from_url(redis_url)
    yield first, second
    await first.aclose()
    await second.aclose()


def test_app_usage_header_parses_percentages() -> None:
    """X-App-Usage gives whole-number percentages; the peak is the largest."""
    usage = parse_app_usage('{"call_count":28,"total_time":25,"total_cputime":91}')
    assert usage == Usage(call_count=28, total_time=25, total_cputime=91)
    assert usage.peak == 91


def test_instagram_login_app_usage_shape_parses() -> None:
    """graph.instagram.com's X-App-Usage names (call_volume, cpu_time) [unconfirmed] count."""
    usage = parse_app_usage('{"call_volume":12,"cpu_time":97,"total_time":30}')
    assert usage == Usage(call_count=12, total_time=30, total_cputime=97)
    assert usage.peak == 97
    assert parse_app_usage('{"call_count":true,"total_time":"9"}') == Usage()


def test_buc_header_parses_per_business_object() -> None:
    """X-Business-Use-Case-Usage is keyed by business-object id with a list of entries."""
    parsed = parse_buc_usage(json.dumps(BUC))
    assert parsed == {IG: [Usage(95, 20, 20, 0, "instagram")]}


@pytest.mark.parametrize("raw", [None, "", "not json", "[1, 2]"])
def test_bad_usage_headers_are_ignored(raw: str | None) -> None:
    """Absent or malformed usage headers parse to nothing rather than failing the call."""
    assert parse_app_usage(raw) is None
    assert parse_buc_usage(raw) == {}


def test_account_usage_prefers_the_accounts_own_entry() -> None:
    """An account reads its own BUC entry, and all entries when its id is not a key."""
    entries = {**BUC, "999": [{"call_count": 10, "estimated_time_to_regain_access": 7}]}
    own = account_usage(buc_header(entries), IG)
    assert own is not None
    assert (own.call_count, own.regain_minutes) == (95, 0)
    worst = account_usage(buc_header(entries), "other")
    assert worst is not None
    assert (worst.call_count, worst.regain_minutes) == (95, 7)
    assert account_usage(httpx.Headers(), IG) is None


@pytest.mark.anyio
async def test_pause_is_honoured_by_another_pacer(redis_pair: tuple[Redis, Redis]) -> None:
    """A pause set by one worker stops another worker's calls for that account only."""
    setter, other = Pacer(redis_pair[0]), Pacer(redis_pair[1])
    held = await setter.pause(f"ig:{IG}", 30, reason="throttled")
    assert 30 <= held <= 33
    with pytest.raises(AccountPaused) as caught:
        await other.check(f"ig:{IG}")
    assert 29 < caught.value.retry_after <= held
    await other.check("ig:someone-else")
    resume = float(await redis_pair[1].get(f"archiver:pause:ig:{IG}"))
    assert resume == pytest.approx(time.time() + held, abs=2)
    assert await other.pause_counts(f"ig:{IG}") == {"throttled": 1}


@pytest.mark.anyio
async def test_pause_expires(redis_pair: tuple[Redis, Redis]) -> None:
    """The pause is a key with an expiry: once it lapses, calls may resume."""
    pacer = Pacer(redis_pair[0], jitter=0)
    await pacer.pause(f"ig:{IG}", 0.2, reason="throttled")
    assert await pacer.remaining(f"ig:{IG}") > 0
    with anyio.fail_after(3):
        while await pacer.remaining(f"ig:{IG}") > 0:
            await anyio.sleep(0.02)
    await pacer.check(f"ig:{IG}")
    assert await redis_pair[0].exists(f"archiver:pause:ig:{IG}") == 0


@pytest.mark.anyio
async def test_short_pause_never_cuts_a_longer_one(redis_pair: tuple[Redis, Redis]) -> None:
    """A slow-down after a throttle keeps the longer throttle pause."""
    pacer = Pacer(redis_pair[0], jitter=0)
    await pacer.pause(f"ig:{IG}", 60, reason="throttled")
    held = await pacer.pause(f"ig:{IG}", 1, reason="slowdown")
    assert held > 50
    assert await pacer.remaining(f"ig:{IG}") > 50
    assert await pacer.pause_counts(f"ig:{IG}") == {"throttled": 1, "slowdown": 1}


@pytest.mark.anyio
async def test_throttled_error_pauses_for_its_retry_after(redis_pair: tuple[Redis, Redis]) -> None:
    """On Throttled the account is held for the error's retry_after (plus jitter)."""
    pacer = Pacer(redis_pair[0], jitter=0.1)
    held = await pacer.throttled(f"ig:{IG}", Throttled("(#80002) too many", retry_after=120))
    assert 120 <= held <= 132
    assert 119 < await Pacer(redis_pair[1]).remaining(f"ig:{IG}") <= held


def test_slow_down_grows_linearly_to_the_cap() -> None:
    """0 s at the threshold, half the cap half-way, the full cap at 100 % and above."""
    pacer = Pacer(Redis(), minute_seconds=60, slow_at=80, slow_minutes=5)
    assert pacer.slow_seconds(80) == 0
    assert pacer.slow_seconds(90) == pytest.approx(150)
    assert pacer.slow_seconds(100) == pacer.slow_seconds(140) == pytest.approx(300)


@pytest.mark.anyio
async def test_usage_above_threshold_slows_the_account(redis_pair: tuple[Redis, Redis]) -> None:
    """95 % of the BUC budget pauses the account; 50 % leaves it alone."""
    pacer = Pacer(redis_pair[0], minute_seconds=1, jitter=0)
    calm = {IG: [{"call_count": 50, "total_time": 10, "total_cputime": 10}]}
    assert await pacer.observe(f"ig:{IG}", buc_header(calm)) == 0
    assert await pacer.remaining(f"ig:{IG}") == 0
    paused = await pacer.observe(f"ig:{IG}", buc_header(BUC))
    assert paused == pytest.approx(pacer.slow_seconds(95), rel=0.01)
    assert await Pacer(redis_pair[1]).remaining(f"ig:{IG}") > 0
    assert await pacer.pause_counts(f"ig:{IG}") == {"slowdown": 1}


@pytest.mark.anyio
async def test_regain_estimate_pauses_in_scaled_minutes(redis_pair: tuple[Redis, Redis]) -> None:
    """estimated_time_to_regain_access is minutes, scaled by minute_seconds."""
    pacer = Pacer(redis_pair[0], minute_seconds=10, jitter=0)
    regain = {IG: [{"call_count": 100, "estimated_time_to_regain_access": 3}]}
    assert await pacer.observe(f"ig:{IG}", buc_header(regain)) == pytest.approx(30, abs=0.01)


@pytest.mark.anyio
async def test_high_app_usage_pauses_every_account(redis_pair: tuple[Redis, Redis]) -> None:
    """X-App-Usage is app-wide: above the threshold no account may call."""
    pacer = Pacer(redis_pair[0], minute_seconds=1, jitter=0)
    headers = httpx.Headers({"X-App-Usage": '{"call_count":99,"total_time":5,"total_cputime":5}'})
    await pacer.observe(f"ig:{IG}", headers)
    with pytest.raises(AccountPaused):
        await Pacer(redis_pair[1]).check("ig:another-account")


@pytest.mark.anyio
async def test_threads_app_usage_never_pauses_instagram(redis_pair: tuple[Redis, Redis]) -> None:
    """Threads has its own app: its X-App-Usage pauses Threads accounts, not Instagram ones."""
    pacer = Pacer(redis_pair[0])
    await pacer.observe("threads:25000000000000001", {"x-app-usage": '{"call_count": 99}'})
    assert await pacer.remaining("threads:25000000000000002") > 0
    assert await pacer.remaining("ig:17841400000000001") == 0


def test_app_of_names_each_apps_pause() -> None:
    """Instagram accounts share the Meta app's pause, Threads profiles the Threads app's."""
    pacer = Pacer(Redis())
    assert pacer.app_of("ig:1") == pacer.app_of("app") == "app"
    assert pacer.app_of("threads:1") == pacer.app_of("app:threads") == "app:threads"


@pytest.mark.anyio
async def test_check_names_the_key_that_holds(redis_pair: tuple[Redis, Redis]) -> None:
    """AccountPaused says whether the account or its app holds it, whichever is longer."""
    pacer = Pacer(redis_pair[0], jitter=0)
    await pacer.pause(f"ig:{IG}", 5, reason="throttled")
    await pacer.pause("app", 30, reason="app_limit")
    with pytest.raises(AccountPaused) as caught:
        await Pacer(redis_pair[1]).check(f"ig:{IG}")
    assert caught.value.account == "app"
    assert 25 < caught.value.retry_after <= 30


@pytest.mark.anyio
async def test_app_throttle_pauses_the_app_not_just_the_account(
    redis_pair: tuple[Redis, Redis],
) -> None:
    """Code 4 holds the app's key (every account); an account throttle only its own."""
    pacer = Pacer(redis_pair[0], jitter=0)
    app_error = AppThrottled("(#4) Application request limit reached", retry_after=20)
    assert await pacer.throttled(f"ig:{IG}", app_error) == 20
    assert await Pacer(redis_pair[1]).remaining("ig:another-account") > 19
    assert await pacer.remaining("threads:1") == 0
    assert await pacer.pause_counts("app") == {"app_limit": 1}


@pytest.mark.anyio
async def test_after_reads_usage_on_errors_and_sets_retry_after(
    redis_pair: tuple[Redis, Redis],
) -> None:
    """One answer, two scopes: a throttle holds its account for its wait, and the same
    answer's X-App-Usage at 100 % holds the app; retry_after becomes the time held."""
    pacer = Pacer(redis_pair[0], minute_seconds=1, jitter=0)
    error = Throttled("(#80002) too many", retry_after=3)
    headers = httpx.Headers({"X-App-Usage": '{"call_count":100}', **buc_header(BUC)})
    held = await pacer.after(f"ig:{IG}", headers, error)
    assert held == {f"ig:{IG}": 3.0, "app": 5.0}
    assert error.retry_after == 3.0
    assert await pacer.pause_counts(f"ig:{IG}") == {"throttled": 1}
