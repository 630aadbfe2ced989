"""Export benchmark: rows/s and peak memory of `archiver export`, per format and database.

Fills metric_history with generated snapshots (bench/archive_write.py: COPY on PostgreSQL,
executemany on SQLite, as record_snapshot stores them),
topping the same database up from one size to the next, then runs `archiver export` as a
child process per format, to /dev/null. Peak memory is the child's own maximum resident set
(wait4's ru_maxrss): flat memory means the same peak at 1 M and at 5 M rows. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from archive_plan import Capture, Template
from archive_shapes import Shape
from archive_write import write_all
from capture_procs import database
from sqlmodel import select

from models.db import create_db_engine, session_scope
from models.tables import Account, Snapshot, table_of
from store.recording import MetricRow, Subject

PG_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PER_SNAPSHOT = 20  # metric values per snapshot, as a story capture has
VERSIONS = 8  # snapshots per story
T0 = datetime(2026, 1, 1, tzinfo=UTC)
METRICS = ["views", "reach", "replies", "shares", "total_interactions", "follows",
           "profile_visits", "profile_activity", "likes", "saved", "navigation"]  # fmt: skip
NAV = "story_navigation_action_type"


@dataclass(frozen=True)
class Options:
    sizes: list[int]
    databases: list[str]
    formats: list[str]
    postgres_url: str


def _shape(withheld: int) -> Shape:
    """PER_SNAPSHOT story values, the ones at `withheld` (mod 10) null with a flag, as Meta's
    below-threshold answers are; no raw answer."""
    rows = []
    for i in range(PER_SNAPSHOT):
        nav = i >= len(METRICS)
        held = i % 10 == withheld
        rows.append(MetricRow(
            metric="navigation" if nav else METRICS[i], value=None if held else float(i + 1),
            breakdown=NAV if nav else None, dimension=f"tap_{i}" if nav else None,
            flag="below_threshold" if held else None,
        ))  # fmt: skip
    return Shape(rows, None, None)


def captures(first: int, count: int, account_id: int) -> Iterator[Capture]:
    """Snapshots `first` .. `first + count - 1`: VERSIONS per story, a minute apart; one value
    in ten withheld, a different one from one snapshot to the next."""
    templates = [Template(_shape(w), "@@no-id@@") for w in range(10)]
    for n in range(first, first + count):
        story, version = divmod(n, VERSIONS)
        subject = Subject(account_id, "instagram", "story", f"179{story:014d}")
        at, template = T0 + timedelta(minutes=n), templates[(10 - n % 10) % 10]
        yield Capture(subject, f"s{version + 1}", "api", version + 1, at, template, n % 997 + 1)


def top_up(url: str, rows: int) -> None:
    """Add snapshots (through bench/archive_write.py, as the write path stores them) until
    metric_history holds `rows` rows."""
    engine = create_db_engine(url)
    snapshots = table_of(Snapshot)
    with session_scope(engine) as session:
        found = session.exec(select(Account)).first()
        if found is None:
            found = Account(name="bench", ig_user_id="1", ig_token="EAAbench")
            session.add(found)
            session.flush()
        assert found.id is not None
        account = found.id
        have = session.exec(select(sa.func.count()).select_from(snapshots)).one()
    want = rows // PER_SNAPSHOT - have
    span = (T0 + timedelta(minutes=have), T0 + timedelta(minutes=have + want))
    for _ in write_all(engine, captures(have, want, account), *span):
        pass
    engine.dispose()


# `archiver export` in a child that prints its peak RSS (VmHWM, kB) as stderr's last word.
# VmHWM belongs to the exec'd process alone; wait4's ru_maxrss would also count the RSS this
# benchmark had when it forked the child.
CHILD = (
    "import sys; from archiver.cli import main; code = main(sys.argv[1:]); "
    "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1], "
    "file=sys.stderr); sys.exit(code)"
)


@dataclass(frozen=True)
class Run:
    rows: int
    seconds: float
    peak_kb: int
    size: int


def export_once(url: str, fmt: str, workdir: Path) -> Run:
    """One `archiver export` child process; its row count, wall time and peak RSS."""
    out = workdir / f"out.{fmt}"
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
    argv = [sys.executable, "-c", CHILD, "export", "--format", fmt, "--output", str(out)]
    started = time.monotonic()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"archiver export --format {fmt} failed ({proc.returncode}): {proc.stderr}")
    size = out.stat().st_size
    rows = _count(out, fmt)
    out.unlink()
    return Run(rows, seconds, int(proc.stderr.split()[-1]), size)


def _count(path: Path, fmt: str) -> int:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    with path.open("rb") as f:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    return lines - (fmt == "csv")  # the header


def bench_database(kind: str, opts: Options) -> None:
    with tempfile.TemporaryDirectory() as tmp, database(kind, opts.postgres_url, Path(tmp)) as url:
        for rows in opts.sizes:
            started = time.monotonic()
            top_up(url, rows)
            print(f"{kind}: {rows:,} rows generated in {time.monotonic() - started:.1f} s")
            for fmt in opts.formats:
                run = export_once(url, fmt, Path(tmp))
                if run.rows != rows:
                    sys.exit(f"{kind} {fmt}: exported {run.rows:,} rows, expected {rows:,}")
                rate = run.rows / run.seconds
                print(f"  {kind:<10} {rows:>10,} rows  {fmt:<7} {rate:>10,.0f} rows/s  "
                      f"{run.seconds:6.1f} s  peak RSS {run.peak_kb / 1024:6.1f} MB  "
                      f"file {run.size / 1e6:8.1f} MB", flush=True)  # fmt: skip


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--rows", default="1000000,5000000", help="sizes, ascending (default: 1M,5M)")
    p.add_argument("--database", choices=("both", "sqlite", "postgresql"), default="both")
    p.add_argument("--formats", default="csv,jsonl,parquet")
    p.add_argument("--postgres-url", default=PG_URL)
    p.add_argument("--quick", action="store_true", help="smoke run: 2,000 and 4,000 rows")
    args = p.parse_args(argv)
    sizes = [2_000, 4_000] if args.quick else [int(n) for n in args.rows.split(",")]
    if sizes != sorted(sizes) or any(n % PER_SNAPSHOT for n in sizes):
        p.error(f"--rows must ascend and be multiples of {PER_SNAPSHOT}")
    databases = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    return Options(sizes, databases, args.formats.split(","), args.postgres_url)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    print(f"archiver export benchmark: {', '.join(opts.formats)}; "
          f"{PER_SNAPSHOT} values per snapshot; peak RSS of the export process")  # fmt: skip
    for kind in opts.databases:
        bench_database(kind, opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
