"""Random input at the real receiver: never a 500, never a row without a valid signature,
and the process stays healthy throughout; random headers beside a valid signature; random
signed bodies through the worker's processing, always ending in a known state."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from core.config import Settings
from receiver.app import create_app
from receiver.signature import sign
from tests.conftest import APP_SECRET, THREADS_SECRET
from tests.test_deliveries import IG, add_delivery, delivery_row
from tests.test_delivery_platform import add_account
from tests.test_receiver import serve
from workers.webhooks.process import process_delivery_sync

PATHS = st.sampled_from(
    ["/webhooks/instagram", "/webhooks/threads", "/healthz", "/readyz", "/metrics", "/"]
) | st.text(alphabet="abcdefghijklmnopqrstuvwxyz/%._-~?=&", max_size=40).map(lambda p: "/" + p)
METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
HEADER_NAMES = st.sampled_from(
    ["X-Hub-Signature-256", "X-Hub-Signature", "Content-Type", "Content-Length", "X-Other"]
)
HEADER_VALUES = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=80)
BODIES = st.binary(max_size=2048) | st.text(max_size=512).map(str.encode)


def stored(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT COUNT(*) FROM webhook_delivery")).scalar_one())


@pytest.fixture
def client(settings: Settings) -> Iterator[httpx.Client]:
    with serve(create_app(settings)) as http:
        yield http


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=METHODS,
    path=PATHS,
    headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4),
    body=BODIES,
    sign_it=st.booleans(),
)
def test_random_requests_never_fail_the_receiver(
    client: httpx.Client,
    engine: Engine,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    sign_it: bool,
) -> None:
    """Any method, path, headers and body: a 2xx/4xx/503 answer, rows only when signed."""
    headers = {k: v for k, v in headers.items() if k != "Content-Length"}
    if sign_it:
        headers["X-Hub-Signature-256"] = sign(body, APP_SECRET)
    before = stored(engine)
    response = client.request(method, path, headers=headers, content=body)
    assert response.status_code < 500 or response.status_code == 503
    valid = headers.get("X-Hub-Signature-256") == sign(body, APP_SECRET)
    if not (valid and method == "POST" and path == "/webhooks/instagram"):
        assert stored(engine) == before
    assert client.get("/healthz").status_code == 200


# Header names: RFC 9110 tokens; values: visible ASCII, spaces and obs-text (bytes >= 0x80).
TOKEN = st.text(
    alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    min_size=1,
    max_size=30,
)
RAW_VALUES = st.binary(max_size=200).map(
    lambda b: bytes(c for c in b if c == 0x09 or 0x20 <= c != 0x7F).strip()
)
KNOWN_NAMES = st.sampled_from(
    ["X-Hub-Signature-256", "X-Hub-Signature", "Content-Type", "User-Agent", "X-Forwarded-For"]
)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    extra=st.lists(st.tuples(KNOWN_NAMES | TOKEN, RAW_VALUES), max_size=8),
    route=st.sampled_from(["/webhooks/instagram", "/webhooks/threads"]),
    body=st.binary(max_size=64),
)
def test_random_headers_never_fail_the_webhook(
    client: httpx.Client,
    engine: Engine,
    extra: list[tuple[str, bytes]],
    route: str,
    body: bytes,
) -> None:
    """Any header names and values, repeated or not, beside a correct signature: never a
    500; with no other signature header the delivery is stored (200)."""
    secret = THREADS_SECRET if route.endswith("threads") else APP_SECRET
    headers = [(name.encode(), value) for name, value in extra]
    headers.append((b"X-Hub-Signature-256", sign(body, secret).encode()))
    response = client.post(route, headers=headers, content=body)
    assert response.status_code < 500 or response.status_code == 503
    others = [n for n, _ in extra if n.lower() in ("x-hub-signature-256", "content-length")]
    if not others:
        assert response.status_code == 200
    assert client.get("/healthz").status_code == 200


# Signed bodies through the worker's processing: envelopes of both platforms with plausible
# values (to reach the writing paths) or hostile ones, raw bytes, and nesting far past the
# parser's limit.
IDS = st.sampled_from([IG, "2500", 2500, "999", "x" * 65, 0])
PLAIN_TEXT = IDS.map(str) | st.text(
    st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12
)
HOSTILE_TEXT = st.sampled_from(["\x00", "\ud800", "a\udfffb"]) | PLAIN_TEXT
TIMES = st.sampled_from(
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-01-01T00:00:00+0000"]
)


def documents(
    text: st.SearchStrategy[str], floats: st.SearchStrategy[float]
) -> st.SearchStrategy[Any]:
    """Webhook documents of both envelope families whose strings come from `text`."""
    scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | floats | text
    jsonish = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
        max_leaves=8,
    )
    value = st.fixed_dictionaries(
        {"media_id": IDS, "id": IDS},
        optional={
            "reach": st.integers(-1, 10**6) | floats,
            "timestamp": TIMES | scalars,
            "deleted_at": TIMES | scalars,
            "is_reply": st.booleans(),
            "media_type": text,
            "extra": jsonish,
        },
    )
    fields = st.sampled_from(["story_insights", "publish", "delete", "comments"]) | text
    change = st.fixed_dictionaries({"field": fields, "value": value | scalars | jsonish})
    entry = st.fixed_dictionaries(
        {
            "id": IDS | scalars,
            "time": st.integers(0, 2**50) | scalars,
            "changes": st.lists(change, max_size=3),
        }
    )
    graph = st.fixed_dictionaries(
        {
            "object": st.sampled_from(["instagram", "threads", "page"]) | text,
            "entry": st.lists(entry, max_size=3),
        }
    )
    threads = st.fixed_dictionaries(
        {
            "topic": text,
            "target_id": IDS | scalars,
            "time": scalars,
            "values": change | st.lists(change, max_size=2),
        }
    )
    story = st.builds(
        lambda ig, value: {
            "object": "instagram",
            "entry": [{"id": ig, "changes": [{"field": "story_insights", "value": value}]}],
        },
        IDS,
        value,
    )
    post = st.builds(
        lambda field, target, value: {
            "topic": "interaction",
            "target_id": target,
            "values": {"field": field, "value": value},
        },
        st.sampled_from(["publish", "delete"]),
        IDS,
        value,
    )
    return story | post | graph | threads | st.lists(graph, max_size=2) | jsonish


DOCUMENTS = documents(PLAIN_TEXT, st.floats(allow_nan=False, allow_infinity=False)) | documents(
    HOSTILE_TEXT, st.floats()
)
SIGNED_BODIES = (
    DOCUMENTS.map(lambda doc: json.dumps(doc).encode("utf-8", "surrogatepass"))
    | st.binary(max_size=128)
    | st.integers(min_value=60, max_value=5000).map(lambda n: b"[" * n + b"]" * n)
)
OUTCOMES = {"processed", "unrouted", "ignored", "unparseable", "rejected"}


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=SIGNED_BODIES, platform=st.sampled_from(["instagram", "threads"]))
def test_random_signed_bodies_end_in_a_known_state(
    registered: Engine, body: bytes, platform: str
) -> None:
    """Whatever a signed body holds, processing ends in a known final state, never `failed`
    and never with an exception; running it again changes nothing."""
    delivery = stored_delivery(registered, body, platform)
    status = process_delivery_sync(engine=registered, delivery_id=delivery)
    event(status)  # --hypothesis-show-statistics: how often each path was reached
    assert status in OUTCOMES
    assert delivery_row(registered, delivery).status == status
    assert process_delivery_sync(engine=registered, delivery_id=delivery) == status


@pytest.fixture
def registered(engine: Engine) -> Engine:
    """The database with an account on both platforms, so bodies reach the writing paths."""
    add_account(engine)
    return engine


def stored_delivery(engine: Engine, body: bytes, platform: str) -> int:
    """The id of the archived delivery of `body` on `platform`, added unless it exists (the
    receiver stores a body once per platform)."""
    digest = hashlib.sha256(body).hexdigest()
    with engine.connect() as conn:
        found = conn.execute(
            sa.text("SELECT id FROM webhook_delivery WHERE platform = :p AND body_sha256 = :d"),
            {"p": platform, "d": digest},
        ).scalar()
    return int(found) if found is not None else add_delivery(engine, body, platform=platform)
