"""Processes and plumbing of bench/capture.py: the simulator, the workers, the database, /proc.

Everything here is started as a context manager and torn down in its `finally`, so an error
or Ctrl+C in the benchmark still stops every process and drops the schema.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis
import sqlalchemy as sa

from models.migrate import upgrade


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(proc: subprocess.Popen[bytes], *, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited in `timeout` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else ""


@dataclass
class Simulator:
    """`python -m metasim` in its own process (its own GIL), driven over /_sim/..."""

    url: str
    proc: subprocess.Popen[bytes]

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}/_sim{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.loads(resp.read())

    def calls(self, since: int) -> tuple[list[dict[str, Any]], int]:
        """Calls answered after seq `since`, and the latest seq."""
        found = self.request("GET", f"/calls?{urllib.parse.urlencode({'since': since})}")
        return found["calls"], int(found["last"])

    def host_urls(self) -> dict[str, str]:
        return {
            "FACEBOOK_GRAPH_URL": f"{self.url}/facebook",
            "INSTAGRAM_GRAPH_URL": f"{self.url}/instagram",
            "THREADS_GRAPH_URL": f"{self.url}/threads",
        }


@contextmanager
def simulator(workdir: Path, *, minute_seconds: float) -> Iterator[Simulator]:
    port = free_port()
    log_path = workdir / "metasim.log"
    argv = [sys.executable, "-m", "metasim", "--port", str(port)]
    argv += ["--minute-seconds", str(minute_seconds)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    sim = Simulator(f"http://127.0.0.1:{port}", proc)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                sim.request("GET", "/health")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    msg = f"metasim did not start (exit {proc.poll()}):\n{_tail(log_path)}"
                    raise RuntimeError(msg) from None
                time.sleep(0.1)
        yield sim
    finally:
        stop(proc)


@contextmanager
def workers(
    count: int, env: dict[str, str], workdir: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` `archiver worker` processes, each logging to worker-<n>.log."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for n in range(count):
            procs.append(start_worker(env, workdir, f"worker-{n}"))
        yield procs
    finally:
        for proc in procs:  # all at once: they stop in parallel, then each is waited for
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            stop(proc)


def start_worker(env: dict[str, str], workdir: Path, name: str) -> subprocess.Popen[bytes]:
    """One `archiver worker` process logging to <name>.log (appended to: a restart keeps the
    earlier lines)."""
    with (workdir / f"{name}.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "archiver", "worker"],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def check_alive(procs: Sequence[subprocess.Popen[bytes]], workdir: Path) -> None:
    for n, proc in enumerate(procs):
        if proc.poll() is not None:
            tail = _tail(workdir / f"worker-{n}.log")
            msg = f"worker {n} exited with {proc.returncode}:\n{tail}"
            raise RuntimeError(msg)


@contextmanager
def database(kind: str, postgres_url: str, workdir: Path) -> Iterator[str]:
    """A migrated, empty database of the benchmark's own; a PostgreSQL schema is dropped after."""
    if kind == "sqlite":
        url = f"sqlite:///{workdir}/archiver.db"
        upgrade(url)
        yield url
        return
    schema = f"bench_capture_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(postgres_url, connect_args={"connect_timeout": 3})
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in postgres_url else "?"
    try:
        url = f"{postgres_url}{sep}options=-csearch_path%3D{schema}"
        upgrade(url)
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def proc_status_kb(pid: int, key: str) -> int:
    """A /proc/<pid>/status figure in kB (VmRSS: resident now, VmHWM: peak); 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc); 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


THROTTLE_CODES = frozenset({4, 17, 32, 613, 80001, 80002})


@dataclass
class CallTally:
    """Counts of the simulator's call log, read incrementally (never kept whole)."""

    last: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # "kind status/code"
    throttled: int = 0
    keep: bool = False  # keep every call's time, account, status and code (--faults)
    records: list[dict[str, Any]] = field(default_factory=list)

    def update(self, sim: Simulator) -> None:
        calls, self.last = sim.calls(self.last)
        if self.keep:
            self.records += [
                {k: c.get(k) for k in ("at", "account", "status", "code", "kind", "fault")}
                for c in calls
            ]
        for call in calls:
            self.by_kind[call["kind"]] += 1
            if call["status"] != 200:
                self.errors[f"{call['kind']} HTTP {call['status']} code {call['code']}"] += 1
            if call["code"] in THROTTLE_CODES:
                self.throttled += 1


@contextmanager
def flushed(url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


def pause_counts(client: redis.Redis) -> Counter[str]:
    """The pacer's pause counters (archiver:pauses:<account>), summed by reason."""
    counts: Counter[str] = Counter()
    for key in client.scan_iter("archiver:pauses:*"):
        raw = cast("dict[bytes, bytes]", client.hgetall(key))  # sync client: a dict
        for reason, n in raw.items():
            counts[reason.decode()] += int(n)
    return counts
