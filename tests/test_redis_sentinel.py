"""REDIS_URL through Redis Sentinel: the URL read, and a real sentinel (redis-server --sentinel)
in front of the test Redis, through which the receiver's relay enqueues, the real arq worker
runs the job and `archiver status` reads the pauses; then a failover to a replica, followed."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
import pytest
import redis
import redis.asyncio
from arq.connections import ArqRedis, RedisSettings, create_pool
from sqlalchemy.engine import Engine

from core.errors import ConfigError
from dashboard.app import create_dashboard
from jobqueue.names import DELIVERIES_QUEUE, delivery_job_id
from jobqueue.redis_url import (
    arq_client,
    arq_settings,
    async_client,
    close_async,
    close_sentinels,
    close_sync,
    parse_redis_url,
    sync_client,
)
from models.deliveries import ENQUEUED, PROCESSED
from receiver.app import create_app
from reports.pauses import PAUSE_COUNTS_KEY
from tests.conftest import make_settings
from tests.servers import PrivateRedis, ServerThread, free_port, wait_until
from tests.test_deliveries import add_account, delivery_row
from tests.test_relay import post_all, statuses, story
from tests.test_status import IG_TOKEN, SHOP, Status, account_block, status_runner
from tests.test_status import add_account as add_status_account
from workers.main import DELIVERIES, build_worker

PASSWORD = "hunter2-not-in-errors"
KINDS = "REDIS_URL is not a redis://, rediss://, unix:// or redis+sentinel:// URL"


class SentinelServer:
    """`redis-server <conf> --sentinel` on a free port, watching the test Redis as `master`
    (a name of this process's own: sentinels of one master name find each other)."""

    def __init__(self, directory: Path, master_port: int = 6379, name: str = "test") -> None:
        self.port = free_port()
        self.master = f"archiver-{name}-{os.getpid()}"
        self.dir = directory
        self.conf = directory / "sentinel.conf"  # the sentinel rewrites it: a file of its own
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndaemonize no\ndir {directory}\n"
            f"sentinel monitor {self.master} 127.0.0.1 {master_port} 1\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, database: int, *, scheme: str = "redis+sentinel") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/{self.master}/{database}"

    def __enter__(self) -> SentinelServer:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        command = [binary, str(self.conf), "--sentinel"]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, cwd=self.dir)
        wait_until(self.knows_master, timeout=10)
        return self

    def knows_master(self) -> bool:
        return self.master_port() is not None

    def ask(self, *command: str) -> Any:
        """One command to the sentinel, its reply parsed by redis-py."""
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return client.execute_command(*command)  # type: ignore[no-untyped-call]  # redis-py
        finally:
            client.close()

    def master_port(self) -> int | None:
        """The master's port as the sentinel tells clients now (`SENTINEL MASTER`, which
        redis-py reads; None: no answer). During a failover `get-master-addr-by-name` names
        the replica being promoted before this does."""
        try:
            found: dict[str, Any] = self.ask("SENTINEL MASTER", self.master)
        except redis.RedisError:
            return None
        return int(found["port"])

    def replica_ports(self) -> list[int]:
        """The master's replicas the sentinel has found and reaches."""
        found: list[dict[str, Any]] = self.ask("SENTINEL SLAVES", self.master)
        return [int(r["port"]) for r in found if r["is_slave"] and not r["is_disconnected"]]

    def failover(self) -> None:
        """SENTINEL FAILOVER: promote a replica now, without waiting for the master to be
        judged down (down-after-milliseconds)."""
        self.ask("SENTINEL FAILOVER", self.master)

    def __exit__(self, *_exc: object) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelServer]:
    with SentinelServer(tmp_path_factory.mktemp("sentinel")) as server:
        yield server


@pytest.fixture
def sentinel_url(sentinel: SentinelServer, redis_url: str) -> str:
    """The test's Redis database (emptied), named through the sentinel."""
    return sentinel.url(int(urlsplit(redis_url).path.strip("/")))


@pytest.mark.parametrize(
    ("url", "sentinels", "master", "database"),
    [
        (
            f"redis+sentinel://:{PASSWORD}@h1:26380,h2/mymaster/3",
            (("h1", 26380), ("h2", 26379)),
            "mymaster",
            3,
        ),
        ("sentinel://10.0.0.5/cache", (("10.0.0.5", 26379),), "cache", 0),
        ("redis+sentinel://[::1]:5000,[fe80::2]/m/", (("::1", 5000), ("fe80::2", 26379)), "m", 0),
    ],
)
def test_sentinel_urls_are_read(
    url: str, sentinels: tuple[tuple[str, int], ...], master: str, database: int
) -> None:
    """Hosts with the Sentinel port by default, the master's name, the database (0 unless
    given); arq gets them as its sentinel settings."""
    target = parse_redis_url(url)
    assert (target.sentinels, target.master, target.database) == (sentinels, master, database)
    settings = arq_settings(target)
    assert (settings.sentinel, settings.host, settings.sentinel_master) == (
        True,
        list(sentinels),
        master,
    )
    assert settings.database == database


