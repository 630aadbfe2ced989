"""The one scrubber (core.redaction) and the column types that apply it on every write
(models.scrubbed): each token shape Meta uses, what must stay untouched, JSON values, and
the database columns that keep errors, reasons and raw answers."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.redaction import MASK, RedactingFilter, scrub, scrub_json
from metasim import World
from models.accounts import MetricUnavailable
from models.db import session_scope
from models.deliveries import WebhookDelivery
from models.snapshots import Media
from models.tables import table_of
from models.types import unpack_json, utcnow
from store.backoff import INSTAGRAM, record_error, record_failure
from store.due_captures import note_capture_error
from store.recording import Subject, record_snapshot
from tests.test_deliveries import add_delivery
from tests.test_status import add_account

FB = "EAAGm0PX4ZCpsBAKZCZCw9ZBZCZBWZCZAZBQ1x2y3z4aBcDeFgHiJkLmNoP"
IG = "IGAAQk9xZaB3nR7tY2uVwXyZ0aBcDeFgHiJkLmNoPqRsTuV"
SECRET = "0123456789abcdef0123456789abcdef"
FORMS = {
    "query": f"GET /v25.0/me?fields=id&access_token={FB}&limit=5",
    "input_token": f"/debug_token?input_token={FB}",
    "exchange": f"grant_type=fb_exchange_token&fb_exchange_token={FB}&client_secret={SECRET}",
    "percent-encoded": f"next=https%3A%2F%2Fgraph%3Faccess_token%3D{SECRET}",
    "json": f'{{"access_token": "{SECRET}"}}',
    "escaped json": f'{{\\"client_secret\\": \\"{SECRET}\\"}}',
    "repr": f"TokenGrant(access_token='{SECRET}', expires_in=5184000)",
    "bearer": f"Authorization: Bearer {SECRET}",
    "signature": f"X-Hub-Signature-256: sha256={SECRET}",
    "app token": f"the app token 990000000000001|{SECRET} was refused",
    "facebook": f"Error validating access token: the session for token {FB} has expired",
    "instagram login": f"token {IG}.",
    "old instagram": "token IGQVJWd0FfZA2xsZAmRfbU9ZSXc4blZAxMnVsc,",
    "threads": "(THQVJYeUk4NWpZAXZAqQ2xRLWFzbmFjZA1BlU)",
}


@pytest.mark.parametrize("text", FORMS.values(), ids=FORMS.keys())
def test_every_token_shape_is_masked_once_and_for_all(text: str) -> None:
    """Each form loses its secret, gains the one mask, and a second pass changes nothing."""
    masked = scrub(text)
    assert MASK in masked
    for secret in (FB, IG, SECRET, "IGQVJWd0FfZA2xsZAmRfbU9ZSXc4blZAxMnVsc", "THQVJYeUk4NW"):
        assert secret not in masked
    assert scrub(masked) == masked


def test_what_surrounds_a_token_is_kept() -> None:
    """Only the value goes: the parameter name, the quotes and the text around stay."""
    assert scrub(f"a?access_token={FB}&b=1; then") == f"a?access_token={MASK}&b=1; then"
    assert (
        scrub(f'{{"access_token": "{SECRET}", "n": 1}}') == f'{{"access_token": "{MASK}", "n": 1}}'
    )
    assert scrub(f"key {SECRET} here", [SECRET, None, ""]) == f"key {MASK} here"


def test_ordinary_text_is_left_alone() -> None:
    """Ids, times, metric names, Meta's string codes and setting names are no tokens."""
    text = (
        "THREADS_API__FEATURE_NOT_AVAILABLE: THREADS_APP_SECRET unset; media 18023345989012587 "
        "at 2026-03-01T00:00:00Z (code=190, subcode=463, fbtrace_id=AbCdEfGhIjK) token_type bearer"
    )
    assert scrub(text) == text


def test_simulator_tokens_are_caught_by_shape() -> None:
    """Every kind of token the simulator issues is masked without being passed in."""
    world = World()
    for kind in ("facebook", "instagram", "threads"):
        value = world.tokens.issue_token(kind, "17841400000000001").value
        assert scrub(f"quoted {value} back") == f"quoted {MASK} back"


def test_json_values_are_scrubbed_recursively_without_mutation() -> None:
    """Strings at any depth are scrubbed, secret-named keys masked whole, the rest and the
    key order kept, the input untouched."""
    raw: dict[str, Any] = {
        "data": [{"name": "reach", "values": [{"value": 7}]}],
        "error": {"message": f"bad token {FB}", "code": 190},
        "access_token": "short",
        "headers": {"x-hub-signature-256": "sha256=ab", "count": 3, "ok": True, "none": None},
    }
    clean = scrub_json(raw)
    assert list(clean) == list(raw)
    assert clean["data"] == raw["data"]
    assert clean["error"] == {"message": f"bad token {MASK}", "code": 190}
    assert clean["access_token"] == MASK
    assert clean["headers"] == {"x-hub-signature-256": MASK, "count": 3, "ok": True, "none": None}
    assert raw["error"]["message"] == f"bad token {FB}"
    assert scrub_json([FB, 1.5, None]) == [MASK, 1.5, None]


