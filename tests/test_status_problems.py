"""`archiver status` makes failures visible: last errors with their age, problems and failure
counts, overdue listings, polls and captures, token and data-access expiry, app-wide pauses and
failed jobs; and shows none of it for an account without a problem."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy.engine import Engine

from models.db import session_scope
from models.snapshots import Media
from models.types import utcnow
from reports.figures import APP_PAUSE_KEYS, JOB_FAILURES_KEY
from reports.pauses import THREADS_APP_PAUSE_KEY
from tests.test_status import IG_TOKEN, SHOP, STUDIO, Status, account_block, add_account
from tests.test_status import status_runner as runner

THREADS_TOKEN = "THAAGqK9ZCZBw3xY4zZAkfLmNopQrStUv"


@pytest.fixture
def status(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Iterator[Status]:
    """`archiver status ARGS` in-process (tests.test_status)."""
    yield from runner(monkeypatch, tmp_path, capsys)


def ago(**delta: float) -> datetime:
    """A time before now (taken afresh: the command compares with its own clock)."""
    return utcnow() - timedelta(**delta)


def ahead(**delta: float) -> datetime:
    return utcnow() + timedelta(**delta)


def add_media(engine: Engine, account_id: int, media_id: str, **fields: Any) -> None:
    """A story (by default live) or, with platform="threads", a Threads post."""
    defaults: dict[str, Any] = {"platform": "instagram", "subject_type": "story"}
    if fields.get("platform") == "threads":
        defaults |= {"subject_type": "threads_post", "capture_state": "tracked"}
    with session_scope(engine) as session:
        session.add(Media(account_id=account_id, media_id=media_id, **(defaults | fields)))


def text_and_json(status: Status, *env: str, **more: str) -> tuple[str, dict[str, Any]]:
    code, out, err = status(DATABASE_URL=env[0], **more)
    assert (code, err) == (0, "")
    code, doc, _ = status("--json", DATABASE_URL=env[0], **more)
    assert code == 0
    return out, json.loads(doc)


def test_last_error_shows_its_age(status: Status, engine: Engine, database_url: str) -> None:
    """The account's last error carries how long ago it happened, token masked."""
    add_account(
        engine,
        "shop",
        SHOP,
        IG_TOKEN,
        last_error=f"HTTP 500 from /me/stories?access_token={IG_TOKEN}",
        last_error_at=ago(minutes=3, seconds=5),
    )
    out, doc = text_and_json(status, database_url)
    assert account_block(out, "shop")["last error"] == (
        "HTTP 500 from /me/stories?access_token=[REDACTED] (3 min ago)"
    )
    shop = doc["accounts"][0]
    assert shop["last_error"] == "HTTP 500 from /me/stories?access_token=[REDACTED]"
    assert shop["last_error_at"].startswith(f"{ago(minutes=3, seconds=5):%Y-%m-%dT%H:%M}")
    assert IG_TOKEN not in out + json.dumps(doc)


def test_problem_and_failures_per_side(status: Status, engine: Engine, database_url: str) -> None:
    """An error retrying cannot fix shows its reason and failure count, per side."""
    add_account(
        engine,
        "shop",
        SHOP,
        IG_TOKEN,
        ig_failures=3,
        ig_problem="permission denied (#10): the token lacks instagram_manage_insights",
        threads_user_id="2600",
        threads_failures=1,
        threads_problem="(#100) unknown Threads user",
    )
    out, doc = text_and_json(status, database_url)
    shop = account_block(out, "shop")
    assert shop["problem"] == (
        "permission denied (#10): the token lacks instagram_manage_insights; 3 failures in a row"
    )
    assert shop["threads problem"] == "(#100) unknown Threads user; 1 failure in a row"
    account = doc["accounts"][0]
    assert (account["ig_failures"], account["threads"]["failures"]) == (3, 1)
    assert account["ig_problem"].startswith("permission denied (#10)")
    assert account["threads"]["problem"] == "(#100) unknown Threads user"
    assert doc["totals"]["accounts_with_problem"] == 1
    assert "problems    1 account with a problem" in out


