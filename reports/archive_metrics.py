"""Archive-wide gauges, read from the database and Redis when Prometheus scrapes: queue depth,
overdue work, media by capture state, accounts, token expiry, app-wide pauses.

They describe the archive, not the process serving them: every worker process exports the
same values (and `archiver run` its one copy), so aggregate them with `max`, never `sum`.
Each store is read within READ_TIMEOUT; a store that fails or is slow leaves its families out
of that scrape (one warning in the log) and the rest is still served.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import timedelta
from typing import TypeVar

import redis
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from jobqueue.names import CONTROL_QUEUE, DELIVERIES_QUEUE, MAIN_QUEUE
from jobqueue.redis_url import close_sync, parse_redis_url, sync_client
from reports.figures import APP_PAUSE_KEYS, Gauges, read_gauges

log = logging.getLogger(__name__)

READ_TIMEOUT = 2.0  # seconds per store and scrape
QUEUES = (MAIN_QUEUE, DELIVERIES_QUEUE, CONTROL_QUEUE)
T = TypeVar("T")


class RedisFigures:
    """Jobs whose time has come, per arq queue, and seconds left on each app-wide pause."""

    def __init__(self, depth: dict[str, int], app_paused: dict[str, float]) -> None:
        self.depth = depth
        self.app_paused = app_paused


def read_redis(client: redis.Redis) -> RedisFigures:
    """Blocking: one pipelined round trip. arq scores a job by the ms it is due at, so the
    jobs scored up to now are the ones waiting for a free slot (deferred ones are not)."""
    now_ms = int(time.time() * 1000)
    with client.pipeline(transaction=False) as pipe:
        for queue in QUEUES:
            pipe.zcount(queue, "-inf", now_ms)
        for key in APP_PAUSE_KEYS.values():
            pipe.pttl(key)
        raw = pipe.execute()
    depth = {queue: int(n) for queue, n in zip(QUEUES, raw, strict=False)}
    ttls = raw[len(QUEUES) :]
    paused = {p: max(int(ttl), 0) / 1000 for p, ttl in zip(APP_PAUSE_KEYS, ttls, strict=True)}
    return RedisFigures(depth, paused)


class ArchiveCollector(Collector):
    """The archive-wide gauges, for a process's registry (`registry.register(collector)`),
    read on an engine given to it (disposed by `close`)."""

    def __init__(
        self,
        engine: Engine,
        redis_url: str | None,
        *,
        grace: timedelta,
        timeout: float = READ_TIMEOUT,
    ) -> None:
        self.engine = engine
        self.grace = grace
        self.timeout = timeout
        # The scrape stops waiting after `timeout`; the reading thread a little later.
        sockets = {"socket_timeout": 2 * timeout, "socket_connect_timeout": 2 * timeout}
        target = parse_redis_url(redis_url) if redis_url else None
        self.redis = sync_client(target, **sockets) if target is not None else None
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="metrics-read")

    def close(self) -> None:
        """Stop the reading threads (a read still running is not waited for) and let the
        connections go; the engine is the collector's own."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.redis is not None:
            close_sync(self.redis)
        self.engine.dispose()

    def collect(self) -> Iterable[Metric]:
        """Both stores read at once, each within READ_TIMEOUT."""
        database = self._pool.submit(read_gauges, self.engine, grace=self.grace)
        queues = self._pool.submit(read_redis, self.redis) if self.redis is not None else None
        found = self._bounded("database", database.result)
        if found is not None:
            yield from database_families(found)
        figures = self._bounded("redis", queues.result) if queues is not None else None
        if figures is not None:
            yield from redis_families(figures)

    def _bounded(self, store: str, result: Callable[[float], T]) -> T | None:
        try:
            return result(self.timeout)
        except FutureTimeout:
            log.warning("metrics: the %s did not answer within %.1f s", store, self.timeout)
        except Exception as exc:  # a store down leaves its gauges out, the rest is served
            log.warning("metrics: %s figures unavailable: %s", store, type(exc).__name__)
        return None


