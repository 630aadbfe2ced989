"""`archiver status`, run in-process through archiver.cli.main against real databases and Redis."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from sqlalchemy.engine import Engine

from archiver.cli import main
from core.config import get_settings
from models.accounts import Account, MetricUnavailable
from models.db import session_scope
from models.deliveries import FAILED, PROCESSED, RECEIVED, WebhookDelivery
from models.snapshots import Media
from models.types import utcnow
from reports.pauses import APP_PAUSE_KEY, PAUSE_COUNTS_KEY, PAUSE_KEY
from store.recording import MetricRow, Subject, record_snapshot
from tests.conftest import REDIS_URL
from workers.meta.pacing import Pacer

IG_TOKEN = "EAABsbCS1iHgBAKZCZCw9ZBZCZBWZCZAZBQ1x2y3z4"
OTHER_TOKEN = "IGQWRPa1ZAqZA2xRLWFzbmFjZA1BlUzY5NWpZAXZAq"
SHOP, STUDIO = "17841400000000001", "17841400000000002"
ENV_NAMES = ("DATABASE_URL", "REDIS_URL", "LOG_LEVEL", "LOG_FORMAT")

Status = Callable[..., tuple[int, str, str]]


@pytest.fixture
def status(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Iterator[Status]:
    """`archiver status ARGS` with exactly the given environment; (exit code, stdout, stderr)."""
    yield from status_runner(monkeypatch, tmp_path, capsys)


def status_runner(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Iterator[Status]:
    """The `status` fixture's body, for other modules' fixtures."""
    monkeypatch.chdir(tmp_path)  # no stray .env file
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    def run(*args: str, **env: str) -> tuple[int, str, str]:
        for name in ENV_NAMES:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        code = main(["status", *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    yield run
    get_settings.cache_clear()
    root.handlers[:] = handlers  # main() installs its own stderr handler
    root.setLevel(level)


def add_account(engine: Engine, name: str, ig_user_id: str, token: str, **fields: Any) -> int:
    with session_scope(engine) as session:
        account = Account(name=name, ig_user_id=ig_user_id, ig_token=token, **fields)
        session.add(account)
        session.flush()
        assert account.id is not None
        return account.id


def add_stories(engine: Engine, account_id: int) -> None:
    """Five stories (one captured, three missed for two reasons, one live), three snapshots."""
    states = [
        ("final_captured", None),
        ("missed", "final capture failed: error 10"),
        ("live", None),
        ("missed", "expired before discovery"),
        ("missed", "final capture failed: error 10"),
    ]
    with session_scope(engine) as session:
        for n, (state, reason) in enumerate(states):
            media = Media(
                account_id=account_id,
                platform="instagram",
                subject_type="story",
                media_id=f"1790000000000000{n}",
                capture_state=state,
                missed_reason=reason,
            )
            session.add(media)
        session.flush()
        story = Subject(account_id, "instagram", "story", "17900000000000000")
        for slot, source in (("first", "api"), ("final", "api"), ("webhook", "webhook")):
            metrics = [MetricRow("reach", 10)]
            record_snapshot(
                session=session, subject=story, slot=slot, source=source, metrics=metrics
            )


def add_deliveries(engine: Engine, statuses: list[str]) -> None:
    with session_scope(engine) as session:
        for n, state in enumerate(statuses):
            body = f'{{"n": {n}}}'.encode()
            session.add(
                WebhookDelivery(
                    platform="instagram",
                    body=body,
                    body_sha256=hashlib.sha256(body).hexdigest(),
                    status=state,
                    received_at=utcnow() - timedelta(minutes=10 - n),
                )
            )


@pytest.fixture
def populated(engine: Engine, redis_url: str) -> str:
    """Two accounts, one with stories, errors and throttle pauses; deliveries in three states."""
    shop = add_account(
        engine,
        "shop",
        SHOP,
        IG_TOKEN,
        state="reauth_required",
        state_reason="error 190: token invalidated",
        ig_token_expires_at=utcnow() + timedelta(days=9, hours=3),
        stories_polled_at=utcnow() - timedelta(minutes=15),
        last_error=f"GET /me/stories?access_token={IG_TOKEN} failed: 190",
    )
    add_account(engine, "studio", STUDIO, OTHER_TOKEN, login="instagram")
    add_stories(engine, shop)
    add_deliveries(engine, [PROCESSED, PROCESSED, FAILED, RECEIVED])
    client = redis.Redis.from_url(redis_url)
    client.hset(PAUSE_COUNTS_KEY.format(SHOP), mapping={"throttled": 2, "slowdown": 1})
    client.set(PAUSE_KEY.format(SHOP), "1", px=120_000)
    client.close()
    return redis_url


def account_block(out: str, name: str) -> dict[str, str]:
    """One account's `label  value` lines, by label."""
    lines = out.split("\n\n")
    block = next(part for part in lines if part.startswith(f"{name} ("))
    fields = [line.strip().split("  ", 1) for line in block.splitlines()[1:]]
    return {label: value.strip() for label, value in fields}