def test_an_overdue_listing_shows_by_how_long(
    status: Status, engine: Engine, database_url: str
) -> None:
    """A listing due 14 min ago is overdue by 14 min; one due 3 s ago (within two ticks) is
    not; a reauth_required account's listing is not scheduled at all (it is counted apart)."""
    add_account(engine, "late", SHOP, IG_TOKEN, next_story_poll_at=ago(minutes=14, seconds=2))
    add_account(engine, "fresh", STUDIO, IG_TOKEN, next_story_poll_at=ago(seconds=3))
    add_account(
        engine,
        "stuck",
        "17841400000000003",
        IG_TOKEN,
        state="reauth_required",
        next_story_poll_at=ago(hours=2),
    )
    out, doc = text_and_json(status, database_url)
    assert account_block(out, "late")["listing overdue"] == "by 14 min"
    assert "listing overdue" not in account_block(out, "fresh")
    assert "listing overdue" not in account_block(out, "stuck")
    late, fresh, stuck = doc["accounts"]
    assert 14 * 60 <= late["story_poll_overdue_seconds"] < 15 * 60
    assert (fresh["story_poll_overdue_seconds"], stuck["story_poll_overdue_seconds"]) == (0, None)
    assert (doc["totals"]["story_polls_overdue"], doc["totals"]["accounts_awaiting_reauth"]) == (
        1,
        1,
    )
    assert "problems    1 account awaiting re-authorisation, 1 story listing overdue\n" in out


def test_a_never_listed_account_is_overdue_from_when_it_was_added(
    status: Status, engine: Engine, database_url: str
) -> None:
    """No next_story_poll_at means due since the account was added, as the scheduler reads it."""
    add_account(engine, "shop", SHOP, IG_TOKEN, created_at=ago(minutes=5))
    _, doc = text_and_json(status, database_url)
    assert 5 * 60 <= doc["accounts"][0]["story_poll_overdue_seconds"] < 6 * 60


def test_an_overdue_threads_poll_shows(status: Status, engine: Engine, database_url: str) -> None:
    """A Threads poll due 10 min ago is overdue; a profile without a Threads token is not
    polled, so never overdue."""
    threads = {"threads_user_id": "2600", "threads_token": THREADS_TOKEN}
    add_account(engine, "shop", SHOP, IG_TOKEN, next_threads_poll_at=ago(minutes=10), **threads)
    add_account(engine, "studio", STUDIO, IG_TOKEN, threads_user_id="2601")
    out, doc = text_and_json(status, database_url)
    assert account_block(out, "shop")["threads poll overdue"] == "by 10 min"
    assert "threads poll overdue" not in account_block(out, "studio")
    shop, studio = doc["accounts"]
    assert 600 <= shop["threads"]["poll_overdue_seconds"] < 660
    assert studio["threads"]["poll_overdue_seconds"] is None
    assert doc["totals"]["threads_polls_overdue"] == 1
    assert THREADS_TOKEN not in out


def test_stories_and_posts_with_a_problem_are_listed(
    status: Status, engine: Engine, database_url: str
) -> None:
    """Open media with an overdue capture or a last error: id, slot, overdue by, error and
    age, the most overdue first; closed or healthy media are not listed."""
    account_id = add_account(engine, "shop", SHOP, IG_TOKEN, threads_user_id="2600")
    add_media(engine, account_id, "901", next_slot="s21", next_capture_at=ago(minutes=17))
    add_media(engine, account_id, "902", next_slot="final", next_capture_at=ago(minutes=2))
    add_media(
        engine, account_id, "903", next_slot="s3", next_capture_at=ahead(minutes=5),
        last_error="HTTP 500", last_error_at=ago(minutes=4),
    )  # fmt: skip
    add_media(engine, account_id, "904", platform="threads", next_slot="h6",
              next_capture_at=ago(hours=3))  # fmt: skip
    add_media(engine, account_id, "905", next_slot="s4", next_capture_at=ago(seconds=2))
    add_media(engine, account_id, "906", capture_state="missed", last_error="HTTP 500")
    out, doc = text_and_json(status, database_url)
    block = out.split("\n\n")[0].splitlines()
    assert "  capture problems   4 (overdue, or with an error)" in block
    start = block.index("  capture problems   4 (overdue, or with an error)") + 1
    assert block[start:] == [
        "    post 904: slot h6, overdue by 3 h",
        "    story 901: slot s21, overdue by 17 min",
        "    story 902: slot final, overdue by 2 min",
        "    story 903: slot s3; last error HTTP 500 (4 min ago)",
    ]
    problems = doc["accounts"][0]["media_problems"]
    assert problems["total"] == 4
    assert [p["media_id"] for p in problems["listed"]] == ["904", "901", "902", "903"]
    assert problems["listed"][3]["overdue_seconds"] == 0
    assert problems["listed"][3]["last_error"] == "HTTP 500"
    assert 17 * 60 <= problems["listed"][1]["overdue_seconds"] < 18 * 60
    assert doc["totals"]["media_with_problem"] == 4


