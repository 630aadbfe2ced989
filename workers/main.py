"""The arq workers: one per lane, their functions, cron jobs, and the clients they share
through ctx. Every worker process runs all three lanes (workers.running):

- MAIN (arq's default queue): story listings and captures, Threads polls and post captures;
- DELIVERIES (jobqueue.names.DELIVERIES_QUEUE): webhook deliveries and their sweeper, so a burst
  of thousands waits in its own queue and never holds back a story's final capture;
- CONTROL (jobqueue.names.CONTROL_QUEUE): the scheduler tick, token refresh and the notices to
  operators (workers.notices). arq scores a
  cron job at its time, so in the main queue a tick would wait behind every capture due
  before it, and the finals it enqueues (only the tick enqueues a due final) with it: with
  3,000 stories found at once, ticks ran 30 s late and finals after expiry.

Each lane has its own database engine and threads; the main lane runs up to WORKER_MAX_JOBS
jobs at once, the deliveries' lane a quarter of that, the control lane two (lane_slots). To add
work, add it to make_functions (jobs enqueued by name, jobqueue/names.py) or make_cron_jobs, and
put any shared client into ctx in `startup` (closed again in `shutdown`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, cast

from arq import cron
from arq.connections import ArqRedis, RedisSettings
from arq.cron import CronJob
from arq.typing import StartupShutdown, WorkerCoroutine
from arq.worker import Function, Worker, create_worker, func
from prometheus_client import CollectorRegistry

from core.config import Settings, load_settings
from core.errors import ConfigError
from jobqueue.names import (
    CAPTURE_ACCOUNT_INSIGHTS,
    CAPTURE_IG_MEDIA,
    CAPTURE_STORY,
    CAPTURE_THREADS_POST,
    CONTROL_QUEUE,
    DELIVERIES_QUEUE,
    LIST_IG_MEDIA,
    MAIN_QUEUE,
    POLL_STORIES,
    POLL_THREADS,
    PROCESS_DELIVERY,
)
from jobqueue.outbox import sweep_stale
from jobqueue.redis_url import arq_settings, close_sentinels, parse_redis_url
from models.db import create_db_engine
from reports.worker_metrics import WorkerMetrics
from workers.captures.account_insights import MAX_TRIES as ACCOUNT_INSIGHTS_TRIES
from workers.captures.account_insights import capture_account_insights
from workers.captures.jobs import CAPTURE_MAX_TRIES
from workers.captures.media_listing import LIST_MAX_TRIES, list_ig_media
from workers.captures.media_posts import capture_ig_media
from workers.captures.stories import LISTING_MAX_TRIES, capture_story, poll_stories
from workers.captures.threads_polls import POLL_MAX_TRIES, poll_threads
from workers.captures.threads_posts import capture_threads_post
from workers.captures.tick import schedule_due
from workers.captures.token_refresh import refresh_tokens
from workers.meta.clients import build_clients
from workers.meta.graph_api import make_http_client
from workers.notices import send_notices
from workers.runtime.context import Context, close_db_threads, make_db_threads
from workers.runtime.reclaim import Member
from workers.webhooks.process import DELIVERY_MAX_TRIES, process_delivery

log = logging.getLogger(__name__)

Hook = Callable[[Context], Awaitable[None]]

MAIN = "main"
DELIVERIES = "deliveries"
CONTROL = "control"
LANES = (MAIN, DELIVERIES, CONTROL)
QUEUES = {MAIN: MAIN_QUEUE, DELIVERIES: DELIVERIES_QUEUE, CONTROL: CONTROL_QUEUE}
CONTROL_SLOTS = 3  # the tick, and a token refresh and the notifier beside it
DB_POOL_SIZE = 5  # a lane's database connections, at most (models.db doubles it as overflow)

# arq fills its free job slots only when it polls the queue, and a poll that finds every slot
# taken ends at once: a worker starts at most WORKER_MAX_JOBS jobs per poll_delay. arq's 0.5 s
# default caps a worker at 20 jobs/s with 10 slots (measured: 13-27 jobs/s with an idle CPU and
# a thousand due captures waiting); 50 ms lifts the cap far above what a core can do, for the
# price of ~20 cheap ZRANGEBYSCOREs a second when idle.
POLL_DELAY_SECONDS = 0.05


async def sweep_deliveries(ctx: Context) -> int:
    """Re-enqueue deliveries left pending too long (a Redis flush, a crash between steps)."""
    settings: Settings = ctx["settings"]
    moved = await sweep_stale(
        ctx["engine"], ctx["redis"], after=timedelta(seconds=settings.sweep_after_seconds)
    )
    if moved:
        log.warning("re-enqueued %d stale deliveries", moved, extra={"moved": moved})
    return moved


# Seconds a job may run, at most JOB_TIMEOUT_SECONDS: long enough for the job's calls and
# their retries (workers.meta.transport), short enough that a hung one frees its slot soon.
DELIVERY_TIMEOUT = 60
CAPTURE_TIMEOUT = 120
TICK_TIMEOUT = 120
# arq's cron jobs have ids unique per tick; keeping their result refuses a late duplicate of
# a tick (a worker that was stalled) that would otherwise run after the tick already ran.
CRON_KEEP_RESULT_SECONDS = 300
NOTICES_TIMEOUT = 90  # its POSTs stop starting after workers.notices.RUN_BUDGET (30 s)


def lane_slots(settings: Settings, lane: str) -> int:
    """Jobs a lane runs at once: WORKER_MAX_JOBS for the main lane; a quarter of it (at least
    one) for deliveries. A delivery is ~5 ms of Python and a few statements, so two slots keep
    a worker's core busy through a burst; more only take the CPU from the captures beside them.
    Measured in tests/test_scale_out.py (5,000 deliveries during 200 stories' last seconds, on
    2 loaded cores): 10 slots missed 12-132 finals, 3 missed 12-50, 2 missed none."""
    if lane == DELIVERIES:
        return max(1, settings.worker_max_jobs // 4)
    if lane == CONTROL:
        return CONTROL_SLOTS
    return settings.worker_max_jobs


def make_functions(settings: Settings, lane: str = MAIN) -> list[Function]:
    """The lane's jobs, each with its timeout and tries (the last try gives up in the job)."""
    cap = settings.job_timeout_seconds
    if lane == CONTROL:
        return []  # its cron jobs are its functions
    if lane == DELIVERIES:
        return [
            func(
                arq_job(process_delivery),
                name=PROCESS_DELIVERY,
                timeout=min(cap, DELIVERY_TIMEOUT),
                max_tries=DELIVERY_MAX_TRIES,
            )
        ]
    capture = min(cap, CAPTURE_TIMEOUT)
    return [
        func(arq_job(poll_stories), name=POLL_STORIES, timeout=cap, max_tries=LISTING_MAX_TRIES),
        func(
            arq_job(capture_story), name=CAPTURE_STORY, timeout=capture, max_tries=CAPTURE_MAX_TRIES
        ),
        func(arq_job(poll_threads), name=POLL_THREADS, timeout=cap, max_tries=POLL_MAX_TRIES),
        func(
            arq_job(capture_threads_post),
            name=CAPTURE_THREADS_POST,
            timeout=capture,
            max_tries=CAPTURE_MAX_TRIES,
        ),
        func(
            arq_job(capture_account_insights),
            name=CAPTURE_ACCOUNT_INSIGHTS,
            timeout=cap,
            max_tries=ACCOUNT_INSIGHTS_TRIES,
        ),
        func(arq_job(list_ig_media), name=LIST_IG_MEDIA, timeout=cap, max_tries=LIST_MAX_TRIES),
        func(
            arq_job(capture_ig_media),
            name=CAPTURE_IG_MEDIA,
            timeout=capture,
            max_tries=CAPTURE_MAX_TRIES,
        ),
    ]


