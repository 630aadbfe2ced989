"""Ingest benchmark: `archiver serve` against a bare Starlette endpoint, same machine, same run.

Prints deliveries/s, p50/p99/max, the ratio to bare, and checks that every 2xx answer left a
durable row in webhook_delivery. Run `python bench/ingest.py --help`; see bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import redis
from ingest_multi import measure_many, report_many
from ingest_single import (
    APP_SECRET,
    PG_URL,
    REDIS_URL,
    VERIFY_TOKEN,
    Deliveries,
    M,
    Options,
    database,
    measure,
    report,
)
from loadgen import wrk_version

BARE = "-m uvicorn bare:app --loop uvloop --http httptools --no-access-log --log-level warning"


def run_backend(kind: str, opts: Options) -> bool:
    if opts.receivers > 1:
        return run_pair(kind, opts, measure_many, report_many)
    return run_pair(kind, opts, measure, report)


def run_pair(
    kind: str, opts: Options, measure_fn: Callable[..., M], report_fn: Callable[[str, M, M], bool]
) -> bool:
    """Bare first, then the receiver on a fresh database and a flushed Redis database."""
    with (
        tempfile.TemporaryDirectory(prefix="archiver-bench-") as tmp,
        database(kind, opts, Path(tmp)) as db_url,
    ):
        print(f"backend: {kind}")
        if opts.profile is not None:
            opts = dataclasses.replace(opts, profile=opts.profile / kind)
        workdir, py = Path(tmp), sys.executable
        bare_argv = [py, *BARE.split(), "--app-dir", str(Path(__file__).resolve().parent)]
        bare = measure_fn("bare starlette", bare_argv, dict(os.environ), opts, workdir, None)
        env = dict(os.environ, DATABASE_URL=db_url, REDIS_URL=opts.redis_url)
        env.update(META_APP_SECRET=APP_SECRET, META_VERIFY_TOKEN=VERIFY_TOKEN, METRICS_PORT="0")
        client = redis.Redis.from_url(opts.redis_url)
        client.flushdb()
        try:
            argv = [py, "-m", "archiver", "serve"]
            real = measure_fn("archiver serve", argv, env, opts, workdir, db_url)
        finally:
            client.flushdb()
            client.close()
        return report_fn(kind, bare, real)


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--database",
        choices=["postgresql", "sqlite"],
        help="one backend (default: postgresql, then sqlite)",
    )
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per target")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per target")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="wrk threads (leave cores to servers)")
    p.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    p.add_argument("--postgres-url", default=PG_URL)
    p.add_argument("--redis-url", default=REDIS_URL, help="a database the script may flush")
    p.add_argument("--quick", action="store_true", help="a tiny run (1 s per target)")
    p.add_argument("--profile", type=Path, help="record py-spy stacks of the receiver here")
    p.add_argument("--receivers", type=int, default=1, help="servers per target, load split")
    a = p.parse_args(argv)
    if not 1 <= a.receivers <= a.connections:
        p.error("--receivers must be between 1 and --connections")
    loadgen = a.loadgen
    if loadgen == "auto":
        loadgen = "wrk" if wrk_version() else "python"
    return Options(
        databases=[a.database] if a.database else ["postgresql", "sqlite"],
        duration=1.0 if a.quick else a.duration,
        warmup=0.5 if a.quick else a.warmup,
        connections=a.connections,
        threads=a.threads,
        loadgen=loadgen,
        postgres_url=a.postgres_url,
        redis_url=a.redis_url,
        profile=a.profile,
        receivers=a.receivers,
    )


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # figures appear as each target finishes
    gen = (
        f"wrk ({wrk_version()}, {opts.threads} thread(s))"
        if opts.loadgen == "wrk"
        else "python-asyncio (bench/loadgen.py; wrk not used)"
    )
    size = len(Deliveries(APP_SECRET).body())
    per = f" over {opts.receivers} servers per target at once" if opts.receivers > 1 else ""
    print(
        f"ingest benchmark: load generator: {gen}; {opts.connections} connections{per}; "
        f"body {size:,} bytes, signed, distinct for the receiver; {opts.duration:g} s "
        f"measured after {opts.warmup:g} s warm-up per target; "
        f"backends: {', '.join(opts.databases)}"
    )
    results = [run_backend(kind, opts) for kind in opts.databases]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
