"""The receiver over HTTP: handshake, signatures, durable archive, limits, health, on both
databases and the real Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.applications import Starlette

from core.config import Settings
from core.errors import ConfigError
from receiver.app import create_app
from receiver.signature import sign, verify
from tests.conftest import APP_SECRET, THREADS_SECRET, VERIFY_TOKEN, make_settings
from tests.servers import Listening, ServerThread


@contextmanager
def serve(app: Starlette) -> Iterator[httpx.Client]:
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=20) as client:
        yield client


@contextmanager
def serve_ops(settings: Settings) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """The receiver as `archiver serve` runs it: clients of its public port and ops listener."""
    with (
        Listening(create_app(settings), settings) as running,
        httpx.Client(base_url=running.url, timeout=20) as public,
        httpx.Client(base_url=running.ops_url, timeout=20) as ops,
    ):
        yield public, ops


STORY = [{"entry": [{"changes": [{"field": "story_insights", "value": {
    "media_id": "18023345989012587", "exits": 1, "replies": 0, "reach": 17,
    "taps_forward": 12, "taps_back": 0, "impressions": 28}}],
    "id": "17841405309211844", "time": 1547687043}], "object": "instagram"}]  # fmt: skip


def signed(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    return {"X-Hub-Signature-256": sign(body, secret), "Content-Type": "application/json"}


def rows(engine: Engine) -> list[bytes]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.text("SELECT body FROM webhook_delivery"))]


def test_hmac_known_answer() -> None:
    """RFC 4231 test case 2 and Meta's header form."""
    expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert sign(b"what do ya want for nothing?", "Jefe") == f"sha256={expected}"
    assert verify(b"what do ya want for nothing?", f"sha256={expected}", "Jefe")


@pytest.mark.parametrize(
    "header", [None, "", "sha1=abc", "sha256=", "sha256=00", sign(b"other", APP_SECRET),
               sign(b"{}", "wrong-secret")])  # fmt: skip
def test_bad_signatures_are_refused(header: str | None) -> None:
    """Missing, malformed and wrong-secret signatures never verify."""
    assert not verify(b"{}", header, APP_SECRET)


