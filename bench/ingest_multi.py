"""The ingest benchmark over several servers at once: `python bench/ingest.py --receivers 2`.

wrk targets one URL, so every server gets a load generator of its own with its share of the
connections, all started together, and their figures are added up. Bare gets the same: as many
bare processes with the same split, so the ratio compares like with like. Each receiver's
measured pool holds a range of media ids of its own, so durable rows are checked per receiver
as well as in total. See bench/README.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from ingest_single import (
    APP_SECRET,
    Deliveries,
    Measured,
    Options,
    _load,
    _ms,
    _pool_size,
    _profiling,
    _settled_rows,
    report,
)
from loadgen import LoadResult, Target, machine_cpu, process_cpu_seconds, serve

from models.db import create_db_engine

MARKER = b'"media_id":"'  # every body's first media id sits at the same offset
MEDIA_ID_LEN = 17


@dataclass(frozen=True)
class Part:
    """One server of several measured at once."""

    index: int
    result: LoadResult
    cpu_s: float  # CPU seconds of this server process during the measured run
    rows: int | None = None  # durable rows of this receiver's measured pool


@dataclass(frozen=True)
class Fleet:
    total: Measured  # rates and server CPU summed, percentiles the worst: for ingest.report
    parts: list[Part]


def split(total: int, n: int) -> list[int]:
    """`total` connections over `n` servers, as evenly as possible."""
    return [total // n + (i < total % n) for i in range(n)]


def combine(results: Sequence[LoadResult]) -> LoadResult:
    """Requests and rates summed; p50, p99 and max the worst of the servers'."""
    requests = sum(r.requests for r in results)
    rate = sum(r.rate for r in results)
    return LoadResult(
        requests=requests,
        non_2xx=sum(r.non_2xx for r in results),
        socket_errors=sum(r.socket_errors for r in results),
        duration_s=requests / rate if rate else max(r.duration_s for r in results),
        p50_us=max(r.p50_us for r in results),
        p99_us=max(r.p99_us for r in results),
        max_us=max(r.max_us for r in results),
        exhausted=any(r.exhausted for r in results),
    )


def load_all(
    opts: Options,
    targets: Sequence[Target],
    pools: Sequence[list[bytes]],
    duration: float,
    *,
    repeat: bool,
    dirs: Sequence[Path],
) -> list[LoadResult]:
    """One load generator per server, all at once, each with its share of the connections."""
    shares = split(opts.connections, len(targets))

    def one(i: int) -> LoadResult:
        share = dataclasses.replace(opts, connections=shares[i])
        return _load(share, targets[i], pools[i], duration, repeat=repeat, workdir=dirs[i])

    with ThreadPoolExecutor(max_workers=len(targets)) as executor:
        return list(executor.map(one, range(len(targets))))


def media_id(request: bytes) -> bytes:
    """The first media id of a request or body."""
    start = request.index(MARKER) + len(MARKER)
    return request[start : start + MEDIA_ID_LEN]


def rows_per_pool(url: str, pools: Sequence[list[bytes]]) -> list[int]:
    """Rows whose first media id lies in each pool's range (pools are consecutive, disjoint)."""
    pos = Deliveries(APP_SECRET).body().index(MARKER) + len(MARKER) + 1  # SQL counts from 1
    query = sa.text(
        f"SELECT count(*) FROM webhook_delivery WHERE substr(body, {pos}, {MEDIA_ID_LEN}) "
        "BETWEEN :lo AND :hi"
    ).bindparams(sa.bindparam("lo", type_=sa.LargeBinary), sa.bindparam("hi", type_=sa.LargeBinary))
    engine = create_db_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            return [
                int(conn.execute(query, {"lo": media_id(p[0]), "hi": media_id(p[-1])}).scalar_one())
                for p in pools
            ]
    finally:
        engine.dispose()


@contextmanager
def _servers(
    argv: list[str], env: dict[str, str], workdir: Path, slug: str, n: int
) -> Iterator[list[Target]]:
    with ExitStack() as stack:
        log_names = [f"{slug}-{i + 1}" for i in range(n)]
        yield [
            stack.enter_context(serve(argv, env=env, workdir=workdir, log_name=name))
            for name in log_names
        ]


