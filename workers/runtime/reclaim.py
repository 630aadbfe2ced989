"""A killed worker's jobs run again within seconds, not after arq's in-progress timeout.

arq marks a started job with `arq:in-progress:<id>`, which lives for the worker's longest job
timeout + 10 s; a worker killed with SIGKILL (or by the OOM killer, or a lost host) never
deletes it, so its jobs, still in their queue, wait that long (310 s with the defaults).

Every arq Worker here is a `Member`: it registers in WORKERS_KEY, keeps a heartbeat key with a
short TTL, and the set of job ids it is running (arq's on_job_start / after_job_end hooks).
A background task in every worker beats, and finds registered members whose heartbeat lapsed:
one Redis script deletes their jobs' in-progress keys (unless a live member runs the same id)
and forgets them, so two finders never race. The jobs are then started by the next poll of
any worker, as their next try; every job is idempotent, so a member that was only slow (a
stalled loop) costs a duplicate run, never a lost or doubled snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from jobqueue.arq_internals import in_progress_key_prefix
from workers.runtime.context import Context

log = logging.getLogger(__name__)

WORKERS_KEY = "archiver:workers"  # set of member ids
MEMBER_PREFIX = "archiver:worker:"  # + id + ":alive" (heartbeat) / ":jobs" (running job ids)
BEAT_SECONDS = 2.0
DEAD_AFTER_SECONDS = 12.0  # a heartbeat this old means the process is gone

# KEYS: the registry. ARGV: member prefix, in-progress prefix. Returns the reclaimed job ids.
_RECLAIM_LUA = """
local prefix, in_progress = ARGV[1], ARGV[2]
local live, dead, reclaimed = {}, {}, {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', prefix .. id .. ':alive') == 1 then
    table.insert(live, id)
  else
    table.insert(dead, id)
  end
end
for _, id in ipairs(dead) do
  for _, job in ipairs(redis.call('SMEMBERS', prefix .. id .. ':jobs')) do
    local held = false
    for _, other in ipairs(live) do
      if redis.call('SISMEMBER', prefix .. other .. ':jobs', job) == 1 then held = true end
    end
    if not held and redis.call('DEL', in_progress .. job) == 1 then
      table.insert(reclaimed, job)
    end
  end
  redis.call('DEL', prefix .. id .. ':jobs')
  redis.call('SREM', KEYS[1], id)
end
return reclaimed
"""


def member_id(lane: str) -> str:
    """Readable and unique: host, pid, lane and a random tail."""
    return f"{socket.gethostname()}:{os.getpid()}:{lane}:{uuid.uuid4().hex[:6]}"


async def reclaim(redis: ArqRedis) -> list[str]:
    """Free the jobs of every member whose heartbeat lapsed; the job ids freed."""
    found = await redis.register_script(_RECLAIM_LUA)(
        keys=[WORKERS_KEY], args=[MEMBER_PREFIX, in_progress_key_prefix]
    )
    return [job.decode() if isinstance(job, bytes) else str(job) for job in found]


class Member:
    """One arq Worker's heartbeat and running jobs, and its share of finding dead ones."""

    def __init__(
        self, lane: str, *, beat: float = BEAT_SECONDS, dead_after: float = DEAD_AFTER_SECONDS
    ):
        self.id = member_id(lane)
        self.alive_key = f"{MEMBER_PREFIX}{self.id}:alive"
        self.jobs_key = f"{MEMBER_PREFIX}{self.id}:jobs"
        self.beat = beat
        self.dead_after = dead_after
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None

    async def on_job_start(self, ctx: Context) -> None:
        """arq's hook: note the job (best effort: untracked, it waits out arq's own timeout)."""
        with contextlib.suppress(RedisError, OSError):
            await ctx["redis"].sadd(self.jobs_key, ctx["job_id"])  # type: ignore[misc]

    async def after_job_end(self, ctx: Context) -> None:
        with contextlib.suppress(RedisError, OSError):
            await ctx["redis"].srem(self.jobs_key, ctx["job_id"])  # type: ignore[misc]

    def start(self, redis: ArqRedis) -> None:
        """Beat and look for dead members in the background until `stop`."""
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._run(redis, self._stopping), name=self.id)

    async def stop(self, redis: ArqRedis) -> None:
        """Stop beating and leave the registry: a clean stop is not a death. The loop is
        asked to end between beats, not cancelled inside a Redis command."""
        if self._task is not None and self._stopping is not None:
            self._stopping.set()
            try:
                await asyncio.wait_for(self._task, timeout=self.dead_after)
            except TimeoutError:  # wait_for cancelled it: Redis hung mid-command
                log.warning("worker %s: the heartbeat did not stop in time", self.id)
            self._task = None
        with contextlib.suppress(RedisError, OSError):
            async with redis.pipeline(transaction=True) as pipe:
                pipe.srem(WORKERS_KEY, self.id)
                pipe.delete(self.alive_key, self.jobs_key)
                await pipe.execute()

    async def _run(self, redis: ArqRedis, stopping: asyncio.Event) -> None:
        down = False
        while not stopping.is_set():
            try:
                await self.heartbeat(redis)
                freed = await reclaim(redis)
            except Exception as exc:  # a stopped beat would get our jobs run twice: go on
                if not down:  # Redis away: arq's own loop notices a lasting outage
                    log.warning("worker %s: heartbeat failed: %s", self.id, exc)
                down = True
            else:
                down = False
                if freed:
                    log.warning(
                        "jobs of a dead worker run again: %s",
                        ", ".join(freed),
                        extra={"reclaimed": freed},
                    )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=self.beat)

    async def heartbeat(self, redis: ArqRedis) -> None:
        """Register (again, after a Redis flush) and renew the heartbeat."""
        async with redis.pipeline(transaction=True) as pipe:
            pipe.sadd(WORKERS_KEY, self.id)
            pipe.set(self.alive_key, "1", px=int(self.dead_after * 1000))
            await pipe.execute()