def test_status_reports_each_account_and_the_totals(
    status: Status, database_url: str, populated: str
) -> None:
    """Per account: state, token days, poll, story coverage, snapshots, pauses, last error."""
    code, out, err = status(DATABASE_URL=database_url, REDIS_URL=populated)
    assert (code, err) == (0, "")
    assert f"shop (account 1, IG {SHOP}, facebook login)" in out
    shop = account_block(out, "shop")
    assert shop["state"] == "reauth_required: error 190: token invalidated"
    assert shop["token"].endswith("(9 days left)")
    assert shop["last story poll"].endswith("(15 min ago)")
    assert shop["stories"] == "5 seen: 1 captured before expiry, 3 missed, 1 live now"
    assert shop["missed because"] == (
        "2 final capture failed: error 10; 1 expired before discovery"
    )
    assert shop["snapshots"] == "3 (api 2, webhook 1)"
    assert shop["throttle pauses"].startswith("3 (slowdown 1, throttled 2); paused now, ")
    assert shop["last error"] == "GET /me/stories?access_token=[REDACTED] failed: 190"
    studio = account_block(out, "studio")
    assert (studio["token"], studio["stories"]) == (
        "expiry unknown",
        "0 seen: 0 captured before expiry, 0 missed, 0 live now",
    )
    assert studio["throttle pauses"] == "0"
    assert (
        "totals      2 accounts, 5 stories seen (1 captured before expiry, 3 missed, "
        "1 live now), 3 snapshots, throttle pauses 3" in out
    )
    assert "deliveries  4: failed 1, processed 2, received 1; oldest pending received " in out
    assert IG_TOKEN not in out
    assert OTHER_TOKEN not in out


def test_status_json_carries_the_same_figures(
    status: Status, database_url: str, populated: str
) -> None:
    """`--json` is one parseable document with the figures, and no tokens."""
    code, out, _ = status("--json", DATABASE_URL=database_url, REDIS_URL=populated)
    assert code == 0
    report = json.loads(out)
    shop, studio = report["accounts"]
    assert (shop["name"], shop["state"], shop["token_days_left"]) == ("shop", "reauth_required", 9)
    assert shop["stories"]["missed_reasons"] == {
        "final capture failed: error 10": 2,
        "expired before discovery": 1,
    }
    assert shop["snapshots"] == {"total": 3, "by_source": {"api": 2, "webhook": 1}}
    assert shop["throttle_pauses"]["counts"] == {"throttled": 2, "slowdown": 1}
    assert 0 < shop["throttle_pauses"]["paused_for_seconds"] <= 120
    assert studio["throttle_pauses"] == {"counts": {}, "paused_for_seconds": 0.0, "total": 0}
    assert report["totals"]["final_captured"] == 1
    assert report["deliveries"]["by_status"] == {"processed": 2, "failed": 1, "received": 1}
    assert report["deliveries"]["oldest_pending_at"] is not None
    assert "ig_token" not in shop
    assert IG_TOKEN not in out


@pytest.mark.parametrize(
    ("redis_env", "why"),
    [
        ({}, "REDIS_URL unset"),
        ({"REDIS_URL": "redis://127.0.0.1:1/0"}, "Redis unreachable"),
        ({"REDIS_URL": "http://127.0.0.1:6379/0"}, "REDIS_URL is not a Redis URL"),
    ],
)
def test_throttle_pauses_are_unknown_without_a_reachable_redis(
    status: Status, engine: Engine, database_url: str, redis_env: dict[str, str], why: str
) -> None:
    """No Redis to ask: the pauses say `unknown` and why; the rest of the report stands."""
    add_account(engine, "shop", SHOP, IG_TOKEN)
    code, out, err = status(DATABASE_URL=database_url, **redis_env)
    assert (code, err) == (0, "")
    assert account_block(out, "shop")["throttle pauses"] == f"unknown ({why})"
    assert "\ndeliveries  0\n" in out  # the report goes on to its end
    code, out, _ = status("--json", DATABASE_URL=database_url, **redis_env)
    assert json.loads(out)["throttle_pauses_unknown_because"] == why


def test_status_without_accounts_says_how_to_add_one(status: Status, sqlite_url: str) -> None:
    """An empty database is not an error: the report says what to do first."""
    code, out, _ = status(DATABASE_URL=sqlite_url)
    assert code == 0
    assert out.startswith("no accounts yet: add one with `archiver accounts add`")
    assert "totals      0 accounts, 0 stories seen" in out


def test_status_needs_a_migrated_database(status: Status, tmp_path: Path) -> None:
    """A missing database file is one line naming the fix, exit status 2."""
    code, out, err = status(DATABASE_URL=f"sqlite:///{tmp_path}/missing.db")
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert "run `archiver db upgrade` first" in err


def test_pause_keys_are_the_workers_pacer_keys() -> None:
    """Status reads the very keys the workers' Pacer writes."""
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    pacer = Pacer(client)
    assert pacer.count_key(f"ig:{SHOP}") == PAUSE_COUNTS_KEY.format(SHOP)
    assert pacer.pause_key(f"ig:{SHOP}") == PAUSE_KEY.format(SHOP)
    assert pacer.pause_key("app") == APP_PAUSE_KEY
    asyncio.run(client.aclose())


