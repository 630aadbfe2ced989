"""One receiver under load next to a bare app: the figures of bench/ingest.py's single runs,
and the pieces bench/ingest_multi.py shares (options, bodies, the database, the report)."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from loadgen import (
    LoadResult,
    MachineCpu,
    Target,
    machine_cpu,
    process_cpu_seconds,
    run_python,
    run_wrk,
    serve,
)

from models.db import create_db_engine
from models.migrate import upgrade

APP_SECRET = "bench-app-secret-7d41c0e2b9"
VERIFY_TOKEN = "bench-verify-token-5a09"
PATH = "/webhooks/instagram"
PG_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
ACCOUNTS = ("17841405309211844", "17841400008461203", "17841463397520148")
ENTRIES_PER_BODY = 6  # Meta batches changes; six story_insights entries make ~1.7 KB
M = TypeVar("M")  # what a measure function returns: one server's figures, or several's


class Deliveries:
    """Distinct signed `story_insights` deliveries: no two bodies in a run share a media id."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()
        self._seq = 0
        self._t0 = int(time.time())

    def _entry(self, n: int) -> dict[str, object]:
        # Fixed-width numbers keep every body the same size (wrk's pool is fixed-size records).
        value = {
            "media_id": f"180{n:014d}",
            "exits": 10 + n % 90,
            "replies": n % 10,
            "reach": 100 + n * 7 % 900,
            "taps_forward": 100 + n * 13 % 900,
            "taps_back": 10 + n * 3 % 90,
            "impressions": 1000 + n * 31 % 9000,
            "views": 1000 + n * 37 % 9000,
            "shares": n * 7 % 10,
            "profile_visits": 10 + n % 90,
            "total_interactions": 10 + n * 11 % 90,
        }
        return {
            "changes": [{"field": "story_insights", "value": value}],
            "id": ACCOUNTS[n % len(ACCOUNTS)],
            "time": self._t0 + n // ENTRIES_PER_BODY,
        }

    def body(self) -> bytes:
        """The next body: an array-wrapped envelope as in Meta's sample (https://developers.facebook.com/docs/instagram-platform/webhooks)."""
        first = self._seq * ENTRIES_PER_BODY
        self._seq += 1
        entries = [self._entry(first + k) for k in range(ENTRIES_PER_BODY)]
        return json.dumps(
            [{"entry": entries, "object": "instagram"}], separators=(",", ":")
        ).encode()

    def request(self, host: str) -> bytes:
        """The next raw HTTP/1.1 request, signed like Meta signs: HMAC-SHA256 of the raw bytes."""
        body = self.body()
        signature = hmac.new(self._key, body, hashlib.sha256).hexdigest()
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: facebookexternalua\r\n"
            f"Accept: */*\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"X-Hub-Signature-256: sha256={signature}\r\n\r\n"
        )
        return head.encode() + body

    def pool(self, host: str, size: int) -> list[bytes]:
        return [self.request(host) for _ in range(size)]


@dataclass(frozen=True)
class Options:
    databases: list[str]
    duration: float
    warmup: float
    connections: int
    threads: int
    loadgen: str
    postgres_url: str
    redis_url: str
    profile: Path | None = None  # a directory for py-spy's collapsed stacks of the receiver
    receivers: int = 1  # servers per target at once, the load split (bench/ingest_multi.py)


@dataclass(frozen=True)
class Measured:
    name: str
    result: LoadResult
    new_rows: int | None = None  # rows added to webhook_delivery by the measured run
    cpu_s: float = 0.0  # CPU seconds the server process used during the measured run
    machine: MachineCpu = dataclasses.field(default_factory=MachineCpu)  # the whole machine


def _load(
    opts: Options,
    target: Target,
    pool: list[bytes],
    duration: float,
    *,
    repeat: bool,
    workdir: Path,
) -> LoadResult:
    if opts.loadgen == "wrk":
        return run_wrk(
            target,
            pool,
            connections=opts.connections,
            duration_s=duration,
            threads=opts.threads,
            workdir=workdir,
            repeat=repeat,
        )
    return run_python(
        target, pool, connections=opts.connections, duration_s=duration, repeat=repeat
    )


def _pool_size(warm: LoadResult, duration: float) -> int:
    """Enough distinct bodies for the measured run at the warm-up's pace, with room to spare."""
    rate = 20_000 if warm.exhausted else warm.rate  # a warm-up that ran out was faster still
    return int(rate * duration * 1.6) + 2000


@contextmanager
def database(kind: str, opts: Options, workdir: Path) -> Iterator[str]:
    """A migrated, empty database of the benchmark's own; a PostgreSQL schema is dropped after."""
    if kind == "sqlite":
        url = f"sqlite:///{workdir}/archiver.db"
        upgrade(url)
        yield url
        return
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(opts.postgres_url, connect_args={"connect_timeout": 3})
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in opts.postgres_url else "?"
    url = f"{opts.postgres_url}{sep}options=-csearch_path%3D{schema}"
    try:
        upgrade(url)
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _settled_rows(url: str) -> int:
    """Row count once the server has finished requests still in flight (stable for 0.5 s)."""
    engine = create_db_engine(url, pool_size=1)
    try:
        last, stable_since, deadline = -1, time.monotonic(), time.monotonic() + 15
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                count = int(conn.execute(sa.text("SELECT count(*) FROM webhook_delivery")).one()[0])
            if count != last:
                last, stable_since = count, time.monotonic()
            elif time.monotonic() - stable_since >= 0.5:
                break
            time.sleep(0.1)
        return last
    finally:
        engine.dispose()