def test_handshake(settings: Settings) -> None:
    """The right verify token echoes the challenge as text; anything else is 403."""
    with serve(create_app(settings)) as client:
        ok = client.get("/webhooks/instagram", params={
            "hub.mode": "subscribe", "hub.challenge": "1158201444",
            "hub.verify_token": VERIFY_TOKEN})  # fmt: skip
        assert ok.status_code == 200
        assert ok.text == "1158201444"
        assert ok.headers["content-type"].startswith("text/plain")
        for params in ({"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "x"},
                       {"hub.mode": "unsubscribe", "hub.challenge": "1",
                        "hub.verify_token": VERIFY_TOKEN}, {}):  # fmt: skip
            assert client.get("/webhooks/instagram", params=params).status_code == 403


def test_signed_delivery_stored_once(settings: Settings, engine: Engine) -> None:
    """Both envelope forms are stored before the 200; the same body again adds no row."""
    wrapped = json.dumps(STORY).encode()
    bare = json.dumps(STORY[0]).encode()
    with serve(create_app(settings)) as client:
        for body in (wrapped, bare, wrapped):
            assert client.post("/webhooks/instagram", content=body,
                               headers=signed(body)).status_code == 200  # fmt: skip
            assert body in rows(engine)  # durable by the time the 200 arrived
    assert sorted(rows(engine)) == sorted([wrapped, bare])


def test_unsigned_and_wrong_secret_store_nothing(settings: Settings, engine: Engine) -> None:
    """401 for a missing or wrong signature, and no row; the counter says so."""
    body = json.dumps(STORY).encode()
    with serve_ops(settings) as (client, ops):
        assert client.post("/webhooks/instagram", content=body).status_code == 401
        bad = signed(body, "not-the-secret")
        assert client.post("/webhooks/instagram", content=body, headers=bad).status_code == 401
        metrics = ops.get("/metrics").text
    assert rows(engine) == []
    assert 'outcome="bad_signature"' in metrics


def test_malformed_json_is_stored_and_acknowledged(settings: Settings, engine: Engine) -> None:
    """A signed body that is not JSON gets 200 and is archived (retries cannot fix it)."""
    body = b"{not json"
    with serve(create_app(settings)) as client:
        assert client.post("/webhooks/instagram", content=body,
                           headers=signed(body)).status_code == 200  # fmt: skip
        assert client.get("/healthz").status_code == 200
    assert rows(engine) == [body]


def test_oversize_is_413(database_url: str, redis_url: str, engine: Engine) -> None:
    """A body over MAX_BODY_BYTES is refused with 413 and not stored."""
    settings = make_settings(database_url, redis_url, max_body_bytes=1000)
    body = b"x" * 2000
    with serve(create_app(settings)) as client:
        response = client.post("/webhooks/instagram", content=body, headers=signed(body))
    assert response.status_code == 413
    assert rows(engine) == []


def test_concurrent_deliveries_share_commits(settings: Settings, engine: Engine) -> None:
    """Fifty concurrent deliveries are all stored, in fewer commits than rows."""
    bodies = [json.dumps({"object": "instagram", "entry": [], "n": i}).encode() for i in range(50)]
    app = create_app(settings)
    with serve(app) as client:

        def post(body: bytes) -> int:
            return client.post("/webhooks/instagram", content=body,
                               headers=signed(body)).status_code  # fmt: skip

        with ThreadPoolExecutor(max_workers=25) as pool:
            statuses = list(pool.map(post, bodies))
        archive = app.state.archive
        commits = archive.commits
    assert statuses == [200] * 50
    assert len(rows(engine)) == 50
    assert commits <= 50


def test_database_down_answers_503(tmp_path: Path, redis_url: str) -> None:
    """Without a reachable database no delivery is acknowledged."""
    for url in (f"sqlite:///{tmp_path}/missing/dir/x.db",
                "postgresql+psycopg://postgres@127.0.0.1:1/test"):  # fmt: skip
        settings = make_settings(url, redis_url, ingest_timeout_seconds=5)
        body = json.dumps(STORY).encode()
        with serve(create_app(settings)) as client:
            response = client.post("/webhooks/instagram", content=body, headers=signed(body))
            assert response.status_code == 503
            ready = client.get("/readyz")
            assert (ready.status_code, ready.text) == (503, "unavailable")


def test_refuses_to_start_without_secrets(database_url: str) -> None:
    """No META_APP_SECRET or META_VERIFY_TOKEN: a ConfigError naming them."""
    settings = make_settings(database_url, None, meta_app_secret=None, meta_verify_token=None)
    with pytest.raises(ConfigError, match="META_APP_SECRET"):
        create_app(settings)


def test_ready_when_database_and_redis_answer(settings: Settings) -> None:
    """/readyz is 200 "ok" with both stores up; the ops listener's /metrics has the backlog."""
    with serve_ops(settings) as (client, ops):
        ready = client.get("/readyz")
        assert (ready.status_code, ready.text) == (200, "ok")
        assert "archiver_delivery_backlog" in ops.get("/metrics").text


def test_threads_webhook_has_its_own_secret(settings: Settings, engine: Engine) -> None:
    """/webhooks/threads: handshake, a body signed with THREADS_APP_SECRET is stored as a
    Threads delivery; one signed with the Meta app secret is refused."""
    publish = {"field": "publish", "value": {"id": "1789"}}
    envelope = {"app_id": "1", "topic": "interaction", "target_id": "2500", "values": publish}
    body = json.dumps(envelope).encode()
    handshake = {"hub.mode": "subscribe", "hub.challenge": "42", "hub.verify_token": VERIFY_TOKEN}
    with serve(create_app(settings)) as client:
        hello = client.get("/webhooks/threads", params=handshake)
        assert (hello.status_code, hello.text) == (200, "42")
        wrong = client.post("/webhooks/threads", content=body, headers=signed(body))
        right = client.post("/webhooks/threads", content=body,
                            headers=signed(body, THREADS_SECRET))  # fmt: skip
    assert (wrong.status_code, right.status_code) == (401, 200)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT platform, body FROM webhook_delivery")).all()
    assert [(platform, bytes(raw)) for platform, raw in stored] == [("threads", body)]


def test_threads_webhook_is_404_without_its_secret(database_url: str, redis_url: str) -> None:
    """With THREADS_APP_SECRET unset there is no Threads endpoint at all."""
    settings = make_settings(database_url, redis_url, threads_app_secret=None)
    with serve(create_app(settings)) as client:
        assert client.post("/webhooks/threads", content=b"{}").status_code == 404