THREADS_TOKEN = "THAAGqK9ZCZBw3xY4zZAkfLmNopQrStUv"
NOT_AVAILABLE = "THREADS_API__FEATURE_NOT_AVAILABLE: fewer than 100 followers"


THREADS_FIELDS: dict[str, Any] = {
    "login": "instagram",
    "threads_user_id": "2600",
    "threads_token": THREADS_TOKEN,
    "threads_link_source": "connected_threads_user",
    "threads_state": "reauth_required",
    "threads_state_reason": f"error 190 for access_token={THREADS_TOKEN}",
}
THREADS_SNAPSHOTS = [
    ("threads_user", "2600", "insights"),
    ("threads_user", "2600", "demographics"),
    ("threads_post", "18000", "insights"),
]


@pytest.fixture
def threads_linked(engine: Engine) -> int:
    """An Instagram Login account with a Threads profile: 4 posts (one deleted), 3 snapshots,
    2 refusals."""
    now = utcnow()
    times = {
        "threads_linked_at": now - timedelta(days=3),
        "ig_token_refreshed_at": now - timedelta(hours=5),
        "threads_token_expires_at": now + timedelta(days=40, hours=1),
        "threads_polled_at": now - timedelta(minutes=20),
        "next_threads_poll_at": now + timedelta(minutes=40),
    }
    account_id = add_account(engine, "studio", STUDIO, OTHER_TOKEN, **THREADS_FIELDS, **times)
    with session_scope(engine) as session:
        for n, state in enumerate(["tracked", "done", "skipped", "deleted"]):
            session.add(
                Media(
                    account_id=account_id,
                    platform="threads",
                    subject_type="threads_post",
                    media_id=f"1800{n}",
                    capture_state=state,
                    deleted_at=now - timedelta(hours=1) if state == "deleted" else None,
                )
            )
        for subject_type, subject_id, kind in THREADS_SNAPSHOTS:
            subject = Subject(account_id, "threads", subject_type, subject_id, kind)
            record_snapshot(session=session, subject=subject, slot="s", source="api", metrics=[])
        for metric in ("clicks", "views"):
            session.add(
                MetricUnavailable(
                    account_id=account_id,
                    platform="threads",
                    metric=metric,
                    reason=NOT_AVAILABLE,
                    retry_at=now + timedelta(days=7),
                )
            )
    return account_id


def test_status_shows_the_threads_side_of_a_linked_account(
    status: Status, engine: Engine, database_url: str, threads_linked: int
) -> None:
    """Link, token state and expiry, polling, posts (deleted ones counted), snapshots,
    refusals; no Threads token."""
    add_account(engine, "shop", SHOP, IG_TOKEN)
    code, out, _ = status(DATABASE_URL=database_url)
    assert code == 0
    studio = account_block(out, "studio")
    assert studio["token refreshed"].endswith("(5 h ago)")
    assert studio["threads"].startswith("user 2600, linked by connected_threads_user 20")
    assert studio["threads"].endswith("(3 days ago)")
    token = "reauth_required: error 190 for access_token=[REDACTED]; expires "
    assert studio["threads token"].startswith(token)
    assert studio["threads token"].endswith("(40 days left)")
    assert "(20 min ago); next due " in studio["last threads poll"]
    assert studio["last threads poll"].endswith(" min)")
    assert studio["threads posts"] == ("4 seen: 1 tracked, 1 done, 1 skipped (reposts), 1 deleted")
    assert studio["threads snapshots"] == "3 (demographics 1, posts 1, user_insights 1)"
    assert studio["threads refused"].startswith(f"clicks, views ({NOT_AVAILABLE}); asked again ")
    assert studio["snapshots"] == "0"
    shop = account_block(out, "shop")
    assert not [label for label in shop if label.startswith(("threads", "token refreshed"))]
    assert "throttle pauses unknown; Threads: 1 profile, 4 posts" in out
    assert THREADS_TOKEN not in out


def test_status_json_carries_the_threads_side(
    status: Status, database_url: str, threads_linked: int
) -> None:
    """`--json` has the Threads figures under `threads`, reasons masked, no Threads token."""
    code, out, _ = status("--json", DATABASE_URL=database_url)
    assert code == 0
    report = json.loads(out)
    threads = report["accounts"][0]["threads"]
    assert (threads["threads_user_id"], threads["link_source"]) == (
        "2600",
        "connected_threads_user",
    )
    assert (threads["state"], threads["token_days_left"]) == ("reauth_required", 40)
    assert threads["state_reason"] == "error 190 for access_token=[REDACTED]"
    assert threads["posts"] == {"seen": 4, "tracked": 1, "done": 1, "skipped": 1, "deleted": 1}
    assert threads["snapshots"]["total"] == 3
    assert [r["metric"] for r in threads["refused"]] == ["clicks", "views"]
    assert report["accounts"][0]["ig_token_refreshed_at"] is not None
    assert report["totals"]["threads_snapshots"] == report["totals"]["snapshots"] == 3
    assert "threads_token" not in threads
    assert THREADS_TOKEN not in out
