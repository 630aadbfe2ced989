"""What bench/capture.py found: read back from the archiver's database, then printed.

Plain SQL on the public tables (media, snapshot), so the figures are what an analyst sees.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from models.types import UTCDateTime

if TYPE_CHECKING:
    from capture_faults import FaultLog
    from capture_procs import CallTally

_PROGRESS = sa.text(
    "SELECT count(*),"
    " count(*) FILTER (WHERE capture_state = 'final_captured'),"
    " count(*) FILTER (WHERE capture_state = 'missed'),"
    " (SELECT count(*) FROM snapshot WHERE source = 'api')"
    " FROM media WHERE subject_type = 'story'"
)
_CLOSED = sa.text(
    "SELECT m.media_id, m.capture_state, m.missed_reason, m.last_error, m.expires_at,"
    " s.captured_at FROM media m LEFT JOIN snapshot s ON s.id = m.final_snapshot_id"
    " WHERE m.subject_type = 'story'"
).columns(
    sa.column("media_id"),
    sa.column("capture_state"),
    sa.column("missed_reason"),
    sa.column("last_error"),
    sa.column("expires_at", UTCDateTime),
    sa.column("captured_at", UTCDateTime),
)  # typed: SQLite hands back timestamps as text otherwise
_SNAPSHOTS = sa.text(
    "SELECT s.slot, s.captured_at, m.posted_at, m.expires_at, m.discovered_at"
    " FROM snapshot s JOIN media m ON m.media_id = s.subject_id AND m.platform = s.platform"
    " WHERE s.source = 'api' AND s.subject_type = 'story'"
).columns(
    sa.column("slot"),
    *(sa.column(name, UTCDateTime) for name in ("captured_at", "posted_at", "expires_at")),
    sa.column("discovered_at", UTCDateTime),
)


@dataclass(frozen=True)
class Progress:
    seen: int
    finals: int
    missed: int
    snapshots: int


def progress(engine: Engine) -> Progress:
    with engine.connect() as conn:
        seen, finals, missed, snaps = conn.execute(_PROGRESS).one()
    return Progress(int(seen), int(finals or 0), int(missed or 0), int(snaps))


def _group(reason: str) -> str:
    """Reasons grouped: ids and numbers replaced, so one cause is one line."""
    return re.sub(r"\d+(\.\d+)?", "N", reason)[:160]


@dataclass
class Outcome:
    """Every story's end: final before expiry, or missed with its (grouped) reason."""

    total: int
    final_in_time: int = 0
    missed: Counter[str] = field(default_factory=Counter)


def outcome(engine: Engine, total: int) -> Outcome:
    """Stories not in the database at all are missed as never discovered."""
    result = Outcome(total)
    with engine.connect() as conn:
        rows = conn.execute(_CLOSED).all()
    for _media_id, state, missed_reason, last_error, expires_at, final_at in rows:
        if state == "final_captured" and final_at is not None and final_at < expires_at:
            result.final_in_time += 1
        elif state == "final_captured":
            result.missed["final snapshot committed after expiry"] += 1
        elif state == "missed":
            result.missed[_group(missed_reason or last_error or "missed (no reason kept)")] += 1
        else:
            why = f" (last error: {_group(last_error)})" if last_error else ""
            result.missed[f"still {state} at the bench's deadline, no final snapshot{why}"] += 1
    if total > len(rows):
        result.missed["never discovered (no listing found it in time)"] += total - len(rows)
    return result


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


@dataclass
class Timing:
    """Snapshot times: the active window, the peak rate, and each kind of slot's lateness."""

    count: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    peak_per_s: float = 0.0
    late: dict[str, list[float]] = field(default_factory=dict)  # kind -> seconds after due
    final_lead: list[float] = field(default_factory=list)  # seconds before expiry

    @property
    def span_s(self) -> float:
        if self.first_at is None or self.last_at is None:
            return 0.0
        return max((self.last_at - self.first_at).total_seconds(), 1.0)


@dataclass
class RunResult:
    accounts: int
    stories: int
    workers: int
    elapsed_s: float
    outcome: Outcome
    timing: Timing
    calls: CallTally
    pauses: Counter[str] = field(default_factory=Counter)
    rss_kb: list[int] = field(default_factory=list)
    hwm_kb: list[int] = field(default_factory=list)
    worker_cpu_s: float = 0.0
    sim_cpu_s: float = 0.0
    faults: FaultLog | None = None


def _due(
    slot: str, posted: datetime, expires: datetime, found: datetime, snap_s: int, margin_s: int
) -> tuple[str, datetime]:
    if slot == "final":
        return "final", expires - timedelta(seconds=margin_s)
    if slot.startswith("s") and slot[1:].isdigit():
        return "regular", posted + timedelta(seconds=int(slot[1:]) * snap_s)
    return "first (after discovery)", found


