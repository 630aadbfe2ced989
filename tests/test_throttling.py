"""Throttling end to end: the transport and the shared pacer (real Redis) against the
simulator over HTTP, with two "workers" (each its own Redis connection and HTTP client).

Simulated minutes are short here (0.1-0.2 s), and each client's pacer uses the same minute
as the simulator, as META_MINUTE_SECONDS does in a deployment.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from redis.asyncio import Redis

from metasim import Account
from tests.metasim_fixtures import RunningSim
from workers.meta.api_errors import (
    AccountPaused,
    AppThrottled,
    ClientError,
    NotEnoughViewers,
    PermissionDenied,
    Throttled,
    Transient,
)
from workers.meta.graph_api import GraphClient, IgAccount
from workers.meta.metric_sets import story_calls
from workers.meta.pacing import APP, Pacer
from workers.meta.threads_api import ThreadsAccount, ThreadsClient
from workers.meta.transport import MetaTransport

MINUTE = 0.2
NO_SLOWDOWN = 101.0  # slow_at above 100 %: only Meta's own answers pause


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Worker:
    """What one worker process holds: its Redis connection, HTTP client and Meta clients."""

    def __init__(self, sim: RunningSim, redis_url: str, *, slow_at: float = 80.0) -> None:
        self.redis = Redis.from_url(redis_url)
        self.http = httpx.AsyncClient(timeout=5.0)
        minute = sim.world.config.minute_seconds
        self.pacer = Pacer(self.redis, minute_seconds=minute, slow_at=slow_at)
        transport = MetaTransport(self.http, pacer=self.pacer, backoff_seconds=0.01)
        self.graph = GraphClient(
            transport,
            facebook_url=sim.facebook_url,
            instagram_url=sim.instagram_url,
            version="v25.0",
        )
        self.threads = ThreadsClient(transport, base_url=sim.threads_url)

    async def close(self) -> None:
        await self.http.aclose()
        await self.redis.aclose()


@pytest.fixture
async def workers(sim: RunningSim, redis_url: str) -> AsyncIterator[tuple[Worker, Worker]]:
    sim.world.configure(minute_seconds=MINUTE)
    first, second = Worker(sim, redis_url), Worker(sim, redis_url)
    yield first, second
    await first.close()
    await second.close()


def ig(account: Account) -> IgAccount:
    return IgAccount(account.ig_user_id, account.token, account.login)


async def wait_until_free(pacer: Pacer, key: str, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while await pacer.remaining(key) > 0:
            await anyio.sleep(0.02)


@pytest.mark.anyio
async def test_code_4_pauses_every_account_in_every_worker(
    sim: RunningSim, workers: tuple[Worker, Worker]
) -> None:
    """Code 4 for one account pauses the app: no call for any account from any worker
    until the pause lapses, and the first calls after it succeed."""
    first, second = workers
    accounts = [sim.world.add_account() for _ in range(3)]
    sim.world.budgets.block(2 * MINUTE)  # shorter than the client's pause: one pause recovers
    with pytest.raises(AppThrottled) as caught:
        await first.graph.list_stories(ig(accounts[0]))
    assert 5 * MINUTE <= caught.value.retry_after <= 5.5 * MINUTE + 0.01
    for account in accounts[1:]:
        with pytest.raises(AccountPaused) as paused:
            await second.graph.list_stories(ig(account))
        assert paused.value.account == APP
    assert [c.code for c in sim.world.log.calls()] == [4]
    await wait_until_free(second.pacer, f"ig:{accounts[1].ig_user_id}")
    for account in accounts[1:]:
        assert await second.graph.list_stories(ig(account)) == []
    assert [(c.account, c.status) for c in sim.world.log.calls()] == [
        (accounts[0].ig_user_id, 403),
        *((a.ig_user_id, 200) for a in accounts[1:]),
    ]
    assert await first.pacer.pause_counts(APP) == {"app_limit": 1}


@pytest.mark.anyio
async def test_threads_code_4_pauses_the_threads_app_only(
    sim: RunningSim, workers: tuple[Worker, Worker]
) -> None:
    """The Threads app has its own limit: its code 4 holds Threads profiles, not Instagram."""
    first, second = workers
    user, other = sim.world.add_threads_user(), sim.world.add_threads_user()
    account = sim.world.add_account()
    sim.world.budgets.block(10 * MINUTE, platform="threads")
    with pytest.raises(AppThrottled):
        await first.threads.me(ThreadsAccount(user.id, user.token))
    with pytest.raises(AccountPaused) as paused:
        await second.threads.me(ThreadsAccount(other.id, other.token))
    assert paused.value.account == "app:threads"
    assert await second.graph.list_stories(ig(account)) == []
    assert [c.status for c in sim.world.log.calls()] == [403, 200]


@pytest.mark.anyio
async def test_app_usage_at_100_pauses_the_app_before_any_error(
    sim: RunningSim, workers: tuple[Worker, Worker]
) -> None:
    """A successful answer whose X-App-Usage reaches 100 % pauses every account."""
    first, second = workers
    sim.world.configure(app_budget=2)
    one, two = sim.world.add_account(), sim.world.add_account()
    await first.graph.list_stories(ig(one))
    assert await second.pacer.remaining(f"ig:{two.ig_user_id}") == 0
    await first.graph.list_stories(ig(one))  # 2 of 2: usage 100 %, still a 200
    with pytest.raises(AccountPaused):
        await second.graph.list_stories(ig(two))
    assert [c.status for c in sim.world.log.calls()] == [200, 200]
    assert await first.pacer.pause_counts(APP) == {"app_limit": 1}


@pytest.mark.anyio
async def test_instagram_login_usage_shape_is_read(
    sim: RunningSim, workers: tuple[Worker, Worker]
) -> None:
    """graph.instagram.com's X-App-Usage (call_volume, cpu_time) slows the app down too."""
    first, second = workers
    sim.world.configure(app_budget=10)
    account = sim.world.add_account(login="instagram")
    for _ in range(9):  # 90 %: above the 80 % slow-down threshold
        await first.graph.list_stories(ig(account))
    assert sim.world.log.calls()[-1].host == "instagram"
    assert await first.pacer.pause_counts(APP) == {"slowdown": 1}
    assert await second.pacer.remaining("ig:someone-else") > 0