def test_a_sentinel_password_is_the_masters_and_never_shown() -> None:
    """user:password go to the master's connections; the target's repr leaves them out."""
    target = parse_redis_url(f"redis+sentinel://ops:{PASSWORD.replace('-', '%2D')}@h/m/1")
    assert (target.username, target.password) == ("ops", PASSWORD)
    settings = arq_settings(target)
    assert (settings.username, settings.password) == ("ops", PASSWORD)
    assert PASSWORD not in repr(target)


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/2", "rediss://:pw@cache:6380/0", "unix:///tmp/r.sock?db=2"]
)
def test_one_server_urls_stay_as_they_were(url: str) -> None:
    """redis://, rediss:// and unix:// reach arq exactly as its own from_dsn reads them."""
    target = parse_redis_url(url)
    assert not target.is_sentinel
    assert arq_settings(target) == RedisSettings.from_dsn(url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (f"http://:{PASSWORD}@127.0.0.1:6379/0", "unknown scheme 'http'"),
        (f"redis://:{PASSWORD}@cache:port/0", "Port could not be cast"),
        (f"redis+sentinel://:{PASSWORD}@h1:26379/", "the master's name is missing"),
        (f"redis+sentinel://:{PASSWORD}@h1:99999/m", "not a sentinel host[:port]: 'h1:99999'"),
        (f"redis+sentinel://:{PASSWORD}@h1,/m", "not a sentinel host[:port]: ''"),
        (f"sentinel://:{PASSWORD}@h1/m/zero", "is not a number: 'zero'"),
        (f"redis+sentinel://:{PASSWORD}@h1/m?db=2", "takes no ?options"),
        ("127.0.0.1:6379", "no scheme"),
        # An unescaped `/` ends the host part inside the password: its head is no host.
        (f"redis+sentinel://:{PASSWORD.replace('-', '/', 1)}@h1/m", "host[:port]: '[REDACTED]'"),
        (f"redis://:{PASSWORD.replace('-', '/', 1)}@cache:6379/0", "REDACTED"),
    ],
)
def test_a_bad_url_is_one_line_without_the_password(url: str, reason: str) -> None:
    """The error names the accepted forms and what is wrong, and never the password."""
    with pytest.raises(ConfigError) as caught:
        parse_redis_url(url)
    message = str(caught.value)
    assert message.startswith(f"{KINDS}: ")
    assert reason in message
    assert PASSWORD not in message
    assert "hunter2" not in message
    assert "not-in-errors" not in message
    assert "\n" not in message


def test_the_receiver_and_dashboard_refuse_a_bad_url_before_listening(sqlite_url: str) -> None:
    """A bad REDIS_URL stops `archiver serve` and `archiver dashboard` when the app is built
    (one line, exit 2), not at start-up with a traceback; the password is not in it."""
    settings = make_settings(sqlite_url, f"redis+sentinel://:{PASSWORD}@h1:26379/")
    for build in (create_app, create_dashboard):
        with pytest.raises(ConfigError, match="the master's name is missing") as caught:
            build(settings)
        assert PASSWORD not in str(caught.value)


def test_the_clients_reach_the_master_the_sentinel_names(sentinel_url: str, redis_url: str) -> None:
    """The blocking and the asyncio clients (dashboard, /metrics, status) read and write the
    database the URL names, on the master the sentinel gives."""
    direct = redis.Redis.from_url(redis_url)
    direct.set("probe", "direct")
    target = parse_redis_url(sentinel_url)
    client = sync_client(target, socket_timeout=2, socket_connect_timeout=2)
    try:
        assert client.get("probe") == b"direct"
        client.set("probe", "sync")
    finally:
        close_sync(client)

    async def read() -> bytes | None:
        found = async_client(target, redis.asyncio.Redis, socket_timeout=2)
        try:
            value: bytes | None = await found.get("probe")
        finally:
            await close_async(found)
        return value

    assert asyncio.run(read()) == b"sync"
    assert direct.get("probe") == b"sync"
    direct.close()


async def drain(settings_url: str, database_url: str) -> int:
    """Run the real deliveries lane in burst mode with REDIS_URL the Sentinel URL: arq makes
    its own connection from the worker's settings."""
    settings = make_settings(database_url, settings_url)
    worker = build_worker(
        settings, lane=DELIVERIES, burst=True, poll_delay=0, handle_signals=False, cron_jobs=False
    )
    assert worker.redis_settings is not None
    assert worker.redis_settings.sentinel
    try:
        await worker.main()
    finally:
        await worker.close()
    return worker.jobs_complete