def make_cron_jobs(settings: Settings, lane: str = MAIN) -> list[CronJob]:
    """Fresh CronJobs (arq keeps each one's next run on the object: every worker needs its own).

    unique (arq's default) makes one worker of many run each tick; run_at_startup makes a
    worker that comes back after an outage sweep and schedule at once. The sweeper rides in
    the deliveries' lane, the scheduler and token refresh in the control lane (never behind
    the work they schedule); the main lane has none.
    """
    cap = settings.job_timeout_seconds
    keep = CRON_KEEP_RESULT_SECONDS
    if lane == DELIVERIES:
        # Every 10 s: after a Redis flush, lost deliveries are back in the queue soon.
        return [
            cron(
                arq_job(sweep_deliveries),
                name="sweep_deliveries",
                second=set(range(0, 60, 10)),
                run_at_startup=True,
                timeout=min(cap, DELIVERY_TIMEOUT),
                keep_result=keep,
            )
        ]
    if lane != CONTROL:
        return []
    tick = settings.schedule_tick_seconds
    return [
        cron(
            arq_job(schedule_due),
            name="schedule_due",
            second=set(range(0, 60, tick)),
            run_at_startup=True,
            timeout=min(cap, TICK_TIMEOUT),
            keep_result=keep,
        ),
        # Hourly, whatever else runs: a token refreshed late is a token lost.
        cron(
            arq_job(refresh_tokens),
            name="refresh_tokens",
            minute={17},
            second={30},
            run_at_startup=True,
            timeout=cap,
            keep_result=keep,
        ),
        # Every 15 s, in a slot of its own: a receiver that hangs never delays a tick.
        cron(
            arq_job(send_notices),
            name="send_notices",
            second={0, 15, 30, 45},
            run_at_startup=True,
            timeout=min(cap, NOTICES_TIMEOUT),
            keep_result=keep,
        ),
    ]


