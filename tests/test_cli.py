"""The `archiver` console script, run for real in subprocesses against real databases and Redis."""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from archiver.cli import build_parser
from archiver.embedded import process_alive
from models.accounts import Account
from models.db import create_db_engine, session_scope
from models.deliveries import RECEIVED, UNROUTED, WebhookDelivery
from models.tables import table_of
from models.types import utcnow
from store.recording import MetricRow, Subject, record_snapshot
from tests.conftest import APP_SECRET, VERIFY_TOKEN
from tests.servers import PrivateRedis, free_port, wait_until

IG_USER = "17841405309211844"
MEDIA = "18023345989012587"
IG_TOKEN = "EAABsbCS1iHgBAKZCZCw9ZBZCZBWZCZAZBQ1x2y3z4"
THREADS_TOKEN = "THQVJYeUk4NWpZAXZAqQ2xRLWFzbmFjZA1BlU"
# Meta's own sample, array-wrapped as Meta sends it
# (https://developers.facebook.com/docs/instagram-platform/webhooks).
STORY_INSIGHTS = json.dumps(
    [{"entry": [{"changes": [{"field": "story_insights",
      "value": {"media_id": MEDIA, "exits": 1, "replies": 0, "reach": 17,
                "taps_forward": 12, "taps_back": 0, "impressions": 28}}],
      "id": IG_USER, "time": 1547687043}], "object": "instagram"}]
).encode()  # fmt: skip