def gauge(
    name: str, text: str, labels: list[str], samples: Iterable[tuple[list[str], float]]
) -> GaugeMetricFamily:
    """One gauge family with its samples ((label values, value) pairs)."""
    family = GaugeMetricFamily(name, text, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def database_families(gauges: Gauges) -> Iterator[GaugeMetricFamily]:
    """Captures, accounts, problems, overdue work and expiries, as read from the database."""
    yield gauge(
        "archiver_media",
        "Stories and posts being captured (live, tracked) and stories missed; archive-wide.",
        ["subject_type", "state"],
        [([k, s], n) for (k, s), n in sorted(gauges.captures.items())],
    )
    yield gauge(
        "archiver_accounts",
        "Accounts by state, per platform (Threads: linked profiles); archive-wide.",
        ["platform", "state"],
        [([p, s], n) for (p, s), n in sorted(gauges.accounts.items())],
    )
    yield gauge(
        "archiver_accounts_with_problem",
        "Accounts backing off after an error retrying cannot fix (see archiver status).",
        ["platform"],
        [([p], n) for p, n in sorted(gauges.problems.items())],
    )
    yield gauge(
        "archiver_tokens",
        "Tokens by what is known of their expiry: dated, never (Facebook Login), unknown.",
        ["platform", "expiry"],
        [([p, e], n) for (p, e), n in sorted(gauges.tokens.items())],
    )
    overdue = sorted(gauges.overdue.items())
    yield gauge(
        "archiver_oldest_overdue_seconds",
        "Age of the oldest poll or capture due more than two scheduler ticks ago; 0: none.",
        ["kind"],
        [([kind], found.oldest_seconds) for kind, found in overdue],
    )
    yield gauge(
        "archiver_overdue",
        "Polls and captures due more than two scheduler ticks ago, by kind.",
        ["kind"],
        [([kind], found.count) for kind, found in overdue],
    )
    yield gauge(
        "archiver_notices",
        "Notices to operators (NOTIFY_WEBHOOK_URL) by kind and state; archive-wide.",
        ["kind", "state"],
        [([k, s], n) for (k, s), n in sorted(gauges.notices.items())],
    )
    if gauges.partition_months_ahead is not None:
        yield gauge(
            "archiver_partition_months_ahead",
            "Months after this one whose history partitions exist (PostgreSQL; the scheduler "
            "tick keeps two).",
            [],
            [([], gauges.partition_months_ahead)],
        )
    yield from expiry_families(gauges)


def expiry_families(gauges: Gauges) -> Iterator[GaugeMetricFamily]:
    """Per account: when its token, and its Facebook Login data access, run out (Unix time)."""
    labels = ["platform", "account_id", "account"]
    for what, name, text in (
        ("token", "archiver_token_expiry_timestamp_seconds", "When the account's token expires"),
        (
            "data_access",
            "archiver_data_access_expiry_timestamp_seconds",
            "When a Facebook Login user's data access expires (renewed by a new login)",
        ),
    ):
        yield gauge(
            name,
            f"{text}, as a Unix timestamp; absent when unknown or never.",
            labels,
            [
                ([e.platform, str(e.account_id), e.account], e.at.timestamp())
                for e in gauges.expiries
                if e.what == what
            ],
        )


def redis_families(figures: RedisFigures) -> Iterator[GaugeMetricFamily]:
    yield gauge(
        "archiver_queue_depth",
        "Jobs due now and waiting for a worker, per arq queue (deferred jobs not counted).",
        ["queue"],
        [([q], n) for q, n in figures.depth.items()],
    )
    yield gauge(
        "archiver_app_paused_seconds",
        "Time left on the app-wide pause (code 4 or X-App-Usage); 0 when not paused.",
        ["platform"],
        [([p], s) for p, s in figures.app_paused.items()],
    )