def test_the_media_list_is_capped_with_a_count_of_the_rest(
    status: Status, engine: Engine, database_url: str
) -> None:
    """Seven overdue stories: five listed (oldest first), then `and 2 more`."""
    account_id = add_account(engine, "shop", SHOP, IG_TOKEN)
    for n in range(7):
        add_media(engine, account_id, f"90{n}", next_slot="s1", next_capture_at=ago(hours=n + 1))
    out, doc = text_and_json(status, database_url)
    block = out.split("\n\n")[0].splitlines()
    assert block[-6:] == [
        *(f"    story 90{n}: slot s1, overdue by {n + 1} h" for n in range(6, 1, -1)),
        "    and 2 more",
    ]
    problems = doc["accounts"][0]["media_problems"]
    assert (problems["total"], len(problems["listed"])) == (7, 5)


def test_captures_of_an_account_awaiting_reauth_are_not_overdue(
    status: Status, engine: Engine, database_url: str
) -> None:
    """The scheduler does not capture for a reauth_required account: its state says why, so
    its stories are not listed as overdue (one with an error still is, without `overdue`)."""
    account_id = add_account(engine, "shop", SHOP, IG_TOKEN, state="reauth_required")
    add_media(engine, account_id, "901", next_slot="s1", next_capture_at=ago(hours=1))
    add_media(engine, account_id, "902", next_slot="s1", next_capture_at=ago(hours=1),
              last_error="error 190")  # fmt: skip
    out, doc = text_and_json(status, database_url)
    assert out.split("\n\n")[0].splitlines()[-1] == "    story 902: slot s1; last error error 190"
    listed = doc["accounts"][0]["media_problems"]["listed"]
    assert [(p["media_id"], p["overdue_seconds"]) for p in listed] == [("902", None)]


@pytest.mark.parametrize(
    ("expires", "data_access", "token"),
    [
        (
            None,
            timedelta(days=58, hours=1),
            "never expires (asked 5 min ago); data access expires {1} (58 days left)",
        ),
        (
            timedelta(days=50, hours=1),
            -timedelta(days=2, hours=1),
            "expires {0} (50 days left); data access EXPIRED {1} (2 days ago)",
        ),
        (None, None, "expiry unknown"),
    ],
    ids=["never", "dated", "unchecked"],
)
def test_facebook_login_token_expiry(
    status: Status,
    engine: Engine,
    database_url: str,
    expires: timedelta | None,
    data_access: timedelta | None,
    token: str,
) -> None:
    """debug_token's figures: `never` for a checked token without expiry, the data-access
    expiry; `unknown` only until debug_token has run."""
    now = utcnow()
    expires_at, data_access_at = (None if d is None else now + d for d in (expires, data_access))
    checked_at = None if data_access is None else now - timedelta(minutes=5, seconds=1)
    times = {"ig_token_expires_at": expires_at, "ig_data_access_expires_at": data_access_at}
    add_account(
        engine, "shop", SHOP, IG_TOKEN, login="facebook", ig_token_checked_at=checked_at, **times
    )
    out, doc = text_and_json(status, database_url)
    dates = (f"{at:%Y-%m-%d}" if at else "" for at in (expires_at, data_access_at))
    assert account_block(out, "shop")["token"] == token.format(*dates)
    shop = doc["accounts"][0]
    assert shop["token_never_expires"] is (expires is None and data_access is not None)
    days = None if data_access is None else data_access.days
    assert shop["data_access_days_left"] == days