def env_for(database_url: str, redis_url: str | None = None, **extra: str) -> dict[str, str]:
    """An explicit environment: nothing leaks in from the developer's shell."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONUTF8": "1",
        "DATABASE_URL": database_url,
        "META_APP_SECRET": APP_SECRET,
        "META_VERIFY_TOKEN": VERIFY_TOKEN,
        "LOG_LEVEL": "INFO",
        "METRICS_PORT": "0",  # tests/test_receiver_limits.py covers the ops listener
        "WORKER_METRICS_PORT": "0",  # tests/test_monitoring.py covers the worker's
        "IG_ACCOUNT_INSIGHTS": "false",  # tests/test_account_insights.py covers them
    }
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    return env


def archiver(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "archiver", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
    )


def command_paths(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    """Every command and subcommand the parser knows, found by walking it."""
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from command_paths(sub, (*prefix, name))


def sign(body: bytes) -> str:
    return "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("path", list(command_paths(build_parser())), ids=" ".join)
def test_help_for_every_command(path: tuple[str, ...], tmp_path: Path) -> None:
    """`--help` works for every command and subcommand, with no settings at all."""
    result = archiver(*path, "--help", env={"PATH": os.environ["PATH"]}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: archiver {' '.join(path)}".rstrip())


@pytest.mark.parametrize(
    "args",
    [
        ["frobnicate"],
        [],
        ["serve", "--port", "eighty"],
        ["replay", "--since", "last tuesday"],
        ["replay", "--since", "2026-01-01", "--event", "3"],
        ["accounts", "add", "--name", "n"],
        ["accounts", "add", "--name", "n", "--ig-user-id", "1", "--ig-token", IG_TOKEN,
         "--threads-user-id", "2"],
        ["accounts", "add", "--name", "n", "--ig-user-id", "1", "--ig-token", "t", IG_TOKEN],
        ["accounts", "remove"],
        ["prune", "--thin-after", "30", "--spacing", "daily"],
    ],
    ids=repr,
)  # fmt: skip
def test_wrong_arguments_are_one_line_and_exit_2(args: list[str], tmp_path: Path) -> None:
    """A usage error is exactly one stderr line (never echoing a token) and exit status 2."""
    result = archiver(*args, env=env_for(f"sqlite:///{tmp_path}/a.db"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("archiver")
    assert "--help" in result.stderr
    assert IG_TOKEN not in result.stderr


def test_serve_refuses_to_start_without_secrets(tmp_path: Path) -> None:
    """No META_APP_SECRET / META_VERIFY_TOKEN: one clear line, exit 2, no traceback."""
    env = {"PATH": os.environ["PATH"], "DATABASE_URL": f"sqlite:///{tmp_path}/a.db"}
    result = archiver("serve", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert "META_APP_SECRET and META_VERIFY_TOKEN must be set" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_setting_is_one_line(tmp_path: Path) -> None:
    """A placeholder secret is refused by the settings, reported in one line."""
    env = env_for(f"sqlite:///{tmp_path}/a.db", META_APP_SECRET="changeme")
    result = archiver("accounts", "list", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "META_APP_SECRET" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_upgrade_creates_a_fresh_sqlite_file(tmp_path: Path) -> None:
    """`db upgrade` builds the schema in a new file, then has nothing left to do."""
    path = tmp_path / "fresh.db"
    env = env_for(f"sqlite:///{path}")
    first = archiver("db", "upgrade", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "upgraded from empty" in first.stdout
    assert str(path) in first.stdout
    engine = sa.create_engine(f"sqlite:///{path}")
    assert {"account", "webhook_delivery", "snapshot"} <= set(sa.inspect(engine).get_table_names())
    engine.dispose()
    again = archiver("db", "upgrade", env=env, cwd=tmp_path)
    assert again.returncode == 0
    assert "nothing to do" in again.stdout


def test_db_raw_prints_a_snapshots_answers_and_names_a_missing_one(
    sqlite_url: str, tmp_path: Path
) -> None:
    """`db raw` unpacks what SQL sees as bytes: the JSON as stored (scrubbed, without Meta's
    titles); a snapshot without raw answers is exit 3 (not found) in one line."""
    engine = create_db_engine(sqlite_url)
    with session_scope(engine) as session:
        account = Account(name="shop", ig_user_id="1784", ig_token="EAAtoken")
        session.add(account)
        session.flush()
        assert account.id is not None
        subject = Subject(account.id, "instagram", "story", "1790")
        raw = {"data": [{"name": "reach", "title": "Reach", "values": [{"value": 7}]}]}
        kept, _ = record_snapshot(session=session, subject=subject, slot="first", source="api",
                                  metrics=[MetricRow("reach", 7.0)], raw=raw)  # fmt: skip
        bare, _ = record_snapshot(session=session, subject=subject, slot="s1", source="api",
                                  metrics=[])  # fmt: skip
    engine.dispose()
    env = env_for(sqlite_url)
    shown = archiver("db", "raw", str(kept.id), env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {"data": [{"name": "reach", "values": [{"value": 7}]}]}
    missing = archiver("db", "raw", str(bare.id), env=env, cwd=tmp_path)
    assert missing.returncode == 3
    expected = f"no raw answers kept for snapshot {bare.id} (none, or pruned)"
    assert missing.stderr.strip().endswith(expected)


def test_commands_ask_for_db_upgrade_first(tmp_path: Path) -> None:
    """Against a database that was never migrated, the error names the fix."""
    path = tmp_path / "missing.db"
    result = archiver("accounts", "list", env=env_for(f"sqlite:///{path}"), cwd=tmp_path)
    assert result.returncode == 2
    assert "run `archiver db upgrade` first" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not path.exists()


def test_accounts_round_trip_never_shows_a_whole_token(database_url: str, tmp_path: Path) -> None:
    """add, list, remove: the account comes and goes; tokens only ever appear masked."""
    env = env_for(database_url)
    outputs = []
    added = archiver(
        "accounts", "add", "--name", "brand", "--ig-user-id", IG_USER, "--ig-token", IG_TOKEN,
        "--threads-user-id", "7001", "--threads-token", THREADS_TOKEN, "--no-backfill",
        "--no-check",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    listed = archiver("accounts", "list", env=env, cwd=tmp_path)
    outputs += [added, listed]
    assert added.returncode == 0, added.stderr
    assert listed.returncode == 0, listed.stderr
    row = listed.stdout.splitlines()[1].split()
    assert row[:5] == ["1", "brand", IG_USER, "facebook", "active"]
    assert row[5] == f"{IG_TOKEN[:4]}…{IG_TOKEN[-4:]}"
    engine = create_db_engine(database_url)
    with engine.connect() as conn:
        link = conn.execute(sa.text("SELECT threads_link_source, threads_linked_at FROM account"))
        source, linked_at = link.one()
    engine.dispose()
    assert source == "operator"
    assert linked_at is not None
    removed = archiver("accounts", "remove", "--name", "brand", env=env, cwd=tmp_path)
    after = archiver("accounts", "list", env=env, cwd=tmp_path)
    outputs += [removed, after]
    assert removed.returncode == 0, removed.stderr
    assert "no accounts" in after.stdout
    for result in outputs:
        for token in (IG_TOKEN, THREADS_TOKEN):
            assert token not in result.stdout + result.stderr


def test_duplicate_add_and_unknown_remove_are_clean_errors(
    database_url: str, tmp_path: Path
) -> None:
    """A second account with the same name or IG id is a conflict; an unknown one not found."""
    env = env_for(database_url)
    base = ["accounts", "add", "--no-check", "--ig-token", IG_TOKEN]
    assert (
        archiver(*base, "--name", "a", "--ig-user-id", "1", env=env, cwd=tmp_path).returncode == 0
    )
    for name, ig_id in (("a", "2"), ("b", "1")):
        dup = archiver(*base, "--name", name, "--ig-user-id", ig_id, env=env, cwd=tmp_path)
        assert dup.returncode == 4
        assert dup.stderr.startswith("archiver: error:")
        assert len(dup.stderr.splitlines()) == 1
        assert IG_TOKEN not in dup.stderr + dup.stdout
    missing = archiver("accounts", "remove", "--id", "99", env=env, cwd=tmp_path)
    assert missing.returncode == 3
    assert missing.stderr == "archiver: error: no account with id 99\n"


def insert_delivery(
    database_url: str, body: bytes, status: str, *, received_at: datetime | None = None
) -> int:
    engine = create_db_engine(database_url)
    table = table_of(WebhookDelivery)
    row = {
        "platform": "instagram",
        "body": body,
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "headers": {"x-hub-signature-256": sign(body)},
        "received_at": received_at or utcnow(),
        "status": status,
        "attempts": 1,
    }
    with engine.begin() as conn:
        delivery_id = conn.execute(sa.insert(table).values(row).returning(table.c.id)).scalar_one()
    engine.dispose()
    return int(delivery_id)


def count_rows(database_url: str, sql: str) -> int:
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar_one())
    finally:
        engine.dispose()


def test_replay_processes_an_unrouted_delivery_once_its_account_exists(
    database_url: str, tmp_path: Path
) -> None:
    """A story_insights delivery that arrived before its account is captured by replay."""
    delivery_id = insert_delivery(database_url, STORY_INSIGHTS, UNROUTED)
    env = env_for(database_url)
    add = ["accounts", "add", "--name", "a", "--ig-user-id", IG_USER, "--ig-token", IG_TOKEN,
           "--no-check"]  # fmt: skip
    assert archiver(*add, env=env, cwd=tmp_path).returncode == 0
    result = archiver("replay", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "replayed 1/1" in result.stderr
    assert result.stdout.strip() == "replayed 1 delivery: processed 1"
    status = (
        f"SELECT count(*) FROM webhook_delivery WHERE id = {delivery_id} AND status = 'processed'"
    )
    assert count_rows(database_url, status) == 1
    assert count_rows(database_url, "SELECT count(*) FROM snapshot") == 1
    nothing = archiver("replay", env=env, cwd=tmp_path)
    assert "nothing to replay" in nothing.stdout
    unknown = archiver("replay", "--event", str(delivery_id + 1), env=env, cwd=tmp_path)
    assert unknown.returncode == 3
    assert f"no webhook delivery with id {delivery_id + 1}" in unknown.stderr


def start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    """A long-running command, its output going to files (a full pipe would stall it)."""
    with (cwd / "stdout.txt").open("wb") as out, (cwd / "stderr.txt").open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "archiver", *args], env=env, cwd=cwd, stdout=out, stderr=err
        )


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def post_signed(url: str, body: bytes) -> httpx.Response:
    headers = {"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"}
    return httpx.post(f"{url}/webhooks/instagram", content=body, headers=headers, timeout=10)


def test_serve_answers_health_and_stores_a_signed_post(
    sqlite_url: str, redis_url: str, tmp_path: Path
) -> None:
    """`archiver serve` listens, answers /healthz, archives a signed delivery, exits 0 on TERM."""
    port = free_port()
    proc = start(["serve", "--port", str(port)], env_for(sqlite_url, redis_url), tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthy(url) or proc.poll() is not None, timeout=20)
        assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
        assert post_signed(url, STORY_INSIGHTS).status_code == 200
        assert count_rows(sqlite_url, "SELECT count(*) FROM webhook_delivery") == 1
        unsigned = httpx.post(f"{url}/webhooks/instagram", content=b"{}", timeout=10)
        assert unsigned.status_code in (401, 403)
    finally:
        status = stop(proc)
    assert status == 0, (tmp_path / "stderr.txt").read_text()
    assert f"receiver listening on {url}" in (tmp_path / "stdout.txt").read_text()


def embedded_redis(stdout: str) -> tuple[Path, int] | None:
    """The socket directory and server pid `archiver run` announced, once it did."""
    found = re.search(r"embedded Redis at unix://(\S+) \(pid (\d+)", stdout)
    return (Path(found[1]).parent, int(found[2])) if found else None


@pytest.mark.slow
def test_run_with_embedded_redis_captures_a_delivery_and_cleans_up(tmp_path: Path) -> None:
    """REDIS_URL unset: a signed delivery becomes a snapshot; SIGTERM leaves nothing behind."""
    db_url = f"sqlite:///{tmp_path}/archiver.db"
    env = env_for(db_url)
    add = ["accounts", "add", "--name", "a", "--ig-user-id", IG_USER, "--ig-token", IG_TOKEN,
           "--no-check"]  # fmt: skip
    assert archiver("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    assert archiver(*add, env=env, cwd=tmp_path).returncode == 0
    port, ops_port = free_port(), free_port()
    env["METRICS_PORT"] = str(ops_port)
    proc = start(["run", "--port", str(port)], env, tmp_path)
    url = f"http://127.0.0.1:{port}"
    stdout = tmp_path / "stdout.txt"
    try:
        wait_until(lambda: "listening" in stdout.read_text() or proc.poll() is not None, timeout=30)
        assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
        announced = embedded_redis(stdout.read_text())
        assert announced is not None, stdout.read_text()
        socket_dir, redis_pid = announced
        assert process_alive(redis_pid)
        assert post_signed(url, STORY_INSIGHTS).status_code == 200
        snapshots = f"SELECT count(*) FROM snapshot WHERE subject_id = '{MEDIA}'"
        wait_until(lambda: count_rows(db_url, snapshots) == 1, timeout=20)
        metrics_url = f"http://127.0.0.1:{ops_port}/metrics"
        job = 'archiver_jobs_total{function="process_delivery",outcome="ok"} 1.0'
        wait_until(lambda: job in httpx.get(metrics_url, timeout=5).text)  # counted after commit
        exposed = httpx.get(metrics_url, timeout=5).text
    finally:
        status = stop(proc)
    # One port, one registry: the receiver's figures, the worker's and the archive's.
    assert 'archiver_deliveries_total{outcome="stored",platform="instagram"} 1.0' in exposed
    assert "archiver_queue_depth{" in exposed
    assert status == 0, (tmp_path / "stderr.txt").read_text()
    assert not process_alive(redis_pid)
    assert not socket_dir.exists()
    assert str(tmp_path / "archiver.db") in stdout.read_text()


@pytest.fixture
def private_redis_url() -> Iterator[str]:
    """A redis-server of the test's own: the startup sweep and the job must be ours alone, not
    claimed by another worker sharing the suite's Redis database (arq cron jobs are unique)."""
    with PrivateRedis() as server:
        yield server.url