def make_startup(
    settings: Settings,
    *,
    meta_clients: bool = True,
    slots: int | None = None,
    metrics: WorkerMetrics | None = None,
) -> Hook:
    """on_startup: the settings, the process's metrics, a database engine and `slots`
    database threads (default WORKER_MAX_JOBS) per lane, in ctx; the Meta clients too unless
    the lane makes no calls (`meta_clients=False`: deliveries)."""
    metrics = metrics or WorkerMetrics(CollectorRegistry())

    async def startup(ctx: Context) -> None:
        ctx["settings"], ctx["metrics"] = settings, metrics
        threads = slots or settings.worker_max_jobs
        pool = min(DB_POOL_SIZE, threads)  # twice that with overflow: 10 for the main lane
        ctx["engine"] = create_db_engine(
            settings.database_url, pool_size=pool, token_key=settings.token_key
        )
        ctx["db_threads"] = make_db_threads(threads)
        if meta_clients:
            http = ctx["http"] = make_http_client(settings)
            clients = build_clients(http, settings, ctx.get("redis"), metrics=metrics)
            ctx["graph"], ctx["threads"] = clients.graph, clients.threads

    return startup


async def shutdown(ctx: Context) -> None:
    """on_shutdown: close the HTTP client, give the database connections back."""
    http = ctx.pop("http", None)
    if http is not None:
        await http.aclose()
    await close_db_threads(ctx)
    engine = ctx.pop("engine", None)
    if engine is not None:
        engine.dispose()


def redis_settings(settings: Settings) -> RedisSettings:
    """arq's connection settings from REDIS_URL (one server, or a master through Sentinel)."""
    if not settings.redis_url:
        msg = "REDIS_URL must be set for the worker"
        raise ConfigError(msg)
    return arq_settings(parse_redis_url(settings.redis_url))


