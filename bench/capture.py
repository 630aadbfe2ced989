"""Story capture benchmark: N accounts x 3 live stories expiring over M minutes, real workers;
with `--media 50`, 50 feed posts and Reels per account captured beside them (capture_media).

The simulator (`python -m metasim`) and `--workers` `archiver worker` processes run as
subprocesses on a schema of the benchmark's own and a Redis database it flushes. Prints the
share of stories finally captured before expiry, the missed ones' reasons, snapshots/s per
worker, Graph calls per snapshot, throttle pauses and worker RSS. See bench/README.md.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import redis
from capture_faults import Plan, calls_from_log, faults_beside, report
from capture_media import MediaPlan, print_media, seed_media
from capture_procs import (
    CallTally,
    Simulator,
    check_alive,
    cpu_seconds,
    database,
    flushed,
    pause_counts,
    proc_status_kb,
    simulator,
    workers,
)
from capture_results import (
    Outcome,
    RunResult,
    Timing,
    outcome,
    print_run,
    print_sizes,
    progress,
    timing,
)
from sqlmodel import Session

from metasim.world import tokens as sim_tokens
from models.accounts import Account
from models.db import create_db_engine

PG_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_CAPTURE_REDIS_URL", "redis://127.0.0.1:6379/15")
DAY = 86400
SEED_BATCH = 250  # accounts per POST /_sim/accounts


@dataclass(frozen=True)
class Options:
    sizes: list[int]
    stories: int
    spread_s: float  # expiries spread over this many seconds ...
    lead_s: float  # ... starting this long after the start
    poll_s: int
    snapshot_s: int
    margin_s: int
    tick_s: int
    workers: int
    max_jobs: int
    minute_s: float
    database: str
    postgres_url: str
    redis_url: str
    every_s: float
    log_level: str
    faults: bool = False
    media: MediaPlan | None = None  # --media: feed posts and Reels beside the stories


def seed(sim: Simulator, opts: Options, accounts: int, t0: float) -> list[dict[str, str]]:
    """Accounts in the simulator; story j of S expires at t0 + lead + spread * (j + 0.5) / S.

    Story j belongs to account j % N, so each account's stories expire far apart.
    """
    total = accounts * opts.stories
    expiry = [t0 + opts.lead_s + opts.spread_s * (j + 0.5) / total for j in range(total)]
    specs = [
        {"stories": [{"timestamp": expiry[a + k * accounts] - DAY} for k in range(opts.stories)]}
        for a in range(accounts)
    ]
    created: list[dict[str, str]] = []
    for start in range(0, accounts, SEED_BATCH):
        body = {"accounts": specs[start : start + SEED_BATCH]}
        created += sim.request("POST", "/accounts", body)["accounts"]
    return created


def register(db_url: str, created: list[dict[str, str]]) -> None:
    """The same accounts in the archiver, with the simulator's tokens (as `accounts add` does)."""
    engine = create_db_engine(db_url, pool_size=1)
    try:
        with Session(engine) as session:
            for acc in created:
                session.add(
                    Account(
                        name=f"bench-{acc['ig_user_id']}",
                        ig_user_id=acc["ig_user_id"],
                        ig_token=acc["token"],
                        login=acc["login"],
                    )
                )
            session.commit()
    finally:
        engine.dispose()


def worker_env(opts: Options, db_url: str, sim: Simulator) -> dict[str, str]:
    env = dict(os.environ, DATABASE_URL=db_url, REDIS_URL=opts.redis_url, **sim.host_urls())
    env.update(
        STORY_POLL_SECONDS=str(opts.poll_s),
        STORY_SNAPSHOT_SECONDS=str(opts.snapshot_s),
        STORY_FINAL_MARGIN_SECONDS=str(opts.margin_s),
        SCHEDULE_TICK_SECONDS=str(opts.tick_s),
        META_MINUTE_SECONDS=str(opts.minute_s),
        WORKER_MAX_JOBS=str(opts.max_jobs),
        LOG_LEVEL=opts.log_level,
        WORKER_METRICS_PORT="0",  # several workers at once: no metrics listener each
        # The simulator's app, so that debug_token (Facebook Login token expiry) answers.
        META_APP_ID=sim_tokens.APP_ID,
        META_APP_SECRET=sim_tokens.APP_SECRET,
    )
    env.update(opts.media.env() if opts.media else {"IG_MEDIA_POLL_SECONDS": "86400"})
    return env


def _stamp(started: float) -> str:
    return datetime.now(UTC).strftime("%H:%M:%S") + f" t+{time.monotonic() - started:4.0f}s"