def test_relay_and_worker_go_through_the_sentinel(
    database_url: str, engine: Engine, sentinel_url: str, redis_url: str
) -> None:
    """A signed delivery: the receiver's relay enqueues it through the Sentinel URL (the job
    lands in the master's database), and the worker, also through it, processes it."""
    add_account(engine)
    settings = make_settings(database_url, sentinel_url)
    direct = redis.Redis.from_url(redis_url)
    with ServerThread(create_app(settings)) as server, httpx.Client(base_url=server.url) as web:
        assert post_all(web, engine, [story(1)]) == [200]
        ((delivery_id, _),) = statuses(engine).values()
        job = delivery_job_id(delivery_id)
        wait_until(lambda: direct.zscore(DELIVERIES_QUEUE, job) is not None)
        wait_until(lambda: statuses(engine)[story(1)][1] == ENQUEUED)
    assert asyncio.run(drain(sentinel_url, database_url)) == 1
    assert delivery_row(engine, delivery_id).status == PROCESSED
    assert direct.zscore(DELIVERIES_QUEUE, job) is None
    direct.close()


def test_an_arq_client_enqueues_through_the_sentinel(sentinel_url: str, redis_url: str) -> None:
    """arq_client (the receiver's) enqueues a job that the master holds."""

    async def enqueue() -> None:
        client: ArqRedis = arq_client(parse_redis_url(sentinel_url), socket_timeout=2)
        try:
            await client.enqueue_job("probe", _job_id="probe-1", _queue_name=DELIVERIES_QUEUE)
        finally:
            await close_async(client)

    asyncio.run(enqueue())
    direct = redis.Redis.from_url(redis_url)
    assert direct.zscore(DELIVERIES_QUEUE, "probe-1") is not None
    direct.close()


@pytest.fixture
def status(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Iterator[Status]:
    yield from status_runner(monkeypatch, tmp_path, capsys)


def test_status_reads_the_pauses_through_the_sentinel(
    status: Status, sqlite_url: str, sentinel_url: str, redis_url: str
) -> None:
    """`archiver status` with a Sentinel REDIS_URL shows the pauses the master holds; a
    sentinel that does not answer makes them unknown, like an unreachable Redis."""
    from models.db import create_db_engine

    engine = create_db_engine(sqlite_url)
    add_status_account(engine, "shop", SHOP, IG_TOKEN)
    engine.dispose()
    direct = redis.Redis.from_url(redis_url)
    direct.hset(PAUSE_COUNTS_KEY.format(SHOP), mapping={"throttled": 2})
    direct.close()
    code, out, err = status(DATABASE_URL=sqlite_url, REDIS_URL=sentinel_url)
    assert (code, err) == (0, "")
    assert account_block(out, "shop")["throttle pauses"] == "2 (throttled 2)"
    dead = f"redis+sentinel://127.0.0.1:{free_port()}/mymaster/0"
    code, out, _ = status(DATABASE_URL=sqlite_url, REDIS_URL=dead)
    assert account_block(out, "shop")["throttle pauses"] == "unknown (Redis unreachable)"


def replica_of(server: PrivateRedis, master: PrivateRedis) -> None:
    """`server` replicates `master`, and has caught up (its link to the master is up)."""
    source = redis.Redis(port=master.port)
    source.config_set("repl-diskless-sync-delay", 0)  # not the default 5 s wait for more replicas
    source.close()
    client = redis.Redis(port=server.port, decode_responses=True)
    client.replicaof("127.0.0.1", master.port)
    wait_until(
        lambda: cast(dict[str, Any], client.info("replication")).get("master_link_status") == "up"
    )
    client.close()


async def write_after_failover(client: ArqRedis, key: str) -> int:
    """Write `key`; the first try may meet the old master's dead connection (the error the
    relay and the workers already handle as a Redis outage). Returns the failed tries."""
    for failed in range(2):
        try:
            await client.set(key, "1")
        except redis.ConnectionError:
            continue
        return failed
    msg = "the client did not reach the new master"
    raise AssertionError(msg)


def test_a_client_follows_a_failover(tmp_path: Path) -> None:
    """The old master dies and the sentinel promotes its replica: the receiver's client, made
    before, writes to the new master after at most one failed try, and an arq pool made after
    (a worker starting its lanes again) connects to it; the URL stays the same."""
    with PrivateRedis() as old, PrivateRedis() as new:
        replica_of(new, old)
        with SentinelServer(tmp_path, old.port, "failover") as sentinel:
            url = sentinel.url(0)
            wait_until(lambda: new.port in sentinel.replica_ports())

            async def scenario() -> int:
                client = arq_client(parse_redis_url(url), socket_timeout=2)
                try:
                    await client.set("before", "1")
                    assert await client.wait(1, 2000) == 1  # it reached the replica
                    old.stop()
                    sentinel.failover()
                    await asyncio.to_thread(wait_until, lambda: sentinel.master_port() == new.port)
                    failed = await write_after_failover(client, "after")
                finally:
                    await close_async(client)
                pool = await create_pool(arq_settings(parse_redis_url(url)))
                try:
                    await pool.set("worker", "1")
                finally:
                    await pool.aclose()
                    await close_sentinels(pool.connection_pool)
                return failed

            assert asyncio.run(scenario()) <= 1
        promoted = redis.Redis(port=new.port)
        assert promoted.mget("before", "after", "worker") == [b"1", b"1", b"1"]
        assert cast(dict[str, Any], promoted.info("replication"))["role"] == "master"
        promoted.close()