def timing(engine: Engine, *, snapshot_seconds: int, margin_seconds: int) -> Timing:
    with engine.connect() as conn:
        rows = conn.execute(_SNAPSHOTS).all()
    result = Timing(count=len(rows))
    buckets: Counter[int] = Counter()
    for slot, captured, posted, expires, found in rows:
        kind, due = _due(slot, posted, expires, found, snapshot_seconds, margin_seconds)
        result.late.setdefault(kind, []).append((captured - due).total_seconds())
        if slot == "final":
            result.final_lead.append((expires - captured).total_seconds())
        buckets[int(captured.timestamp()) // 10] += 1
        result.first_at = min(result.first_at or captured, captured)
        result.last_at = max(result.last_at or captured, captured)
    result.peak_per_s = max(buckets.values(), default=0) / 10
    return result


# --- printing ---------------------------------------------------------------------------
def _mark(good: bool) -> str:
    return "PASS" if good else "MISS"


def _mb(kb: int) -> str:
    return f"{kb / 1024:.1f}"


def _final_share(run: RunResult) -> None:
    o = run.outcome
    share = 100 * o.final_in_time / max(o.total, 1)
    good = o.final_in_time * 1000 >= o.total * 999
    print(
        f"  final snapshot before expiry: {o.final_in_time:,} / {o.total:,} stories = "
        f"{share:.2f} % (target >= 99.9 %: {_mark(good)})"
    )
    if not o.missed:
        print("  missed stories: none")
    for reason, count in o.missed.most_common():
        print(f"  missed: {count:,} x {reason}")


def _rates(run: RunResult) -> None:
    t = run.timing
    total = t.count / t.span_s
    print(
        f"  snapshots: {t.count:,} in {t.span_s:.0f} s: {total / run.workers:.1f}/s per worker "
        f"({total:.1f}/s for {run.workers}; busiest 10 s: {t.peak_per_s:.1f}/s); "
        f"run {run.elapsed_s:.0f} s"
    )
    for kind, late in sorted(t.late.items()):
        print(
            f"  {kind:<23} lateness after due: p50 {percentile(late, 0.5):.1f} s  "
            f"p99 {percentile(late, 0.99):.1f} s  max {max(late):.1f} s  ({len(late):,})"
        )
    if t.final_lead:
        print(
            f"  final snapshot lead before expiry: min {min(t.final_lead):.1f} s  "
            f"p50 {percentile(t.final_lead, 0.5):.1f} s"
        )


def _calls(run: RunResult, poll_s: int) -> None:
    kinds = run.calls.by_kind
    insights, snaps = kinds["insights"], run.timing.count
    ratio = insights / snaps if snaps else 0.0
    exact = insights == 3 * snaps
    print(
        f"  Graph insights calls per snapshot: {ratio:.2f} ({insights:,} calls / {snaps:,} "
        f"snapshots; target 3.0 exactly, no wasted call: {_mark(exact and snaps > 0)})"
    )
    listings = kinds["stories"]
    expected = run.accounts * run.elapsed_s / poll_s
    print(
        f"  listing calls (/stories): {listings:,} ({listings / max(run.accounts, 1):.1f} per "
        f"account; one per {poll_s} s poll would be ~{expected:,.0f})"
    )
    others = {k: n for k, n in kinds.items() if k not in ("insights", "stories")}
    if others:
        print(f"  other calls: {others}")
    errors = ", ".join(f"{n:,} x {what}" for what, n in run.calls.errors.most_common())
    print(f"  error answers: {errors or 'none'}")


def _pauses_cpu(run: RunResult) -> None:
    pauses = sum(run.pauses.values())
    detail = ", ".join(f"{reason} {n}" for reason, n in sorted(run.pauses.items()))
    print(
        f"  throttle pauses: {pauses} taken by the workers' pacer{f' ({detail})' if detail else ''}"
        f"; {run.calls.throttled} throttled answers (codes 4/17/32/613) from the simulator"
    )
    snaps = max(run.timing.count, 1)
    busy = 100 * run.worker_cpu_s / max(run.elapsed_s, 1)
    print(
        f"  CPU: workers {run.worker_cpu_s:.0f} s ({1000 * run.worker_cpu_s / snaps:.1f} ms per "
        f"snapshot, {busy:.0f} % of one core over the run); simulator {run.sim_cpu_s:.0f} s "
        f"({1000 * run.sim_cpu_s / snaps:.1f} ms per snapshot)"
    )
    rss = " / ".join(_mb(kb) for kb in run.rss_kb)
    hwm = " / ".join(_mb(kb) for kb in run.hwm_kb)
    print(f"  worker memory: RSS {rss} MB at the end (peak {hwm} MB)")


def print_run(run: RunResult, poll_s: int) -> None:
    print(f"results: {run.accounts:,} accounts, {run.stories:,} stories, {run.workers} worker(s)")
    _final_share(run)
    _rates(run)
    _calls(run, poll_s)
    _pauses_cpu(run)


def print_sizes(results: list[RunResult]) -> None:
    """Worker RSS side by side for each size (target: flat), ratio to the smallest."""
    if len(results) < 2:
        return
    base = max(results[0].rss_kb, default=0) or 1
    base_peak = max(results[0].hwm_kb, default=0) or 1
    print("worker memory by size (largest worker; target: flat):")
    for run in results:
        rss, peak = max(run.rss_kb, default=0), max(run.hwm_kb, default=0)
        print(
            f"  {run.accounts:>6,} accounts: RSS {_mb(rss)} MB (x{rss / base:.2f}), "
            f"peak {_mb(peak)} MB (x{peak / base_peak:.2f})"
        )
