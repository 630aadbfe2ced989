"""Notices to operators (workers.notices): each event told once, retried with back-off, kept
when undeliverable and shown by `archiver status`; the URL never shown. Against a real HTTP
receiver on 127.0.0.1 and real databases; the worker test runs the real arq lanes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

import workers.notices
from core.config import Settings
from core.errors import ConfigError
from models.accounts import Account
from models.db import create_db_engine, session_scope
from models.deliveries import FAILED, WebhookDelivery
from models.notices import Notice
from models.snapshots import Media
from models.tables import table_of
from models.types import utcnow
from store.notices import retry_delay
from tests.conftest import make_settings
from tests.servers import ServerThread, free_port
from tests.test_status import Status, status_runner
from tests.workers_harness import eventually, running_workers
from workers.captures.tick import TICK_STARTED_KEY
from workers.notices import send_notices
from workers.runtime.context import Context

SECRET = "XyZ9sEcReTpArT42"  # the secret part of a Slack webhook URL
HOOK_PATH = f"/services/T0001/B0001/{SECRET}"
_notice = table_of(Notice)
IDLE = {"added": 0, "sent": 0, "failed": 0, "undeliverable": 0}


@dataclass
class Receiver:
    """A webhook receiver: records each POST's JSON; fails the first `fail` with 500 (its
    body quoting the path, as some proxies do); with `hang`, holds each POST until released."""

    fail: int = 0
    hang: bool = False
    posts: list[dict[str, Any]] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # the kinds of the POSTs held
    release: threading.Event = field(default_factory=threading.Event)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = await request.json()
            if self.hang:
                self.held.append(body["archiver"]["kind"])
                while not self.release.is_set():
                    await anyio.sleep(0.02)
            self.posts.append(body)
            if len(self.posts) <= self.fail:
                return PlainTextResponse(f"no route for {request.url.path}", status_code=500)
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route(HOOK_PATH, hook, methods=["POST"])])


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, ServerThread]]:
    state = Receiver()
    server = ServerThread(state.app())
    with server:
        yield state, server
        state.release.set()


@pytest.fixture
def status(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Iterator[Status]:
    """`archiver status ARGS` in-process (tests.test_status)."""
    yield from status_runner(monkeypatch, tmp_path, capsys)


def notify_settings(database_url: str, url: str, **overrides: object) -> Settings:
    return make_settings(database_url, None, notify_webhook_url=url, **overrides)


async def run_once(settings: Settings, engine: Engine) -> dict[str, int]:
    """The cron job, called as the worker calls it (its database calls in the loop's pool)."""
    ctx: Context = {"settings": settings, "engine": engine}
    return await send_notices(ctx)


def add_account(engine: Engine, name: str, **fields: Any) -> int:
    with session_scope(engine) as session:
        account = Account(name=name, ig_user_id=f"1784{len(name)}{name}", ig_token="EAAx", **fields)
        session.add(account)
        session.flush()
        assert account.id is not None
        return account.id


def add_story(engine: Engine, account_id: int, n: int, *, state: str = "missed", **kw: Any) -> None:
    with session_scope(engine) as session:
        session.add(
            Media(
                account_id=account_id,
                platform="instagram",
                subject_type="story",
                media_id=f"1790000000{n:04d}",
                capture_state=state,
                missed_reason="final capture failed: error 10" if state == "missed" else None,
                expires_at=kw.get("expires_at", utcnow() - timedelta(hours=1)),
            )
        )


def add_failed_deliveries(engine: Engine, count: int) -> None:
    with session_scope(engine) as session:
        for n in range(count):
            body = f'{{"n": {n}}}'.encode()
            session.add(
                WebhookDelivery(
                    platform="instagram",
                    body=body,
                    body_sha256=hashlib.sha256(body).hexdigest(),
                    status=FAILED,
                    error="KeyError: 'entry'",
                )
            )


def notices(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(_notice).order_by(_notice.c.id)).all()
    return [dict(row._mapping) for row in rows]


def make_due(engine: Engine) -> None:
    """Skip the back-off wait: every pending notice due now."""
    with engine.begin() as conn:
        conn.execute(sa.update(_notice).values(next_attempt_at=utcnow() - timedelta(seconds=1)))


@pytest.mark.anyio
async def test_each_kind_of_event_is_told_once_over_several_runs(
    engine: Engine, database_url: str, receiver: tuple[Receiver, ServerThread]
) -> None:
    """Re-authorisation (per side), a token expiring within NOTIFY_TOKEN_DAYS, a missed final
    and failing deliveries: one notice each, one POST per kind and account, none on re-runs;
    a token beyond NOTIFY_TOKEN_DAYS and a story missed long ago are not told."""
    state, server = receiver
    now = utcnow()
    shop = add_account(engine, "shop", state="reauth_required", state_reason="error 190")
    studio = add_account(
        engine,
        "studio",
        ig_token_expires_at=now + timedelta(days=3),
        threads_user_id="42",
        threads_state="reauth_required",
        threads_token_expires_at=now + timedelta(days=10),
    )
    add_story(engine, shop, 1)
    add_story(engine, shop, 2, expires_at=now - timedelta(days=3))  # before the lookback
    add_failed_deliveries(engine, 5)
    settings = notify_settings(database_url, server.url + HOOK_PATH)
    first = await run_once(settings, engine)
    assert first == {"added": 5, "sent": 5, "failed": 0, "undeliverable": 0}
    for _ in range(2):
        assert await run_once(settings, engine) == IDLE
    rows = notices(engine)
    kinds = sorted((r["kind"], r["account_id"], r["subject"]) for r in rows)
    assert kinds == sorted(
        [
            ("reauth", shop, "instagram"),
            ("reauth", studio, "threads"),
            ("token_expiring", studio, "instagram"),
            ("final_missed", shop, "instagram:17900000000001"),
            ("deliveries_failing", None, "deliveries"),
        ]
    )
    assert {r["state"] for r in rows} == {"delivered"}
    assert all(r["attempts"] == 1 and r["delivered_at"] is not None for r in rows)
    assert len(state.posts) == 5
    texts = "\n".join(post["text"] for post in state.posts)
    assert "Account shop: Instagram needs re-authorisation (error 190)" in texts
    assert "Account studio: Instagram token expires in 2 d 23 h" in texts
    assert "5 webhook deliveries failed in the last hour" in texts
    machine = [n for post in state.posts for n in post["archiver"]["notices"]]
    assert {n["details"].get("media_id") for n in machine} >= {"17900000000001"}


@pytest.mark.anyio
async def test_a_condition_that_ends_and_returns_is_a_new_notice(
    engine: Engine, database_url: str, receiver: tuple[Receiver, ServerThread]
) -> None:
    """Re-authorisation told once while it lasts; fixed, the notice is resolved; flagged
    again, it is a second event (episode 2), told again."""
    state, server = receiver
    shop = add_account(engine, "shop", state="reauth_required")
    settings = notify_settings(database_url, server.url + HOOK_PATH)
    await run_once(settings, engine)
    await run_once(settings, engine)
    table = table_of(Account)
    for value in ("active", "reauth_required"):
        with engine.begin() as conn:
            conn.execute(sa.update(table).where(table.c.id == shop).values(state=value))
        await run_once(settings, engine)
    rows = notices(engine)
    assert [r["dedupe_key"] for r in rows] == [
        f"reauth:{shop}:instagram:1",
        f"reauth:{shop}:instagram:2",
    ]
    assert rows[0]["resolved_at"] is not None
    assert rows[1]["resolved_at"] is None
    assert len(state.posts) == 2


@pytest.mark.anyio
async def test_a_burst_of_missed_stories_is_one_message(
    sqlite_url: str, receiver: tuple[Receiver, ServerThread]
) -> None:
    """30 stories of one account missed at once: 30 notices, one POST listing the first ten
    in its text and all 30 in its `archiver` field."""
    state, server = receiver
    engine = create_db_engine(sqlite_url)
    shop = add_account(engine, "shop")
    for n in range(30):
        add_story(engine, shop, n)
    settings = notify_settings(sqlite_url, server.url + HOOK_PATH)
    assert (await run_once(settings, engine))["sent"] == 30
    engine.dispose()
    assert len(state.posts) == 1
    post = state.posts[0]
    assert post["text"].startswith("[archiver] 30 final_missed notices:\n")
    assert post["text"].endswith("... and 20 more")
    assert len(post["archiver"]["notices"]) == 30


@pytest.mark.anyio
async def test_failed_posts_are_retried_with_back_off_then_delivered(
    engine: Engine, database_url: str, receiver: tuple[Receiver, ServerThread]
) -> None:
    """Two 500s: the notice waits 30 s then 60 s (nothing sent before it is due), the third
    POST delivers it."""
    state, server = receiver
    state.fail = 2
    add_account(engine, "shop", state="reauth_required")
    settings = notify_settings(database_url, server.url + HOOK_PATH)
    for attempt, wait in ((1, 30), (2, 60)):
        before = utcnow()
        counts = await run_once(settings, engine)
        assert counts == {"added": attempt == 1, "sent": 0, "failed": 1, "undeliverable": 0}
        row = notices(engine)[0]
        assert (row["state"], row["attempts"]) == ("pending", attempt)
        assert row["last_error"].startswith("HTTP 500: no route for")
        delay = (row["next_attempt_at"] - before).total_seconds()
        assert wait - 1 < delay < wait + 5
        assert await run_once(settings, engine) == IDLE  # not due yet
        make_due(engine)
    assert (await run_once(settings, engine))["sent"] == 1
    row = notices(engine)[0]
    assert (row["state"], row["attempts"], len(state.posts)) == ("delivered", 3, 3)


@pytest.mark.anyio
async def test_two_runs_at_once_send_each_notice_once(
    engine: Engine, database_url: str, receiver: tuple[Receiver, ServerThread]
) -> None:
    """Two notifier runs at the same moment (two control workers): the event is recorded
    once and POSTed once; the claim keeps the second run off it."""
    state, server = receiver
    add_account(engine, "shop", state="reauth_required")
    settings = notify_settings(database_url, server.url + HOOK_PATH)
    first, second = await asyncio.gather(run_once(settings, engine), run_once(settings, engine))
    assert first["added"] + second["added"] == 1
    assert first["sent"] + second["sent"] == 1
    assert len(state.posts) == 1
    assert len(notices(engine)) == 1


@pytest.mark.anyio
async def test_after_a_failure_the_rest_go_first_at_the_next_run(
    sqlite_url: str, receiver: tuple[Receiver, ServerThread]
) -> None:
    """The first POST fails: the run stops, the notices it did not get to are due again at
    once (not held by the claim) and go out at the next run, ahead of the failed one."""
    state, server = receiver
    state.fail = 1
    engine = create_db_engine(sqlite_url)
    for name in ("shop", "studio"):
        add_account(engine, name, state="reauth_required")
    settings = notify_settings(sqlite_url, server.url + HOOK_PATH)
    assert await run_once(settings, engine) == IDLE | {"added": 2, "failed": 1}
    assert await run_once(settings, engine) == IDLE | {"sent": 1}
    rows = notices(engine)
    engine.dispose()
    assert [(r["state"], r["attempts"]) for r in rows] == [("pending", 1), ("delivered", 1)]
    assert "studio" in state.posts[1]["text"]


@pytest.mark.anyio
async def test_a_run_past_its_budget_leaves_the_rest_due(
    sqlite_url: str, receiver: tuple[Receiver, ServerThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past RUN_BUDGET no further POST starts (the first always does); the rest stay due
    and go out at the next run."""
    monkeypatch.setattr(workers.notices, "RUN_BUDGET", 0.0)
    state, server = receiver
    engine = create_db_engine(sqlite_url)
    for name in ("shop", "studio"):
        add_account(engine, name, state="reauth_required")
    settings = notify_settings(sqlite_url, server.url + HOOK_PATH)
    assert await run_once(settings, engine) == IDLE | {"added": 2, "sent": 1}
    assert notices(engine)[1]["next_attempt_at"] <= utcnow()
    assert await run_once(settings, engine) == IDLE | {"sent": 1}
    engine.dispose()
    assert len(state.posts) == 2


@pytest.mark.anyio
async def test_a_new_expiry_date_is_a_new_notice(
    sqlite_url: str, receiver: tuple[Receiver, ServerThread]
) -> None:
    """A token 3 days from expiry is told once; refreshed (60 days) nothing; near expiry
    again with a new date, told again. Data access is told apart from the token."""
    state, server = receiver
    engine = create_db_engine(sqlite_url)
    now = utcnow()
    shop = add_account(
        engine,
        "shop",
        ig_token_expires_at=now + timedelta(days=3),
        ig_data_access_expires_at=now + timedelta(days=1),
    )
    settings = notify_settings(sqlite_url, server.url + HOOK_PATH, notify_token_days=5)
    table = table_of(Account)
    for days in (3, 60, 2):
        with engine.begin() as conn:
            expiry = now + timedelta(days=days)
            conn.execute(
                sa.update(table).where(table.c.id == shop).values(ig_token_expires_at=expiry)
            )
        await run_once(settings, engine)
    rows = notices(engine)
    engine.dispose()
    assert [r["subject"] for r in rows] == ["instagram", "instagram_data_access", "instagram"]
    assert rows[0]["dedupe_key"] != rows[2]["dedupe_key"]
    assert "Instagram data access expires in 23 h" in rows[1]["text"]
    assert len(state.posts) == 2  # one POST per kind and account and run


def test_back_off_doubles_up_to_an_hour() -> None:
    """30 s, 60 s, 2 min ... capped at an hour, however many tries."""
    assert [retry_delay(n).total_seconds() for n in (1, 2, 3, 8, 9, 50)] == [
        30,
        60,
        120,
        3600,
        3600,
        3600,
    ]


@pytest.mark.anyio
async def test_undeliverable_is_kept_and_shown_without_the_url(
    engine: Engine,
    database_url: str,
    receiver: tuple[Receiver, ServerThread],
    status: Status,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After NOTIFY_MAX_ATTEMPTS failures (500 quoting the URL's path, then the receiver
    gone) the notice is `undeliverable`, kept, and `archiver status` shows it with its error;
    the URL's secret is in no log line, status output or stored text."""
    state, server = receiver
    state.fail = 99
    add_account(engine, "shop", state="reauth_required")
    url = server.url + HOOK_PATH
    settings = notify_settings(database_url, url, notify_max_attempts=2)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="httpx")  # its request line quotes the URL
    assert (await run_once(settings, engine))["failed"] == 1
    make_due(engine)
    gone = f"http://127.0.0.1:{free_port()}{HOOK_PATH}"  # nothing listens there
    gone_settings = notify_settings(database_url, gone, notify_max_attempts=2)
    assert (await run_once(gone_settings, engine))["undeliverable"] == 1
    assert await run_once(gone_settings, engine) == IDLE  # given up: never sent again
    row = notices(engine)[0]
    assert (row["state"], row["attempts"], row["next_attempt_at"]) == ("undeliverable", 2, None)
    assert row["last_error"].startswith("ConnectError")
    assert SECRET not in json.dumps(notices(engine), default=str)
    assert "HTTP 500: no route for [REDACTED]" in caplog.text
    requests = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert requests  # httpx's request lines, the URL masked
    assert all("POST " in line and "[REDACTED]" in line for line in requests)
    assert SECRET not in caplog.text
    env = {"DATABASE_URL": database_url, "NOTIFY_WEBHOOK_URL": url}
    code, out, err = status(**env)
    assert code == 0, err
    assert "notices     1 undeliverable" in out
    assert "  undeliverable reauth " in out
    assert "2 tries: ConnectError" in out
    code, out_json, _ = status("--json", **env)
    report = json.loads(out_json)["notices"]
    assert (report["enabled"], report["undeliverable"], report["pending"]) == (True, 1, 0)
    assert report["unsent"][0]["last_error"].startswith("ConnectError")
    assert SECRET not in out + err + out_json


@pytest.mark.anyio
async def test_without_a_url_nothing_is_recorded_or_sent(sqlite_url: str, status: Status) -> None:
    """NOTIFY_WEBHOOK_URL unset: the job does nothing, and status says notices are off."""
    engine = create_db_engine(sqlite_url)
    add_account(engine, "shop", state="reauth_required")
    assert await run_once(make_settings(sqlite_url, None), engine) == {}
    assert notices(engine) == []
    code, out, _ = status(DATABASE_URL=sqlite_url)
    assert code == 0
    assert "notices     off (NOTIFY_WEBHOOK_URL unset)\n" in out
    with session_scope(engine) as session:  # left from when it was set
        session.add(Notice(dedupe_key="k", kind="reauth", subject="instagram", text="t"))
    engine.dispose()
    code, out, _ = status(DATABASE_URL=sqlite_url)
    assert "notices     off (NOTIFY_WEBHOOK_URL unset); kept: 1 pending" in out


@pytest.mark.parametrize(
    "url", ["ftp://hooks.example/x", "hooks.slack.com/services/x", "https:///services/x"]
)
def test_the_url_must_be_http(url: str, sqlite_url: str) -> None:
    """A URL that is not http(s) with a host is refused at start, without quoting it."""
    with pytest.raises(ConfigError, match=r"NOTIFY_WEBHOOK_URL: .*http:// or https://") as info:
        make_settings(sqlite_url, None, notify_webhook_url=url)
    assert url not in str(info.value)


def test_a_bad_url_is_one_line_at_the_command_line(sqlite_url: str, status: Status) -> None:
    """`archiver status` with NOTIFY_WEBHOOK_URL=ftp://...: exit 2, one line naming the
    setting, the value (a secret) not quoted."""
    url = f"ftp://hooks.example{HOOK_PATH}"
    code, out, err = status(DATABASE_URL=sqlite_url, NOTIFY_WEBHOOK_URL=url)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert "NOTIFY_WEBHOOK_URL: Value error, must be an http:// or https:// URL" in err
    assert SECRET not in err


@pytest.mark.anyio
async def test_a_hanging_receiver_does_not_stall_the_tick(
    database_url: str, redis_url: str, receiver: tuple[Receiver, ServerThread]
) -> None:
    """Real workers: while the notifier's POST hangs, the tick still runs (it closes a story
    that expired meanwhile); released, the notice is delivered, and POSTed once only (the
    missed story is a notice of its own, which a later run may send, held too)."""
    state, server = receiver
    state.hang = True
    engine = create_db_engine(database_url)
    shop = add_account(engine, "shop", state="reauth_required")  # nothing to poll at Meta
    settings = make_settings(
        database_url,
        redis_url,
        notify_webhook_url=server.url + HOOK_PATH,
        notify_timeout_seconds=20,
        schedule_tick_seconds=1,
    )
    client = redis.Redis.from_url(redis_url)
    try:
        async with running_workers(settings):
            await eventually(lambda: state.held == ["reauth"], timeout=10)
            add_story(engine, shop, 7, state="live", expires_at=utcnow() - timedelta(minutes=5))
            ticked = time.time()
            await eventually(lambda: tick_started(client) > ticked + 1, timeout=10)
            await eventually(lambda: _story_state(engine) == "missed", timeout=10)
            assert state.held.count("reauth") == 1
            assert not state.posts
            state.release.set()
            await eventually(lambda: ("reauth", "delivered") in kinds_and_states(engine))
    finally:
        client.close()
        engine.dispose()
    assert [post["archiver"]["kind"] for post in state.posts].count("reauth") == 1


def kinds_and_states(engine: Engine) -> set[tuple[str, str]]:
    return {(row["kind"], row["state"]) for row in notices(engine)}


def tick_started(client: redis.Redis) -> float:
    """When the last tick started (workers.captures.tick), epoch seconds; 0 before any."""
    value = cast(bytes | None, client.get(TICK_STARTED_KEY))
    return float(value or 0)


def _story_state(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sa.select(table_of(Media).c.capture_state)).scalar_one())
