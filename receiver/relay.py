"""Hand committed deliveries to the workers' arq queue, off the request path.

The database row is the source of truth (see jobqueue.outbox). Two kinds of pass:
- fresh: the archive hands over the ids of every commit (`committed`), and the relay enqueues
  them in one Redis command and marks them `enqueued` in one UPDATE. It never reads the rows
  back: selecting pending rows under load doubled the database's work per delivery.
- catch-up: a database pass over whatever is still `received`, at start, after any failure,
  and whenever the relay has been idle for `interval` (rows of another process, a crash).

When Redis (or the database) is down the relay logs the outage once, backs off up to
`max_backoff` seconds, and catches up when the store returns; requests keep being answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from arq.connections import ArqRedis
from sqlalchemy.engine import Engine

from jobqueue.outbox import enqueue_deliveries, relay_pending
from jobqueue.redis_url import RedisTarget, arq_client, close_async
from receiver.archive import describe
from receiver.metrics import ReceiverMetrics

log = logging.getLogger(__name__)

PASS_LIMIT = 500
# After a commit wakes the relay it waits this long, so that under load one pass (one Redis
# command and one UPDATE) moves the rows of many commits instead of one pass per commit.
COALESCE_SECONDS = 0.1
# Ids held for a fresh pass at most; beyond that (a long outage) the database pass takes over.
MAX_FRESH = 100_000

Mark = Callable[[list[int]], Awaitable[None]]


def create_redis(target: RedisTarget, *, timeout: float = 5.0) -> ArqRedis:
    """An ArqRedis without arq.create_pool's startup ping, so the receiver starts while Redis
    is down; connections are made on first use (asking Sentinel for the master, with a
    Sentinel URL) and time out instead of hanging."""
    timeouts = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    return arq_client(target, **timeouts)


async def close_redis(redis: ArqRedis) -> None:
    """Close the client, its pool and any connections to sentinels."""
    await close_async(redis)


class Relay:
    """A background task that moves committed deliveries into arq; one per receiver process."""

    def __init__(
        self,
        engine: Engine,
        redis: ArqRedis,
        metrics: ReceiverMetrics,
        *,
        mark: Mark,
        interval: float,
        max_backoff: float = 5.0,
        limit: int = PASS_LIMIT,
        coalesce: float = COALESCE_SECONDS,
    ) -> None:
        self.engine = engine
        self.redis = redis
        self.metrics = metrics
        self.mark = mark
        self.interval = interval
        self.max_backoff = max_backoff
        self.limit = limit
        self.coalesce = min(coalesce, interval)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._down = False
        self._fresh: list[int] = []
        self._catch_up = True  # rows an earlier run left `received`

    def committed(self, ids: list[int]) -> None:
        """The archive stored rows `ids`; called on the loop after each commit."""
        if len(self._fresh) < MAX_FRESH:
            self._fresh.extend(ids)
        else:  # they are in the database: the catch-up pass will find them
            self._catch_up = True
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="delivery-relay")

    async def aclose(self) -> None:
        """Stop the task; rows it did not move stay `received` for the next start or sweep."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_once(self) -> int:
        """Move everything pending now; return how many deliveries were enqueued."""
        if self._catch_up:
            moved = await self._database_pass()
            self._catch_up = False
        else:
            moved = await self._fresh_pass()
        self.metrics.relay_enqueued.inc(moved)
        return moved

    async def _fresh_pass(self) -> int:
        ids, self._fresh = self._fresh, []
        for start in range(0, len(ids), self.limit):
            chunk = ids[start : start + self.limit]
            await enqueue_deliveries(self.redis, chunk)
            await self.mark(chunk)
        return len(ids)

    async def _database_pass(self) -> int:
        """Everything still `received`, `limit` rows per round. The fresh ids are dropped
        first: rows committed before a round's select are in it, later ones are noted anew."""
        self._fresh = []
        total = 0
        while True:
            moved = await relay_pending(self.engine, self.redis, limit=self.limit)
            total += moved
            if moved < self.limit:
                return total

    async def _run(self) -> None:
        backoff = 0.0
        while True:
            self._wake.clear()  # commits from here on ask for another pass
            try:
                moved = await self.run_once()
            except Exception as exc:  # Redis or the database down: keep serving, retry later
                self._catch_up = True  # what failed is still `received` in the database
                backoff = min(max(backoff * 2, self.interval), self.max_backoff)
                self._outage(exc, backoff)
                # Wake-ups are ignored while backing off: a pass per commit would hammer.
                await asyncio.sleep(backoff)
                continue
            backoff = 0.0
            if self._down:
                self._down = False
                log.info("relay recovered: %d deliveries enqueued", moved)
            elif moved:
                log.debug("relayed %d deliveries", moved)
            await self._idle()

    async def _idle(self) -> None:
        """Wait for a commit (then a short pause that lets a burst gather) or `interval`;
        an idle interval ends in a catch-up pass."""
        try:
            await asyncio.wait_for(self._wake.wait(), self.interval)
        except TimeoutError:
            self._catch_up = True
            return
        await asyncio.sleep(self.coalesce)

    def _outage(self, exc: Exception, backoff: float) -> None:
        self.metrics.relay_errors.inc()
        if not self._down:
            self._down = True
            log.warning(
                "relay cannot enqueue (%s); deliveries stay archived, retrying every <= %.0f s",
                describe(exc),
                self.max_backoff,
            )
        else:
            log.debug("relay still failing; next try in %.2f s", backoff)