@dataclass(frozen=True)
class Running:
    """The processes of one run, and when it must end at the latest (Unix time)."""

    sim: Simulator
    procs: list[subprocess.Popen[bytes]]
    workdir: Path
    client: redis.Redis
    deadline: float


def watch(opts: Options, engine_url: str, run: RunResult, live: Running) -> None:
    """Print progress every few seconds until every story is closed or the deadline passes."""
    engine = create_db_engine(engine_url, pool_size=1)
    sim, procs = live.sim, live.procs
    started = time.monotonic()
    try:
        while True:
            time.sleep(opts.every_s)
            check_alive(procs, live.workdir)
            run.calls.update(sim)
            p = progress(engine)
            rss = "/".join(f"{proc_status_kb(pr.pid, 'VmRSS') / 1024:.0f}" for pr in procs)
            print(
                f"  {_stamp(started)}  stories seen {p.seen:,}/{run.stories:,}  snapshots "
                f"{p.snapshots:,}  finals {p.finals:,}  missed {p.missed:,}  insights calls "
                f"{run.calls.by_kind['insights']:,}  worker RSS {rss} MB"
            )
            if p.finals + p.missed >= run.stories or time.time() > live.deadline:
                return
    finally:
        engine.dispose()


def collect(run: RunResult, opts: Options, db_url: str, live: Running) -> None:
    """Read the figures while the processes still live (RSS and CPU come from /proc)."""
    sim, procs = live.sim, live.procs
    run.calls.update(sim)
    run.pauses = pause_counts(live.client)
    run.rss_kb = [proc_status_kb(p.pid, "VmRSS") for p in procs]
    run.hwm_kb = [proc_status_kb(p.pid, "VmHWM") for p in procs]
    run.worker_cpu_s = sum(cpu_seconds(p.pid) for p in procs)
    run.sim_cpu_s = cpu_seconds(sim.proc.pid)
    engine = create_db_engine(db_url, pool_size=1)
    try:
        run.outcome = outcome(engine, run.stories)
        run.timing = timing(engine, snapshot_seconds=opts.snapshot_s, margin_seconds=opts.margin_s)
    finally:
        engine.dispose()