def test_deeply_nested_json_does_not_exhaust_the_stack() -> None:
    """A value nested far deeper than Python's recursion limit is still scrubbed."""
    deep: Any = FB
    for _ in range(50_000):
        deep = [deep]
    found = scrub_json(deep)
    for _ in range(50_000):
        found = found[0]
    assert found == MASK


def test_the_log_filter_scrubs_extra_fields() -> None:
    """`extra` values (rendered by the JSON log format) are scrubbed like the message."""
    record = logging.makeLogRecord({"msg": "failed", "error": f"token {FB}", "token": "short"})
    RedactingFilter().filter(record)
    assert record.__dict__["error"] == f"token {MASK}"
    assert record.__dict__["token"] == MASK


# --- the columns ----------------------------------------------------------------------------


def stored(engine: Engine, sql: str) -> str:
    """A column as the database holds it (read as text, past every type)."""
    with engine.connect() as conn:
        return str(conn.execute(sa.text(sql)).scalar_one())


def test_account_errors_and_problems_are_stored_scrubbed(engine: Engine) -> None:
    """However written (Core UPDATE, ORM), errors, problems and reasons hold no token."""
    account_id = add_account(engine, "shop", "1784", FB, state_reason=f"190 for {FB}")
    quoted = f"Error validating access token: session for token {FB} has expired"
    record_error(engine, account_id=account_id, side=INSTAGRAM, error=quoted)
    assert stored(engine, "SELECT last_error FROM account") == scrub(quoted)
    record_failure(
        engine,
        account_id=account_id,
        side=INSTAGRAM,
        error=f"GET /stories?access_token={FB}",
        reason=f"Meta rejected the account ({FB})",
        cap=timedelta(hours=1),
    )
    row = stored(engine, "SELECT last_error || ig_problem || state_reason FROM account")
    assert FB not in row
    assert row.count(MASK) == 3
    with session_scope(engine) as session:
        session.add(MetricUnavailable(account_id=account_id, platform="threads", metric="views",
                                      reason=f"no access_token={SECRET}"))  # fmt: skip
    assert stored(engine, "SELECT reason FROM metric_unavailable") == f"no access_token={MASK}"


def test_media_errors_and_snapshot_raw_are_stored_scrubbed(engine: Engine) -> None:
    """A media's last error and a snapshot's raw answer lose quoted tokens on the way in."""
    account_id = add_account(engine, "shop", "1784", FB)
    with session_scope(engine) as session:
        session.add(Media(account_id=account_id, platform="instagram", subject_type="story",
                          media_id="1790", discovered_at=utcnow()))  # fmt: skip
    note_capture_error(engine, platform="instagram", media_id="1790", error=f"token {IG} died")
    assert stored(engine, "SELECT last_error FROM media") == f"token {MASK} died"
    raw = {"error": {"message": f"session for token {FB}", "code": 10}, "client_secret": SECRET}
    subject = Subject(account_id, "instagram", "story", "1790")
    with session_scope(engine) as session:
        record_snapshot(session=session, subject=subject, slot="first", source="api",
                        metrics=[], raw=raw)  # fmt: skip
    with engine.connect() as conn:  # the stored bytes, unpacked by hand: past every type
        blob = conn.execute(sa.text("SELECT body FROM snapshot_raw")).scalar_one()
    text = json.dumps(unpack_json(blob))
    assert FB not in text
    assert SECRET not in text
    assert text.count(MASK) == 2


def test_delivery_errors_are_stored_scrubbed(engine: Engine) -> None:
    """A failed delivery's summary, error and traceback (Core UPDATE) hold no token."""
    delivery_id = add_delivery(engine, b'{"object": "instagram", "entry": []}')
    table = table_of(WebhookDelivery)
    with engine.begin() as conn:
        conn.execute(
            sa.update(table)
            .where(table.c.id == delivery_id)
            .values(
                summary=f"failed for {FB}",
                error=f"GET /me?access_token={SECRET}",
                traceback=f'File "x.py": token={IG!r}',
            )
        )
    row = stored(engine, "SELECT summary || error || traceback FROM webhook_delivery")
    assert FB not in row
    assert SECRET not in row
    assert IG not in row
    assert row.count(MASK) == 3
