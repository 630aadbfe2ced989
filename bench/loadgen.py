"""Closed-loop HTTP load: wrk when installed, else a raw-asyncio generator of our own.

Both send a pool of pre-built raw HTTP/1.1 requests over keep-alive connections and report
the same figures. wrk is preferred: on a 2-core machine a Python client competes with the
server for CPU and would flatten the ratio between a fast and a slow server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

uvloop: ModuleType | None
try:  # uvicorn[standard] brings uvloop; it roughly halves the generator's own CPU per request
    import uvloop
except ImportError:  # pragma: no cover - platforms without uvloop
    uvloop = None

WRK_TIMEOUT_S = 10  # wrk drops latencies above its timeout; keep slow answers measurable


@dataclass(frozen=True)
class LoadResult:
    """What one load run saw; latencies in microseconds."""

    requests: int
    non_2xx: int
    socket_errors: int
    duration_s: float
    p50_us: float
    p99_us: float
    max_us: float
    exhausted: bool  # the pool of distinct requests ran out before the duration did

    @property
    def ok(self) -> int:
        return self.requests - self.non_2xx

    @property
    def rate(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    path: str
    pid: int = 0  # the serving process, for a profiler to attach to


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


@contextmanager
def serve(
    argv: list[str], *, env: dict[str, str], workdir: Path, log_name: str
) -> Iterator[Target]:
    """Run a server subprocess on a free port until it answers /healthz; stop it after."""
    port = free_port()
    log_path = workdir / f"{log_name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*argv, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while not _healthy(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                msg = f"{log_name} did not become healthy (exit {proc.poll()}):\n{tail}"
                raise RuntimeError(msg)
            time.sleep(0.1)
        yield Target("127.0.0.1", port, "/webhooks/instagram", proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its threads so far (Linux /proc); 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class MachineCpu:
    """CPU seconds, machine-wide: all cores busy, stolen by the hypervisor, and used by the
    PostgreSQL processes (backends that exit in between are missed). Linux /proc only."""

    busy_s: float = 0.0
    steal_s: float = 0.0
    postgres_s: float = 0.0

    def __sub__(self, other: MachineCpu) -> MachineCpu:
        fields = zip(dataclasses.astuple(self), dataclasses.astuple(other), strict=True)
        return MachineCpu(*(a - b for a, b in fields))


def _postgres_ticks() -> int:
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process is gone
            continue
        if " (postgres) " in text:
            fields = text.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total


def machine_cpu() -> MachineCpu:
    """A snapshot to subtract from a later one; zeros where /proc is missing."""
    try:  # user nice system idle iowait irq softirq steal
        ticks = [int(v) for v in Path("/proc/stat").read_text().split(maxsplit=9)[1:9]]
    except OSError:
        return MachineCpu()
    tick = os.sysconf("SC_CLK_TCK")
    busy = sum(ticks) - ticks[3] - ticks[4] - ticks[7]
    return MachineCpu(busy / tick, ticks[7] / tick, _postgres_ticks() / tick)


def wrk_version() -> str | None:
    """wrk's version string, or None when wrk is not on PATH."""
    binary = shutil.which("wrk")
    if binary is None:
        return None
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False).stdout
    first = out.split("Copyright")[0].strip()
    return first or "wrk"


_LUA = """
-- Generated by bench/loadgen.py: each thread reads its own file of fixed-size raw requests.
-- same = true: every request is the thread's first record, sent by wrk without calling Lua
-- (the cheapest load, for a target that needs no distinct bodies).
local prefix, reclen, same = "%(prefix)s", %(reclen)d, %(same)s
local counter, threads = 0, {}

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  pool = assert(io.open(prefix .. tid .. ".bin", "rb"))
  first = pool:read(reclen)
  pool:seek("set", 0)
  exhausted = 0
end

if same then
  -- wrk.init builds its static request from wrk.format() after our init has run.
  wrk.format = function() return first end
else
  function request()
    local r = pool:read(reclen)
    if r == nil then
      exhausted = exhausted + 1
      wrk.thread:stop()
      r = first
    end
    return r
  end
end

function done(summary, latency, requests)
  local ex = 0
  for _, t in ipairs(threads) do ex = ex + t:get("exhausted") end
  local e = summary.errors
  io.write(string.format(
    "WRKBENCH requests=%%d duration_us=%%d p50_us=%%d p99_us=%%d max_us=%%d status=%%d " ..
    "sockerr=%%d exhausted=%%d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.status, e.connect + e.read + e.write + e.timeout, ex))
end
"""


