"""Signed but malformed bodies (depth bombs, 1e400, NaN, NUL, lone surrogates, values the
database refuses) end `unparseable` with a one-line reason, the raw body kept, no ERROR in
the log, and the worker goes on with the next delivery. Posted to the real receiver over a
socket and processed by the real arq worker, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.config import Settings
from receiver.app import create_app
from tests.test_deliveries import (
    add_account,
    add_delivery,
    delivery_row,
    failing_metric_inserts,
    run_burst,
    snapshots,
    story_body,
)
from tests.test_receiver import serve, signed
from workers.webhooks import strict_json
from workers.webhooks.process import process_delivery_sync

STORY = story_body()
DEEP = 100_000


def with_value(literal: bytes) -> bytes:
    """Meta's story sample with one more key, `extra`, written as the raw JSON `literal`."""
    return STORY.replace(b'"media_id"', b'"extra": ' + literal + b', "media_id"', 1)


MALFORMED = {
    "depth bomb": (b"[" * DEEP + b"]" * DEEP, "body nests deeper than 64 levels"),
    "deep object": (b'{"a":' * DEEP + b"1" + b"}" * DEEP, "body nests deeper than 64 levels"),
    "1e400": (with_value(b"1e400"), "body holds the number 1e400, beyond the range of a float"),
    "NaN": (with_value(b"NaN"), "body holds NaN, which JSON does not allow"),
    "-Infinity": (with_value(b"-Infinity"), "body holds -Infinity, which JSON does not allow"),
    "huge integer": (with_value(b"9" * 400), "body holds the integer 999999999999999999999999"),
    "NUL": (with_value(b'"a\\u0000b"'), "body holds a NUL character (\\u0000)"),
    "NUL in a key": (with_value(b'{"\\u0000": 1}'), "body holds a NUL character (\\u0000)"),
    "lone surrogate": (with_value(b'"\\ud800"'), "body holds a lone surrogate (\\ud800)"),
    "encoded surrogate": (with_value(b'"\xed\xa0\x80"'), "body is not UTF-8"),
    "mix": (with_value(b'[NaN, "\\u0000", 1e400, "\\udfff"]'), "body holds NaN"),
    "UTF-16": (STORY.decode().encode("utf-16"), "body is not UTF-8"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_strict_json_refuses_with_a_one_line_reason(name: str) -> None:
    """The one parser refuses each body, saying why in one short line."""
    body, reason = MALFORMED[name]
    with pytest.raises(strict_json.MalformedJSON) as caught:
        strict_json.loads(body)
    message = f"body {caught.value}"
    assert message.startswith(reason)
    assert "\n" not in message
    assert len(message) < 120


def test_strict_json_keeps_what_is_valid() -> None:
    """Surrogate pairs, big but finite numbers, negative ints and 64 levels parse as usual;
    the 65th level is refused."""
    doc = strict_json.loads(f'["\\ud83d\\ude00", 1e308, -5, {2**63}]'.encode())
    assert doc == ["\U0001f600", 1e308, -5, 2**63]
    assert strict_json.loads(b"[" * 64 + b"]" * 64) is not None
    with pytest.raises(strict_json.MalformedJSON, match="deeper than 64"):
        strict_json.loads(b"[" * 65 + b"]" * 65)


def test_malformed_bodies_are_unparseable_and_the_next_delivery_is_processed(
    settings: Settings, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """Every malformed body is stored as sent (200), then ends unparseable with its reason
    and no traceback; the genuine story posted after them is processed; nothing logged at
    ERROR."""
    add_account(engine)
    bodies = [body for body, _ in MALFORMED.values()] + [story_body()]
    with serve(create_app(settings)) as client:
        for body in bodies:
            response = client.post("/webhooks/instagram", content=body, headers=signed(body))
            assert response.status_code == 200
    with engine.connect() as conn:
        ids = [int(i) for (i,) in conn.execute(sa.text("SELECT id FROM webhook_delivery"))]
    with caplog.at_level(logging.INFO):
        worker = run_burst(settings, sorted(ids))
    assert worker.jobs_complete == len(bodies)
    rows = [delivery_row(engine, i) for i in sorted(ids)]
    assert [r.body for r in rows] == bodies
    for row, (_, reason) in zip(rows, MALFORMED.values(), strict=False):
        assert (row.status, row.summary, row.traceback) == (
            "unparseable",
            "body could not be parsed",
            None,
        )
        assert (row.error or "").startswith(reason)
        assert "\n" not in (row.error or "")
    assert rows[-1].status == "processed"
    assert len(snapshots(engine)) == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert not [r for r in caplog.records if r.exc_info]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_value_the_database_refuses_is_unparseable_without_sql(
    settings: Settings, engine: Engine
) -> None:
    """A data error from PostgreSQL (SQLSTATE class 22, injected by a trigger) is final:
    unparseable, the database's one-line reason, none of the SQL or its parameters."""
    add_account(engine)
    delivery = add_delivery(engine, story_body())
    with failing_metric_inserts(engine, sqlstate="22003"):
        assert process_delivery_sync(engine=engine, delivery_id=delivery) == "unparseable"
    row = delivery_row(engine, delivery)
    assert (row.status, row.summary, row.traceback) == (
        "unparseable",
        "body could not be stored",
        None,
    )
    assert row.error == "a value of the body does not fit the archive: injected fault"
    assert snapshots(engine) == []
