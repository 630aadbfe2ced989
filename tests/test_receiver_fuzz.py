"""Random input at the real receiver: never a 500, never a row without a valid signature,
and the process stays healthy throughout."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from core.config import Settings
from receiver.app import create_app
from receiver.signature import sign
from tests.conftest import APP_SECRET
from tests.test_receiver import serve

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
