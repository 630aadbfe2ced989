"""`bench/capture.py --faults`: Meta's everyday faults injected into a capture run, and what
they cost.

A schedule of faults runs beside the workers (a thread), each from a fixed time after the
start: account throttles (BUC code 80002), one app-wide code 4 block, a 5xx burst, garbage
200s, a burst of 5,000 signed webhook deliveries to a real `archiver serve`, and one worker
SIGKILLed mid-run (a replacement is started, as a supervisor would). The simulator's call log
then says, per fault, how many calls were made while it held (target: none beyond the first
answer that said "stop") and how long each account took, once the fault cleared, to get its
next successful answer (target: one scheduler tick).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from capture_procs import Simulator, start_worker
from loadgen import LoadResult, Target, run_python, serve

from workers.meta.api_errors import DEFAULT_THROTTLE_MINUTES

APP_SECRET = "bench-faults-app-secret-41c7e0"
VERIFY_TOKEN = "bench-faults-verify-token-93b2"
BURST_DELIVERIES = 5000
BURST_CONNECTIONS = 16


@dataclass(frozen=True)
class CallRecord:
    """One answer of the simulator, as much of it as the analysis needs."""

    at: float  # Unix seconds (the simulator's clock, which is real time here)
    account: str | None
    status: int
    code: int | None
    kind: str = "insights"  # the route: insights (captures), stories (listings), ...
    faulted: bool = False  # an injected fault answered it (a garbage 200 too)

    @property
    def failed(self) -> bool:
        return self.status >= 400 or self.faulted


@dataclass
class Window:
    """One injected fault: when it held, whom it hit, and what it was."""

    name: str
    start: float
    end: float = 0.0
    accounts: frozenset[str] | None = None  # None: every account (the whole app)
    stops: bool = False  # a throttle: Meta said "stop calling"; calls during it are waste
    extend_s: float = 0.0  # a call during the block pushes its end this far past the call
    wait_s: float = 0.0  # how long Meta told a throttled client to stop (its regain estimate)


@dataclass
class FaultLog:
    """What the schedule did, filled from its thread and read after the run."""

    windows: list[Window] = field(default_factory=list)
    burst: LoadResult | None = None
    burst_s: float = 0.0
    killed_at: float | None = None
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    """What the schedule needs of the run's options."""

    lead_s: float  # the first expiry window opens this long after the start
    minute_s: float  # META_MINUTE_SECONDS: Meta's regain estimates count these
    enabled: bool = True


@dataclass(frozen=True)
class Step:
    """Run `action` `at_s` seconds after the start."""

    at_s: float
    name: str
    action: Callable[[FaultLog], None]


def _fault(sim: Simulator, **spec: Any) -> None:
    sim.request("POST", "/faults", {"faults": [spec]})


def throttle_accounts(
    sim: Simulator, accounts: Sequence[str], seconds: float, minute_s: float
) -> Callable[[FaultLog], None]:
    """BUC throttling (80002) of some accounts: a block each call during it extends; Meta's
    answer says to wait `estimated_time_to_regain_access` whole minutes."""
    wait = math.ceil(seconds / minute_s) * minute_s

    def act(log: FaultLog) -> None:
        start = time.time()
        for account in accounts:
            sim.request("POST", "/blocks", {"seconds": seconds, "account": account})
        scope = frozenset(accounts)
        log.windows.append(
            Window("account throttle (80002)", start, start + seconds, scope, True, seconds, wait)
        )

    return act


def block_app(sim: Simulator, seconds: float, minute_s: float) -> Callable[[FaultLog], None]:
    """Code 4 for the whole app: every account's calls refused until it lifts (calls during
    it extend it, as Meta says). Code 4 comes with no regain estimate, so a client waits its
    own default (workers.meta.api_errors.DEFAULT_THROTTLE_MINUTES)."""
    wait = DEFAULT_THROTTLE_MINUTES * minute_s

    def act(log: FaultLog) -> None:
        start = time.time()
        sim.request("POST", "/blocks", {"seconds": seconds})
        log.windows.append(
            Window("app-wide block (code 4)", start, start + seconds, None, True, seconds, wait)
        )

    return act


def server_errors(sim: Simulator, seconds: float) -> Callable[[FaultLog], None]:
    """A burst of 5xx (code 1, "An unknown error occurred") for every account."""

    def act(log: FaultLog) -> None:
        start = time.time()
        _fault(sim, status=500, code=1, is_transient=True, seconds=seconds)
        log.windows.append(Window("5xx burst", start, start + seconds))

    return act