@contextmanager
def _profiling(opts: Options, target: Target, name: str) -> Iterator[None]:
    """py-spy samples the server during the measured run (--profile): collapsed stacks."""
    if opts.profile is None:
        yield
        return
    opts.profile.mkdir(parents=True, exist_ok=True)
    out = opts.profile / f"{name.replace(' ', '-')}.txt"
    venv_spy = Path(sys.executable).parent / "py-spy"
    spy_bin = str(venv_spy) if venv_spy.exists() else "py-spy"
    # Non-blocking: py-spy's default pauses every thread per sample and halves the rate.
    args = f"record --nonblocking --threads --idle --format raw --duration {round(opts.duration)}"
    argv = [spy_bin, *args.split(), "--pid", str(target.pid), "-o", str(out)]
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.wait(timeout=opts.duration + 30)


def measure(
    name: str,
    argv: list[str],
    env: dict[str, str],
    opts: Options,
    workdir: Path,
    db_url: str | None,
) -> Measured:
    """Start one server, warm it up, run the measured load, and count durable rows."""
    with serve(argv, env=env, workdir=workdir, log_name=name.replace(" ", "-")) as target:
        host = f"{target.host}:{target.port}"
        deliveries = Deliveries(APP_SECRET)
        durable = db_url is not None
        # The bare app needs no distinct bodies: one request repeated is the cheapest load, so
        # the load generator's own CPU takes the least from the server it measures.
        warm_pool = deliveries.pool(host, int(opts.warmup * 8000) + 500 if durable else 64)
        warm = _load(opts, target, warm_pool, opts.warmup, repeat=not durable, workdir=workdir)
        pool = deliveries.pool(host, _pool_size(warm, opts.duration)) if durable else warm_pool
        before = _settled_rows(db_url) if db_url else 0
        cpu_before, machine_before = process_cpu_seconds(target.pid), machine_cpu()
        with _profiling(opts, target, name) if db_url else nullcontext():
            result = _load(opts, target, pool, opts.duration, repeat=not durable, workdir=workdir)
        cpu = process_cpu_seconds(target.pid) - cpu_before
        machine = machine_cpu() - machine_before
        new_rows = _settled_rows(db_url) - before if db_url else None
    return Measured(name, result, new_rows, cpu, machine)


def _ms(us: float) -> str:
    return f"{us / 1000:.1f} ms"


def _mark(good: bool) -> str:
    return "PASS" if good else "MISS"


def _line(m: Measured, unit: str) -> str:
    r = m.result
    pct = 100 / r.duration_s if r.duration_s else 0.0
    mc = m.machine
    return (
        f"  {m.name:<15}: {r.rate:,.1f} {unit}/s  p50 {_ms(r.p50_us)}  p99 {_ms(r.p99_us)}  "
        f"max {_ms(r.max_us)}  non-2xx {r.non_2xx}  socket errors {r.socket_errors}\n"
        f"  {'':<15}  server CPU {pct * m.cpu_s:.0f} % of one core, "
        f"{1e6 * m.cpu_s / max(r.requests, 1):.0f} us per request; machine: "
        f"{pct * mc.busy_s:.0f} % busy of {os.cpu_count()} cores (PostgreSQL "
        f"{pct * mc.postgres_s:.0f} %, everything else but this server "
        f"{pct * (mc.busy_s - m.cpu_s - mc.postgres_s):.0f} %), {pct * mc.steal_s:.0f} % stolen"
    )


def _durability(real: Measured) -> bool:
    rows, ok = real.new_rows or 0, real.result.ok
    note = ""
    if rows > ok:  # wrk abandons requests in flight at its deadline; the server commits them
        note = f" (+{rows - ok} committed for requests abandoned at the load generator's cut-off)"
    verdict = (
        "every 2xx has a durable row" if rows >= ok else f"LOST: {ok - rows} 2xx without a row"
    )
    print(
        f"  durable rows in webhook_delivery: {rows:,} new for {ok:,} 2xx answers{note}: {verdict}"
    )
    return rows >= ok


def report(kind: str, bare: Measured, real: Measured) -> bool:
    """Print one backend's figures; False when a 2xx answer has no durable row."""
    r = real.result
    print(_line(bare, "requests"))
    print(_line(real, "deliveries"))
    ratio = 100 * r.rate / bare.result.rate if bare.result.rate else 0.0
    print(f"  ratio to bare: {ratio:.1f} %")
    if 0 < bare.cpu_s < 0.9 * bare.result.duration_s:
        print(
            "  warning: bare was not CPU-bound (the load generator held it back); the ratio "
            "overstates the receiver"
        )
    durable = _durability(real)
    slow = r.max_us >= 1e6 or r.socket_errors > 0  # wrk counts answers over 10 s as socket errors
    verdict = "RESPONSES OVER 1 s (or lost)" if slow else "no response over 1 s"
    print(f"  slowest receiver answer: {_ms(r.max_us)}: {verdict}")
    if r.exhausted:
        print("  warning: the pool of distinct bodies ran out early; the rate understates")
    goals = [f"all answers 2xx: {_mark(r.non_2xx == 0)}"]
    if kind == "postgresql":
        goals += [f">= 40 % of bare: {_mark(ratio >= 40)}", f"p99 < 60 ms: {_mark(r.p99_us < 6e4)}"]
    else:
        goals += [f">= 1,000 durable deliveries/s: {_mark(r.rate >= 1000)}"]
    goals += [f"no response over 1 s: {_mark(not slow)}"]
    print(f"  targets ({kind}): " + "; ".join(goals))
    return durable