@pytest.mark.anyio
async def test_usage_headers_are_read_on_error_answers(
    sim: RunningSim, workers: tuple[Worker, Worker]
) -> None:
    """A permission error whose X-App-Usage says 100 % still pauses the app."""
    first, second = workers
    sim.world.configure(app_budget=2)
    account = sim.world.add_account()
    media = sim.world.add_story(account.ig_user_id).id
    sim.world.budgets.deny(account.ig_user_id, kind="insights")
    await first.graph.list_stories(ig(account))
    with pytest.raises(PermissionDenied):
        await first.graph.insights(ig(account), media, story_calls("v25.0")[0])
    assert sim.world.log.calls()[-1].status == 400
    with pytest.raises(AccountPaused):
        await second.graph.list_stories(ig(sim.world.add_account()))


@pytest.mark.anyio
async def test_account_throttle_pauses_it_for_the_regain_estimate_then_recovers(
    sim: RunningSim, redis_url: str
) -> None:
    """80002: the account waits `estimated_time_to_regain_access` in every worker, others
    go on, and its first call after the one pause succeeds."""
    sim.world.configure(minute_seconds=0.1, window_minutes=10)  # a one-second budget window
    first, second = (Worker(sim, redis_url, slow_at=NO_SLOWDOWN) for _ in range(2))
    try:
        account, other = sim.world.add_account(budget=2), sim.world.add_account(budget=2)
        for _ in range(2):
            await first.graph.list_stories(ig(account))
        with pytest.raises(Throttled) as caught:
            await first.graph.list_stories(ig(account))
        assert not isinstance(caught.value, AppThrottled)
        assert 0 < caught.value.retry_after <= 1.1 * 1.1 + 0.01  # <= the window, + jitter
        with pytest.raises(AccountPaused):
            await second.graph.list_stories(ig(account))
        assert await second.graph.list_stories(ig(other)) == []
        await wait_until_free(second.pacer, f"ig:{account.ig_user_id}")
        assert await second.graph.list_stories(ig(account)) == []
    finally:
        await first.close()
        await second.close()
    codes = [c.code for c in sim.world.log.calls(account=account.ig_user_id)]
    assert codes == [None, None, 80002, None]


@pytest.mark.anyio
async def test_garbage_200_is_retried_then_succeeds(
    sim: RunningSim, workers: tuple[Worker, Worker]
) -> None:
    """A 200 that is not JSON, then one that is JSON but no object: retried, then read."""
    first, _ = workers
    account = sim.world.add_account()
    story = sim.world.add_story(account.ig_user_id).id
    sim.world.faults.add(garbage="not_json")
    sim.world.faults.add(garbage="not_object")
    stories = await first.graph.list_stories(ig(account))
    assert [s.id for s in stories] == [story]
    assert [(c.status, c.fault is not None) for c in sim.world.log.calls()] == [
        (200, True),
        (200, True),
        (200, False),
    ]


@pytest.mark.anyio
async def test_garbage_200_every_time_is_transient_not_a_client_error(
    sim: RunningSim, workers: tuple[Worker, Worker]
) -> None:
    """After its bounded tries, a garbled answer is Transient (retry later), never ClientError."""
    first, _ = workers
    account = sim.world.add_account()
    sim.world.faults.add(garbage="not_json", count=5)
    with pytest.raises(Transient) as caught:
        await first.graph.list_stories(ig(account))
    assert not isinstance(caught.value, ClientError)
    assert caught.value.retryable
    assert "not a JSON object" in str(caught.value)
    assert len(sim.world.log.calls()) == 3


@pytest.mark.anyio
async def test_permission_errors_are_permission_denied_and_not_retryable(
    sim: RunningSim, workers: tuple[Worker, Worker]
) -> None:
    """(#10) no permission and (#200) are PermissionDenied after one call; (#10) Not
    enough viewers stays apart; once granted, the same call succeeds."""
    first, _ = workers
    account = sim.world.add_account()
    media = sim.world.add_story(account.ig_user_id).id
    few = sim.world.add_story(account.ig_user_id, viewers=3).id
    call = story_calls("v25.0")[0]
    granted = (
        "(#200) The instagram_manage_insights permission(s) must be granted before "
        "impersonating a user's access token"
    )
    for code, message in ((10, None), (200, None), (200, granted)):
        sim.world.budgets.deny(account.ig_user_id, code=code, kind="insights", message=message)
        with pytest.raises(PermissionDenied) as caught:
            await first.graph.insights(ig(account), media, call)
        assert (caught.value.code, caught.value.retryable) == (code, False)
        sim.world.budgets.allow(account.ig_user_id)
    assert caught.value.message == granted
    with pytest.raises(NotEnoughViewers):
        await first.graph.insights(ig(account), few, call)
    rows, _ = await first.graph.insights(ig(account), media, call)
    assert rows
    assert [c.code for c in sim.world.log.calls()] == [10, 200, 200, 10, None]