def garbage(sim: Simulator, seconds: float) -> Callable[[FaultLog], None]:
    """200 answers whose body is not JSON (a proxy's error page), for every account."""

    def act(log: FaultLog) -> None:
        start = time.time()
        _fault(sim, garbage="not_json", seconds=seconds)
        log.windows.append(Window("garbage 200s", start, start + seconds))

    return act


def _signed(host: str, body: bytes) -> bytes:
    signature = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    head = (
        f"POST /webhooks/instagram HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json"
        f"\r\nContent-Length: {len(body)}\r\nX-Hub-Signature-256: sha256={signature}\r\n\r\n"
    )
    return head.encode() + body


def delivery_pool(target: Target, stories: Sequence[tuple[str, str]], count: int) -> list[bytes]:
    """`count` distinct signed story_insights deliveries about the run's own stories."""
    host = f"{target.host}:{target.port}"
    pool = []
    for n in range(count):
        account, media_id = stories[n % len(stories)]
        value = {"media_id": media_id, "reach": 100 + n, "replies": n % 7, "exits": n % 11,
                 "taps_forward": n % 13, "taps_back": n % 5, "impressions": 200 + n}  # fmt: skip
        entry = {"id": account, "time": int(time.time()), "changes": [
            {"field": "story_insights", "value": value}]}  # fmt: skip
        body = json.dumps([{"object": "instagram", "entry": [entry]}], separators=(",", ":"))
        pool.append(_signed(host, body.encode()))
    return pool


def webhook_burst(
    target: Target, stories: Sequence[tuple[str, str]], count: int
) -> Callable[[FaultLog], None]:
    def act(log: FaultLog) -> None:
        pool = delivery_pool(target, stories, count)
        start = time.time()
        log.burst = run_python(
            target, pool, connections=BURST_CONNECTIONS, duration_s=300, repeat=False
        )
        log.burst_s = time.time() - start
        log.windows.append(Window(f"{count:,} webhook deliveries", start, time.time()))

    return act


def kill_worker(
    procs: list[subprocess.Popen[bytes]], restart: Callable[[], subprocess.Popen[bytes]]
) -> Callable[[FaultLog], None]:
    """SIGKILL the first worker mid-run; start a replacement at once (a supervisor's restart)."""

    def act(log: FaultLog) -> None:
        victim, procs[0] = procs[0], restart()  # swapped first: the watcher never sees it dead
        log.killed_at = time.time()
        victim.kill()
        victim.wait(timeout=10)
        log.windows.append(Window("worker SIGKILL", log.killed_at, time.time()))

    return act


@contextmanager
def receiver(env: dict[str, str], workdir: Path) -> Iterator[Target]:
    """A real `archiver serve` on the run's database and Redis."""
    env = dict(env, META_APP_SECRET=APP_SECRET, META_VERIFY_TOKEN=VERIFY_TOKEN, METRICS_PORT="0")
    argv = [sys.executable, "-m", "archiver", "serve"]
    with serve(argv, env=env, workdir=workdir, log_name="receiver") as target:
        yield target


