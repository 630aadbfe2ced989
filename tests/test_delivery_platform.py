"""A delivery is applied only as the platform of the route (and secret) that verified it:
signed bodies posted to the real receiver over a socket, processed by the real arq worker
on real Redis, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from archiver.commands.replay import replay_one, select_deliveries
from core.config import Settings
from models.accounts import Account
from models.snapshots import raw_body
from receiver.app import create_app
from reports.coverage import delivery_counts
from tests.conftest import APP_SECRET, THREADS_SECRET
from tests.test_deliveries import IG, MEDIA, delivery_row, run_burst, snapshots, story_body
from tests.test_receiver import serve, signed

THREADS_USER = "2500"
PUBLISH = json.dumps(
    {
        "app_id": "1",
        "topic": "interaction",
        "target_id": THREADS_USER,
        "time": 1723000000,
        "values": {"field": "publish", "value": {"id": "1789", "is_reply": False}},
    }
).encode()


def add_account(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(
            Account(
                name="shop",
                ig_user_id=IG,
                ig_token="EAAtoken-0123456789",
                threads_user_id=THREADS_USER,
                threads_token="THtoken-0123456789",
            )
        )
        session.commit()


def post_and_process(
    settings: Settings, engine: Engine, route: str, body: bytes, secret: str
) -> int:
    """POST `body` signed with `secret` to `route` (must be stored: 200), then let the real
    worker process it; the delivery's id."""
    with serve(create_app(settings)) as client:
        response = client.post(f"/webhooks/{route}", content=body, headers=signed(body, secret))
    assert response.status_code == 200
    with engine.connect() as conn:
        newest = conn.execute(
            sa.text("SELECT MAX(id) FROM webhook_delivery WHERE platform = :p"), {"p": route}
        ).scalar_one()
    run_burst(settings, [int(newest)])
    return int(newest)


def media_rows(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT platform, media_id FROM media ORDER BY id"))
        return [(str(p), str(m)) for p, m in rows]


def metric_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT COUNT(*) FROM metric_history")).scalar_one())


def test_an_instagram_body_signed_for_threads_is_kept_but_never_applied(
    settings: Settings, engine: Engine
) -> None:
    """A story_insights body signed with THREADS_APP_SECRET on /webhooks/threads is stored
    as sent and marked rejected, with no story, snapshot or metric; the genuine body on the
    Instagram route then records its webhook version (the forgery blocked nothing)."""
    add_account(engine)
    forged = story_body(reach=999999)
    delivery = post_and_process(settings, engine, "threads", forged, THREADS_SECRET)
    row = delivery_row(engine, delivery)
    assert (row.status, row.body, row.error) == ("rejected", forged, None)
    assert row.summary == "not applied: object 'instagram' arrived on the threads webhook (at [0])"
    assert (media_rows(engine), snapshots(engine), metric_rows(engine)) == ([], [], 0)

    genuine = post_and_process(settings, engine, "instagram", story_body(), APP_SECRET)
    assert delivery_row(engine, genuine).status == "processed"
    (snapshot,) = snapshots(engine)
    assert (snapshot.subject_id, snapshot.source) == (MEDIA, "webhook")
    with engine.connect() as conn:
        assert raw_body(conn, snapshot.id)["reach"] == 17


def test_a_threads_body_signed_with_the_meta_secret_is_kept_but_never_applied(
    settings: Settings, engine: Engine
) -> None:
    """The reverse: a Threads publish signed with META_APP_SECRET on /webhooks/instagram is
    rejected and tracks no post; on its own route the same body is applied."""
    add_account(engine)
    delivery = post_and_process(settings, engine, "instagram", PUBLISH, APP_SECRET)
    row = delivery_row(engine, delivery)
    assert (row.status, row.body) == ("rejected", PUBLISH)
    assert row.summary == "not applied: a Threads envelope arrived on the instagram webhook"
    assert media_rows(engine) == []

    genuine = post_and_process(settings, engine, "threads", PUBLISH, THREADS_SECRET)
    assert delivery_row(engine, genuine).status == "processed"
    assert media_rows(engine) == [("threads", "1789")]


def test_a_graph_object_other_than_threads_is_rejected_on_the_threads_route(
    settings: Settings, engine: Engine
) -> None:
    """Any Graph object but `threads` (here `page`) belongs to the Meta app, not to Threads;
    on the Instagram route the same body is archived as ignored, as before."""
    body = json.dumps({"object": "page", "entry": [{"id": "5", "changed_fields": ["feed"]}]})
    on_threads = post_and_process(settings, engine, "threads", body.encode(), THREADS_SECRET)
    on_meta = post_and_process(settings, engine, "instagram", body.encode(), APP_SECRET)
    assert delivery_row(engine, on_threads).summary == (
        "not applied: object 'page' arrived on the threads webhook"
    )
    assert (delivery_row(engine, on_threads).status, delivery_row(engine, on_meta).status) == (
        "rejected",
        "ignored",
    )


def test_rejected_is_final_for_replay_and_counted_by_status(
    settings: Settings, engine: Engine
) -> None:
    """`archiver replay` leaves a rejected delivery as it is (not picked by default, and
    --event changes nothing); `archiver status` counts it under its own name."""
    add_account(engine)
    delivery = post_and_process(settings, engine, "threads", story_body(), THREADS_SECRET)
    assert select_deliveries(engine, since=None, event=None) == []
    assert replay_one(engine, delivery) == "rejected"
    assert delivery_row(engine, delivery).attempts == 1
    assert delivery_counts(engine).by_status == {"rejected": 1}
    assert snapshots(engine) == []
