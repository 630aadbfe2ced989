"""`archiver demo` run for real, as a user would: a subprocess with no settings at all."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archiver.embedded import process_alive

DEMO_LIMIT = 60.0  # PRODUCT.md: the tour finishes in under a minute


def bare_env() -> dict[str, str]:
    """No DATABASE_URL, REDIS_URL or META_*: the demo must need none of them."""
    return {"PATH": os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1", "PYTHONUTF8": "1"}


def start_demo(cwd: Path, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "archiver", "demo", *options],
        cwd=cwd,
        env=bare_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def found(pattern: str, output: str) -> str:
    match = re.search(pattern, output, re.MULTILINE)
    assert match, f"{pattern!r} not in the demo's output:\n{output}"
    return match.group(1)


def assert_left_nothing(output: str) -> None:
    """Temporary directory removed, redis-server gone, no port still listening."""
    workdir = Path(found(r"everything lives in (\S+) and is removed", output))
    redis_pid = int(found(r"redis-server pid (\d+)", output))
    redis_dir = Path(found(r"at unix://(\S+)/redis\.sock", output))
    assert not workdir.exists()
    assert not redis_dir.exists()
    assert not process_alive(redis_pid)
    for port in re.findall(r"on http://127\.0\.0\.1:(\d+)", output):
        with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
            sock.connect(("127.0.0.1", int(port)))


def test_demo_captures_stories_a_webhook_version_and_queries_them(tmp_path: Path) -> None:
    """Exit 0 within a minute: final capture, webhook version, SQL result; nothing left over."""
    (tmp_path / ".env").write_text("DATABASE_URL=postgresql://nowhere/x\nREDIS_URL=redis://x:1\n")
    started = time.monotonic()
    demo = start_demo(tmp_path, "--keep", "kept.db")
    output, _ = demo.communicate(timeout=DEMO_LIMIT + 30)
    elapsed = time.monotonic() - started
    assert demo.returncode == 0, output
    assert elapsed < DEMO_LIMIT
    assert re.search(r"story A final captured: version \d+", output), output
    assert re.search(r"story A version \d+ captured \(slot webhook, source webhook\)", output)
    assert "below_threshold" in output
    assert "FROM metric_history" in output
    assert re.search(r"^18\d+\s+\d+\s+\d+\s+\d+", output, re.MULTILINE), output  # a result row
    assert_left_nothing(output)
    # --keep: the archive stays behind for the dashboard, and the last lines say how to open it
    kept = tmp_path / "kept.db"
    with contextlib.closing(sqlite3.connect(kept)) as db:
        (snapshots,) = db.execute("SELECT count(*) FROM snapshot").fetchone()
    assert snapshots >= 3
    assert f"DATABASE_URL=sqlite:///{kept} archiver dashboard" in output


def test_keep_refuses_an_existing_file_before_the_tour(tmp_path: Path) -> None:
    (tmp_path / "kept.db").write_text("mine")
    demo = start_demo(tmp_path, "--keep", "kept.db")
    output, _ = demo.communicate(timeout=30)
    assert demo.returncode != 0
    assert "--keep kept.db: the file exists" in output
    assert "everything lives in" not in output
    assert (tmp_path / "kept.db").read_text() == "mine"


def test_ctrl_c_stops_the_demo_and_cleans_up(tmp_path: Path) -> None:
    """SIGINT once stories are being captured: exit 130, and still nothing left behind."""
    demo = start_demo(tmp_path)
    assert demo.stdout is not None
    lines = []
    for line in demo.stdout:
        lines.append(line)
        if "version 1 captured" in line:
            break
    demo.send_signal(signal.SIGINT)
    rest, _ = demo.communicate(timeout=30)
    output = "".join(lines) + rest
    assert demo.returncode == 130, output
    assert "stopped everything" in output
    assert_left_nothing(output)