class Schedule(threading.Thread):
    """Runs the steps at their times; stops early when asked (the run ended)."""

    def __init__(self, steps: Sequence[Step], started: float) -> None:
        super().__init__(name="faults", daemon=True)
        self.steps = sorted(steps, key=lambda s: s.at_s)
        self.started = started
        self.log = FaultLog()
        self.done = threading.Event()

    def run(self) -> None:
        for step in self.steps:
            if self.done.wait(max(0.0, self.started + step.at_s - time.time())):
                return
            print(f"  fault at t+{time.time() - self.started:.0f}s: {step.name}")
            try:
                step.action(self.log)
            except Exception as exc:  # a benchmark reports what failed and goes on
                self.log.errors.append(f"{step.name}: {type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=330)

    def finish(self) -> FaultLog:
        """Stop (a step under way ends first) and hand over what was done."""
        self.stop()
        return self.log


def calls_from_log(raw: Sequence[dict[str, Any]]) -> list[CallRecord]:
    return [
        CallRecord(
            datetime.fromisoformat(c["at"]).timestamp(),
            c.get("account"),
            c["status"],
            c["code"],
            c.get("kind") or "",
            c.get("fault") is not None,
        )
        for c in raw
    ]


def _hits(window: Window, call: CallRecord) -> bool:
    in_scope = window.accounts is None or call.account in window.accounts
    return in_scope and window.start <= call.at


def wasted_calls(window: Window, calls: Sequence[CallRecord]) -> int:
    """Calls answered with an error while a throttle held, beyond each account's first one
    (for the whole app: beyond the first of all); 0 is Meta's rule kept."""
    refused = [c for c in calls if _hits(window, c) and c.at <= window.end and c.failed]
    if window.accounts is None:
        return max(0, len(refused) - 1)
    firsts = {c.account for c in refused}
    return len(refused) - len(firsts)


def cleared(window: Window, calls: Sequence[CallRecord]) -> float:
    """When the fault really ended: its planned end, later when calls during a block extended
    it (each refused call pushes the end `extend_s` past itself), and for a throttle never
    before the wait Meta asked for had passed since its first refusal (a client that called
    sooner would extend the block)."""
    refused = [c.at for c in calls if _hits(window, c) and c.failed]
    if not window.stops:
        return window.end
    late = [at + window.extend_s for at in refused if at <= window.end + 600]
    asked = [min(refused) + window.wait_s] if refused else []
    return max([window.end, *late, *asked])


def recovery_gaps(window: Window, calls: Sequence[CallRecord]) -> list[float]:
    """For each account whose captures the fault answered with an error: seconds from the
    fault clearing to that account's next successful insights call. Captures are what a
    story's final depends on; a failed listing simply lists again at its next poll."""
    end = cleared(window, calls)
    captures = [c for c in calls if c.kind == "insights"]
    hit = {c.account for c in captures if _hits(window, c) and c.at <= end and c.failed}
    firsts: dict[str | None, float] = {}
    for call in captures:
        if call.account in hit and call.at > end and not call.failed:
            firsts.setdefault(call.account, call.at - end)
    return list(firsts.values())


def report(log: FaultLog, calls: Sequence[CallRecord], tick_s: float) -> bool:
    """Print one line per fault; True when no throttle was called through and every account
    recovered within a tick (plus a second of slack for the answer itself)."""
    good = not log.errors
    for error in log.errors:
        print(f"  fault step failed: {error}")
    for window in log.windows:
        gaps = recovery_gaps(window, calls)
        worst = max(gaps, default=0.0)
        wasted = wasted_calls(window, calls) if window.stops else 0
        # One tick, a second for the answer, and the pacer's jitter (up to 10 % of the wait).
        ok = worst <= tick_s + 1.0 + 0.1 * window.wait_s and wasted == 0
        good = good and ok
        print(
            f"  {window.name:<28} {window.end - window.start:5.1f} s: accounts hit "
            f"{len(gaps):,}; longest from clearing to next success {worst:.1f} s; "
            f"calls during the block beyond the first {wasted:,}"
            f"{'' if window.stops else ' (not a throttle)'}: {'PASS' if ok else 'MISS'}"
        )
    if log.burst is not None:
        b = log.burst
        print(
            f"  webhook burst: {b.ok:,} of {b.requests:,} answered 2xx in {log.burst_s:.1f} s "
            f"({b.socket_errors} socket errors)"
        )
    return good


@contextmanager
def faults_beside(
    plan: Plan,
    env: dict[str, str],
    workdir: Path,
    sim: Simulator,
    procs: list[subprocess.Popen[bytes]],
    created: list[dict[str, Any]],
    t0: float,
) -> Iterator[Schedule | None]:
    """With --faults: a receiver and the fault schedule, running beside the workers."""
    if not plan.enabled:
        yield None
        return
    with receiver(env, workdir) as target:
        schedule = Schedule(fault_steps(plan, env, workdir, sim, procs, created, target), t0)
        schedule.start()
        try:
            yield schedule
        finally:
            schedule.stop()


def fault_steps(
    plan: Plan,
    env: dict[str, str],
    workdir: Path,
    sim: Simulator,
    procs: list[subprocess.Popen[bytes]],
    created: list[dict[str, Any]],
    target: Target,
) -> list[Step]:
    """The schedule: one fault of each kind, a minute apart, from 10 s after the lead."""
    first = plan.lead_s + 10
    m = plan.minute_s
    accounts = [a["ig_user_id"] for a in created]
    stories = [(a["ig_user_id"], s) for a in created for s in a["stories"]]
    restart = functools.partial(start_worker, env, workdir, "worker-0")
    return [
        Step(first, "account throttles", throttle_accounts(sim, accounts[::33], 20, m)),
        Step(first + 60, "app-wide code 4", block_app(sim, 15, m)),
        Step(first + 120, "5xx burst", server_errors(sim, 10)),
        Step(first + 180, "garbage 200s", garbage(sim, 10)),
        Step(first + 240, "webhook burst", webhook_burst(target, stories, BURST_DELIVERIES)),
        Step(first + 330, "worker SIGKILL", kill_worker(procs, restart)),
    ]