def run_size(opts: Options, accounts: int) -> RunResult:
    """One run: fresh simulator, schema and Redis database; processes stopped after."""
    stories = accounts * opts.stories
    run = RunResult(accounts, stories, opts.workers, 0.0, Outcome(stories), Timing(), CallTally())
    with (
        tempfile.TemporaryDirectory(prefix="archiver-capture-") as tmp,
        simulator(Path(tmp), minute_seconds=opts.minute_s) as sim,
        database(opts.database, opts.postgres_url, Path(tmp)) as db_url,
        flushed(opts.redis_url) as client,
    ):
        t0 = time.time()
        created = seed(sim, opts, accounts, t0)
        media = seed_media(sim, opts.media, created) if opts.media else 0
        register(db_url, created)
        print(f"run: {accounts:,} accounts x {opts.stories} stories = {stories:,} stories", end="")
        print(f" and {media:,} feed posts and Reels" if media else "", end="")
        print(f", seeded in {time.time() - t0:.1f} s; starting {opts.workers} worker(s)")
        deadline = t0 + opts.lead_s + opts.spread_s + 2 * opts.tick_s + 10
        env = worker_env(opts, db_url, sim)
        with (
            workers(opts.workers, env, Path(tmp)) as procs,
            faults_beside(
                Plan(opts.lead_s, opts.minute_s, opts.faults),
                env,
                Path(tmp),
                sim,
                procs,
                created,
                t0,
            ) as schedule,
        ):
            run.calls.keep = schedule is not None
            live = Running(sim, procs, Path(tmp), client, deadline)
            watch(opts, db_url, run, live)
            run.elapsed_s = time.time() - t0
            collect(run, opts, db_url, live)
            run.faults = schedule.finish() if schedule is not None else None
            if opts.media:
                engine = create_db_engine(db_url, pool_size=1)
                print_media(engine, run.calls, accounts, media, run.elapsed_s)
                engine.dispose()
    return run


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    add = p.add_argument
    add("--accounts", default="1000", help="comma-separated sizes run in sequence, e.g. 100,1000")
    add("--stories", type=int, default=3, help="live stories per account")
    add("--minutes", type=float, default=10.0, help="expiries spread over this many minutes")
    add("--lead", type=float, default=60.0, help="seconds before the first expiry window opens")
    add("--poll-seconds", type=int, default=30, help="STORY_POLL_SECONDS")
    add("--snapshot-seconds", type=int, default=60, help="STORY_SNAPSHOT_SECONDS")
    add("--final-margin", type=int, default=30, help="STORY_FINAL_MARGIN_SECONDS")
    add("--tick", type=int, default=1, help="SCHEDULE_TICK_SECONDS")
    add("--workers", type=int, default=2, help="`archiver worker` processes")
    add("--max-jobs", type=int, default=10, help="WORKER_MAX_JOBS")
    add("--minute-seconds", type=float, default=60.0, help="META_MINUTE_SECONDS and the sim's")
    add("--database", choices=["postgresql", "sqlite"], default="postgresql")
    add("--postgres-url", default=PG_URL)
    add("--redis-url", default=REDIS_URL, help="a database the script may flush")
    add("--every", type=float, default=5.0, help="seconds between progress lines")
    add("--log-level", default="INFO", help="the workers' LOG_LEVEL (their logs go to files)")
    add("--quick", action="store_true", help="20 accounts, expiries over 30 s, short intervals")
    add("--faults", action="store_true", help="inject Meta's faults during the run (see README)")
    add("--media", type=int, default=0, help="feed posts and Reels per account (issue: 50)")
    add("--media-spread", type=float, default=10.0, help="media posted over the last M minutes")
    add("--media-snapshots", default="2m,5m,10m,15m", help="IG_MEDIA_SNAPSHOTS for the run")
    add("--media-poll", type=int, default=120, help="IG_MEDIA_POLL_SECONDS for the run")
    a = p.parse_args(argv)
    if a.faults and a.minute_seconds == 60.0:
        a.minute_seconds = 5.0  # a 20 s block is then a 4-"minute" regain estimate
    if a.faults and a.final_margin == 30:
        # Production's margin (600 s) on the same compressed clock: 10 Meta minutes, so a
        # throttle of a few minutes still leaves time for the final.
        a.final_margin = round(600 * a.minute_seconds / 60)
    if a.quick:
        a.accounts, a.minutes, a.lead, a.every = "20", 0.5, 20.0, 2.0
        a.poll_seconds, a.snapshot_seconds, a.final_margin = 5, 10, 8
    return Options(
        sizes=[int(n) for n in str(a.accounts).split(",") if n.strip()],
        stories=a.stories,
        spread_s=a.minutes * 60,
        lead_s=a.lead,
        poll_s=a.poll_seconds,
        snapshot_s=a.snapshot_seconds,
        margin_s=a.final_margin,
        tick_s=a.tick,
        workers=a.workers,
        max_jobs=a.max_jobs,
        minute_s=a.minute_seconds,
        database=a.database,
        postgres_url=a.postgres_url,
        redis_url=a.redis_url,
        every_s=a.every,
        log_level=a.log_level,
        faults=a.faults,
        media=MediaPlan(a.media, a.media_spread * 60, a.media_snapshots, a.media_poll)
        if a.media
        else None,
    )


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl+C: processes stopped, schema dropped


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    signal.signal(signal.SIGTERM, _terminate)
    print(
        f"capture benchmark: {opts.database}; {opts.workers} worker(s), WORKER_MAX_JOBS "
        f"{opts.max_jobs}; expiries over {opts.spread_s / 60:g} min after {opts.lead_s:g} s; "
        f"poll {opts.poll_s} s, snapshot {opts.snapshot_s} s, final margin {opts.margin_s} s, "
        f"tick {opts.tick_s} s; sizes: {', '.join(f'{n:,}' for n in opts.sizes)} accounts"
    )
    results: list[RunResult] = []
    faults_ok = True
    try:
        for accounts in opts.sizes:
            results.append(run_size(opts, accounts))
            print_run(results[-1], opts.poll_s)
            faults_ok = print_faults(results[-1], opts.tick_s) and faults_ok
    except KeyboardInterrupt:
        print("interrupted: processes stopped, schema dropped", file=sys.stderr)
        return 130
    print_sizes(results)
    in_time = all(r.outcome.final_in_time * 1000 >= r.stories * 999 for r in results)
    return 0 if in_time and faults_ok else 1


def print_faults(run: RunResult, tick_s: int) -> bool:
    """The fault report of a --faults run (True without faults)."""
    if run.faults is None:
        return True
    print("faults injected (times from the simulator's call log):")
    return report(run.faults, calls_from_log(run.calls.records), tick_s)


if __name__ == "__main__":
    sys.exit(main())