@contextmanager
def _profiling_all(opts: Options, targets: Sequence[Target], slug: str) -> Iterator[None]:
    with ExitStack() as stack:
        for i, target in enumerate(targets):
            stack.enter_context(_profiling(opts, target, f"{slug}-{i + 1}"))
        yield


def _pools(
    opts: Options, targets: Sequence[Target], dirs: Sequence[Path], durable: bool
) -> list[list[bytes]]:
    """Warm every server up at once; then the measured pools, sized from each one's pace."""
    deliveries = Deliveries(APP_SECRET)  # one sequence: no two pools share a media id
    hosts = [f"{t.host}:{t.port}" for t in targets]
    warm_pools = [
        deliveries.pool(h, int(opts.warmup * 8000) + 500 if durable else 64) for h in hosts
    ]
    warm = load_all(opts, targets, warm_pools, opts.warmup, repeat=not durable, dirs=dirs)
    if not durable:  # bare: one request repeated, as in ingest.measure
        return warm_pools
    return [
        deliveries.pool(h, _pool_size(w, opts.duration)) for h, w in zip(hosts, warm, strict=True)
    ]


def measure_many(
    name: str,
    argv: list[str],
    env: dict[str, str],
    opts: Options,
    workdir: Path,
    db_url: str | None,
) -> Fleet:
    """ingest.measure for `opts.receivers` servers at once: per server and summed."""
    slug, n = name.replace(" ", "-"), opts.receivers
    dirs = [workdir / f"load-{slug}-{i + 1}" for i in range(n)]
    for d in dirs:
        d.mkdir()
    with _servers(argv, env, workdir, slug, n) as targets:
        pools = _pools(opts, targets, dirs, durable=db_url is not None)
        before = _settled_rows(db_url) if db_url else 0
        cpu_before, machine_before = [process_cpu_seconds(t.pid) for t in targets], machine_cpu()
        with _profiling_all(opts, targets if db_url else [], slug):
            results = load_all(opts, targets, pools, opts.duration, repeat=not db_url, dirs=dirs)
        cpu = [process_cpu_seconds(t.pid) - c for t, c in zip(targets, cpu_before, strict=True)]
        machine = machine_cpu() - machine_before
        total_rows = _settled_rows(db_url) - before if db_url else None
        rows: list[int | None] = [*rows_per_pool(db_url, pools)] if db_url else [None] * n
    parts = [Part(i + 1, *fields) for i, fields in enumerate(zip(results, cpu, rows, strict=True))]
    total = Measured(f"{name} x{n}", combine(results), total_rows, sum(cpu), machine)
    return Fleet(total, parts)


def _part_line(label: str, unit: str, part: Part) -> str:
    r = part.result
    pct = 100 / r.duration_s if r.duration_s else 0.0
    return (
        f"  {label} {part.index}: {r.rate:,.1f} {unit}/s  p50 {_ms(r.p50_us)}  "
        f"p99 {_ms(r.p99_us)}  max {_ms(r.max_us)}  non-2xx {r.non_2xx}  "
        f"socket errors {r.socket_errors}; server CPU {pct * part.cpu_s:.0f} % of one core, "
        f"{1e6 * part.cpu_s / max(r.requests, 1):.0f} us per request"
    )


def _part_durable(part: Part) -> bool:
    rows, ok = part.rows or 0, part.result.ok
    verdict = "every 2xx has a durable row" if rows >= ok else f"LOST: {ok - rows} without a row"
    print(
        f"    durable rows of its measured deliveries: {rows:,} for {ok:,} 2xx answers: {verdict}"
    )
    return rows >= ok


def report_many(kind: str, bare: Fleet, real: Fleet) -> bool:
    """Each server's figures, then ingest.report on the sums; False when a 2xx lost its row."""
    n = len(real.parts)
    for part in bare.parts:
        print(_part_line("bare starlette", "requests", part))
    durable = True
    for part in real.parts:
        print(_part_line("archiver serve", "deliveries", part))
        durable = _part_durable(part) and durable
    print(
        f"  all {n} together (rates and server CPU summed; p50, p99 and max the worst of the {n}; "
        "the ratio is receivers over bare processes):"
    )
    return report(kind, bare.total, real.total) and durable