def lane_settings(
    settings: Settings,
    lane: str = MAIN,
    *,
    cron_jobs: bool = True,
    metrics: WorkerMetrics | None = None,
) -> type:
    """arq's WorkerSettings class for one lane (MAIN, DELIVERIES or CONTROL).

    It keeps no job results: the database records what was done, and a kept result would make
    arq refuse the next enqueue of the same id (a stall). `cron_jobs=False` leaves the lane's
    cron jobs out, for a burst whose job count must be exact. `metrics`: the process's (every
    lane of a process shares them; default: a registry of the lane's own).
    """
    member = Member(lane)
    slots = lane_slots(settings, lane)
    startup = make_startup(settings, meta_clients=lane != DELIVERIES, slots=slots, metrics=metrics)
    crons = make_cron_jobs(settings, lane) if cron_jobs else []
    connection = redis_settings(settings)

    async def started(ctx: Context) -> None:
        await startup(ctx)
        member.start(ctx["redis"])

    async def stopping(ctx: Context) -> None:
        redis = ctx.get("redis")  # absent when a signal stops the worker before arq connects
        if redis is not None:
            await member.stop(redis)
            await close_sentinels(redis.connection_pool)  # arq closes only the pool
        await shutdown(ctx)

    # A class body cannot see the function's locals under the same names: hence the renames.
    functions_, queue = make_functions(settings, lane), QUEUES[lane]

    class WorkerSettings:
        functions = functions_
        queue_name = queue
        cron_jobs = crons
        redis_settings = connection
        on_startup = arq_hook(started)
        on_shutdown = arq_hook(stopping)
        on_job_start = arq_hook(member.on_job_start)
        after_job_end = arq_hook(member.after_job_end)
        job_timeout = settings.job_timeout_seconds
        keep_result = 0
        max_jobs = slots
        poll_delay = POLL_DELAY_SECONDS

    WorkerSettings.__qualname__ = f"WorkerSettings[{lane}]"
    return WorkerSettings


def build_worker(
    settings: Settings,
    *,
    lane: str = MAIN,
    cron_jobs: bool = True,
    redis_pool: ArqRedis | None = None,
    metrics: WorkerMetrics | None = None,
    **options: Any,
) -> Worker:
    """The arq Worker of one lane, from its WorkerSettings; `redis_pool` (closed by the
    worker) overrides REDIS_URL, `options` override any other setting (burst, poll_delay,
    handle_signals=False when the event loop is shared, as in `archiver run`)."""
    if redis_pool is not None:
        options |= {"redis_pool": redis_pool, "redis_settings": None}
    lane_class = lane_settings(settings, lane, cron_jobs=cron_jobs, metrics=metrics)
    return create_worker(lane_class, **options)


def build_workers(
    settings: Settings, *, metrics: WorkerMetrics | None = None, **options: Any
) -> list[Worker]:
    """One Worker per lane, for one worker process, all counting into `metrics` (default: a
    registry of their own); options as for build_worker; without cron jobs the control lane
    has nothing to run and is left out."""
    metrics = metrics or WorkerMetrics(CollectorRegistry())
    lanes = [lane for lane in LANES if lane != CONTROL or options.get("cron_jobs", True)]
    return [build_worker(settings, lane=lane, metrics=metrics, **options) for lane in lanes]


def arq_job(job: Callable[..., Awaitable[Any]]) -> WorkerCoroutine:
    """A job taking our typed Context where arq's types say `dict` (a TypedDict is one)."""
    return cast(WorkerCoroutine, job)


def arq_hook(hook: Hook) -> StartupShutdown:
    return cast(StartupShutdown, hook)


_LANE_OF = {"WorkerSettings": MAIN, "DeliveriesWorkerSettings": DELIVERIES}
_LANE_OF["ControlWorkerSettings"] = CONTROL


def __getattr__(name: str) -> type:
    """`arq workers.main.WorkerSettings` (and DeliveriesWorkerSettings, ControlWorkerSettings):
    arq's own CLI runs one lane per process, with Settings read from the environment when arq
    asks, not at import."""
    if name in _LANE_OF:
        return lane_settings(load_settings(), _LANE_OF[name])
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