def test_worker_processes_pending_deliveries_and_stops_on_term(
    database_url: str, private_redis_url: str, tmp_path: Path
) -> None:
    """`archiver worker` sweeps up a stale pending delivery, processes it, exits 0 on TERM;
    its own port serves what it did (the job) and the archive-wide gauges."""
    metrics_port = free_port()
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    env = env_for(database_url, private_redis_url, SWEEP_AFTER_SECONDS="1",
                  WORKER_METRICS_PORT=str(metrics_port))  # fmt: skip
    add = ["accounts", "add", "--name", "a", "--ig-user-id", IG_USER, "--ig-token", IG_TOKEN,
           "--no-check"]  # fmt: skip
    assert archiver(*add, env=env, cwd=tmp_path).returncode == 0
    delivery_id = insert_delivery(
        database_url, STORY_INSIGHTS, RECEIVED, received_at=utcnow() - timedelta(hours=1)
    )
    proc = start(["worker"], env, tmp_path)
    processed = (
        f"SELECT count(*) FROM webhook_delivery WHERE id = {delivery_id} AND status = 'processed'"
    )
    try:
        wait_until(
            lambda: count_rows(database_url, processed) or proc.poll() is not None, timeout=20
        )
        assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
        job = 'archiver_jobs_total{function="process_delivery",outcome="ok"} 1.0'
        wait_until(lambda: job in httpx.get(metrics_url, timeout=5).text)
        exposed = httpx.get(metrics_url, timeout=5).text
    finally:
        status = stop(proc)
    assert status == 0, (tmp_path / "stderr.txt").read_text()
    assert count_rows(database_url, "SELECT count(*) FROM snapshot") == 1
    assert "# TYPE archiver_media gauge" in exposed
    assert "archiver_queue_depth{" in exposed
    assert "archiver_deliveries_total" not in exposed  # the receiver's, not the worker's


def test_worker_needs_redis_url(sqlite_url: str, tmp_path: Path) -> None:
    """Without REDIS_URL the worker refuses in one line and points at `archiver run`."""
    result = archiver("worker", env=env_for(sqlite_url), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("archiver: error: REDIS_URL must be set for `archiver worker`")


def test_ctrl_c_stops_serve_quietly_with_130(sqlite_url: str, tmp_path: Path) -> None:
    """SIGINT is a graceful stop: exit status 130 and no traceback."""
    port = free_port()
    proc = start(["serve", "--port", str(port)], env_for(sqlite_url), tmp_path)
    try:
        wait_until(lambda: healthy(f"http://127.0.0.1:{port}") or proc.poll() is not None)
        assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
    finally:
        status = stop(proc, signal.SIGINT)
    assert status == 130
    assert "Traceback" not in (tmp_path / "stderr.txt").read_text()