def test_app_wide_pauses_show_the_time_left(
    status: Status, engine: Engine, database_url: str, redis_url: str
) -> None:
    """Both app-wide pauses (Instagram's app and Threads' own) with the time left."""
    add_account(engine, "shop", SHOP, IG_TOKEN)
    client = redis.Redis.from_url(redis_url)
    client.set(APP_PAUSE_KEYS["instagram"], "1", px=300_000)
    client.set(THREADS_APP_PAUSE_KEY, "1", px=45_000)
    client.close()
    out, doc = text_and_json(status, database_url, REDIS_URL=redis_url)
    assert "app paused  Instagram app 4 min left; Threads app 44 s left" in out
    assert 299 < doc["app_paused_for_seconds"] <= 300
    assert 44 < doc["threads_app_paused_for_seconds"] <= 45


def test_failed_jobs_are_counted_by_function_and_outcome(
    status: Status, engine: Engine, database_url: str, redis_url: str
) -> None:
    """The workers' failed-job counters, by function: retried and given up."""
    add_account(engine, "shop", SHOP, IG_TOKEN)
    client = redis.Redis.from_url(redis_url)
    counts = {"capture_story|retry": 3, "capture_story|gave_up": 1, "poll_stories|retry": 2}
    client.hset(JOB_FAILURES_KEY, mapping=counts)
    client.close()
    out, doc = text_and_json(status, database_url, REDIS_URL=redis_url)
    assert "job errors  capture_story 1 given up, 3 retried; poll_stories 2 retried" in out
    assert doc["job_failures"] == {
        "capture_story": {"gave_up": 1, "retry": 3},
        "poll_stories": {"retry": 2},
    }


def test_without_redis_failed_jobs_are_unknown(
    status: Status, engine: Engine, database_url: str
) -> None:
    """No Redis to ask: failed jobs and app pauses are null in JSON, absent from the text."""
    add_account(engine, "shop", SHOP, IG_TOKEN)
    out, doc = text_and_json(status, database_url, REDIS_URL="redis://127.0.0.1:1/0")
    assert (doc["job_failures"], doc["threads_app_paused_for_seconds"]) == (None, None)
    assert "job errors" not in out
    assert "app paused" not in out


def test_an_account_without_a_problem_shows_none(
    status: Status, engine: Engine, database_url: str, redis_url: str
) -> None:
    """No error, no problem, nothing overdue: no problem lines, no noise."""
    account_id = add_account(
        engine,
        "shop",
        SHOP,
        IG_TOKEN,
        next_story_poll_at=ahead(seconds=40),
        threads_user_id="2600",
        threads_token=THREADS_TOKEN,
        next_threads_poll_at=ahead(minutes=30),
    )
    add_media(engine, account_id, "901", next_slot="s2", next_capture_at=ahead(hours=1))
    out, doc = text_and_json(status, database_url, REDIS_URL=redis_url)
    shop = account_block(out, "shop")
    noisy = {"problem", "listing overdue", "threads problem", "threads poll overdue"}
    assert not noisy & set(shop)
    assert "capture problems" not in shop
    assert shop["last error"] == "-"
    for line in ("problems ", "app paused", "job errors"):
        assert line not in out
    account = doc["accounts"][0]
    assert (account["ig_problem"], account["ig_failures"], account["last_error_at"]) == (
        None,
        0,
        None,
    )
    assert (account["story_poll_overdue_seconds"], account["threads"]["poll_overdue_seconds"]) == (
        0,
        0,
    )
    assert account["media_problems"] == {"total": 0, "listed": []}
    assert (doc["job_failures"], doc["app_paused_for_seconds"]) == ({}, 0)