def _write_pool(workdir: Path, pool: Sequence[bytes], threads: int) -> int:
    """Deal the pool round-robin into one file per wrk thread; records must share a length."""
    reclen = len(pool[0])
    if any(len(r) != reclen for r in pool):
        msg = "wrk pool records must all have the same length"
        raise ValueError(msg)
    for tid in range(threads):
        (workdir / f"pool{tid}.bin").write_bytes(b"".join(pool[tid::threads]))
    return reclen


def run_wrk(
    target: Target,
    pool: Sequence[bytes],
    *,
    connections: int,
    duration_s: float,
    threads: int,
    workdir: Path,
    repeat: bool,
) -> LoadResult:
    """One wrk run; its Lua `done` prints a parseable line of figures."""
    reclen = _write_pool(workdir, pool, threads)
    script = workdir / "deliveries.lua"
    script.write_text(
        _LUA % {"prefix": f"{workdir}/pool", "reclen": reclen, "same": str(repeat).lower()}
    )
    url = f"http://{target.host}:{target.port}{target.path}"
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration_s))}s"]
    argv += [f"--timeout={WRK_TIMEOUT_S}s", "-s", str(script), url]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRKBENCH ")), None)
    if proc.returncode != 0 or line is None:
        msg = f"wrk failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout[-500:]}"
        raise RuntimeError(msg)
    fields = {k: int(float(v)) for k, v in (kv.split("=") for kv in line.split()[1:])}
    return LoadResult(
        requests=fields["requests"],
        non_2xx=fields["status"],
        socket_errors=fields["sockerr"],
        duration_s=fields["duration_us"] / 1e6,
        p50_us=fields["p50_us"],
        p99_us=fields["p99_us"],
        max_us=fields["max_us"],
        exhausted=fields["exhausted"] > 0,
    )


class _PyRun:
    """Shared state of the asyncio generator's connections (one event loop, no locks)."""

    def __init__(self, pool: Sequence[bytes], *, repeat: bool, deadline: float) -> None:
        self.pool, self.repeat, self.deadline = pool, repeat, deadline
        self.next = 0
        self.exhausted = False
        self.latencies: list[int] = []
        self.non_2xx = 0
        self.errors = 0

    def take(self) -> bytes | None:
        if time.perf_counter() >= self.deadline:
            return None
        if self.next >= len(self.pool):
            if not self.repeat:
                self.exhausted = True
                return None
            self.next = 0
        self.next += 1
        return self.pool[self.next - 1]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Status code and keep-alive of one response; handles Content-Length and chunked."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")
    else:
        await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("connection", "").lower() != "close"


async def _connection(target: Target, run: _PyRun) -> None:
    reader, writer = await asyncio.open_connection(target.host, target.port)
    try:
        while (request := run.take()) is not None:
            started = time.perf_counter_ns()
            writer.write(request)
            try:
                status, keep_alive = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                run.errors += 1
                keep_alive = False
            else:
                run.latencies.append((time.perf_counter_ns() - started) // 1000)
                run.non_2xx += not 200 <= status < 300
            if not keep_alive:
                writer.close()
                reader, writer = await asyncio.open_connection(target.host, target.port)
    finally:
        writer.close()


async def _run_python(
    target: Target, pool: Sequence[bytes], connections: int, duration_s: float, repeat: bool
) -> LoadResult:
    started = time.perf_counter()
    run = _PyRun(pool, repeat=repeat, deadline=started + duration_s)
    await asyncio.gather(*(_connection(target, run) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    lat = sorted(run.latencies) or [0]
    return LoadResult(
        requests=len(run.latencies),
        non_2xx=run.non_2xx,
        socket_errors=run.errors,
        duration_s=elapsed,
        p50_us=lat[int(0.50 * (len(lat) - 1))],
        p99_us=lat[int(0.99 * (len(lat) - 1))],
        max_us=lat[-1],
        exhausted=run.exhausted,
    )


def run_python(
    target: Target,
    pool: Sequence[bytes],
    *,
    connections: int,
    duration_s: float,
    repeat: bool,
) -> LoadResult:
    """The fallback: every connection stops at the deadline after its answer (no cut-off)."""
    main = _run_python(target, pool, connections, duration_s, repeat)
    return uvloop.run(main) if uvloop is not None else asyncio.run(main)
