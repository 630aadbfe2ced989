"""The simulator's control API over HTTP, `python -m metasim`, and the webhook signing helper."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from metasim import World, deliver, sign, story_insights_payload, threads_payload
from tests.metasim_fixtures import RunningSim
from tests.servers import ServerThread, free_port, wait_until

SECRET = "webhook-secret-for-tests"


@pytest.fixture
def http(sim: RunningSim) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=30.0) as client:
        yield client


def post(http: httpx.Client, path: str, body: Any) -> Any:
    response = http.post(f"/_sim{path}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_control_api_builds_and_inspects_the_world(sim: RunningSim, http: httpx.Client) -> None:
    """Accounts, stories, Threads users/posts, faults and the call log, all over HTTP."""
    posted = (datetime.now(UTC) - timedelta(hours=23)).isoformat()
    (account,) = post(
        http,
        "/accounts",
        {
            "accounts": [
                {
                    "ig_user_id": "1784",
                    "username": "a",
                    "stories": [
                        {"story_id": "1801", "timestamp": posted, "viewers": 900, "seed": 3}
                    ],
                }
            ]
        },
    )["accounts"]
    assert account["stories"] == ["1801"]
    (user,) = post(http, "/threads/users", {"ig_user_id": "1784", "followers_count": 500})["users"]
    post(http, "/threads/posts", {"posts": [{"user": user["threads_user_id"], "age_seconds": 60}]})
    (fault,) = post(http, "/faults", {"code": 17, "count": 1, "kind": "stories"})["faults"]
    stories = http.get("/v25.0/1784/stories", params={"access_token": account["token"]})
    assert stories.json()["error"]["code"] == 17
    listed = http.get("/v25.0/1784/stories", params={"access_token": account["token"]})
    assert [s["id"] for s in listed.json()["data"]] == ["1801"]
    calls = http.get("/_sim/calls", params={"kind": "stories"}).json()
    assert [(c["status"], c["fault"]) for c in calls["calls"]] == [(400, fault["id"]), (200, None)]
    assert calls["last"] == 2
    assert http.get("/_sim/calls", params={"since": 1}).json()["calls"][0]["seq"] == 2
    values = http.get("/_sim/stories/1801").json()
    assert values["values"]["reach"] == sim.world.story_values("1801")["reach"] > 0
    assert sim.world.connected_threads_user("1784") == user["threads_user_id"]
    summary = http.get("/_sim/state").json()["summary"]
    assert (summary["accounts"], summary["threads_posts"], summary["calls"]) == (1, 1, 2)


def test_control_api_tokens_budget_clock_reset(sim: RunningSim, http: httpx.Client) -> None:
    """Tokens can be expired and aged, budgets and config set, the clock moved, all reset."""
    (account,) = post(http, "/accounts", {"login": "instagram"})["accounts"]
    ig, token = account["ig_user_id"], account["token"]
    post(http, "/tokens/age", {"account": ig, "seconds": 2 * 86400})
    refreshed = http.get(
        "/refresh_access_token", params={"grant_type": "ig_refresh_token", "access_token": token}
    )
    assert refreshed.status_code == 200
    post(http, "/tokens/expire", {"token": refreshed.json()["access_token"]})
    expired = http.get(
        f"/v25.0/{ig}/stories", params={"access_token": refreshed.json()["access_token"]}
    )
    assert expired.json()["error"]["error_subcode"] == 463
    post(http, "/budget", {"ig_user_id": ig, "calls": 1})
    assert post(http, "/config", {"page_size": 7})["page_size"] == 7
    before = sim.world.now()
    post(http, "/clock", {"advance_seconds": 3600})
    assert sim.world.now() - before >= timedelta(hours=1)
    post(http, "/reset", {})
    assert sim.world.summary()["accounts"] == 0
    assert sim.world.config.page_size == 7


def test_control_api_refuses_bad_input(sim: RunningSim, http: httpx.Client) -> None:
    """Unknown fields 400, unknown objects 404, taken ids 409, with a JSON error."""
    assert http.post("/_sim/accounts", json={"nope": 1}).status_code == 400
    assert http.post("/_sim/faults", json={"code": 4, "color": "red"}).status_code == 400
    assert http.post("/_sim/stories", json={"account": "404"}).status_code == 404
    post(http, "/accounts", {"ig_user_id": "1"})
    taken = http.post("/_sim/accounts", json={"ig_user_id": "1"})
    assert taken.status_code == 409
    assert "exists" in taken.json()["error"]
    assert http.post("/_sim/config", content=b"{not json").status_code == 400


def test_bulk_creation_is_fast(sim: RunningSim, http: httpx.Client) -> None:
    """1,000 accounts x 3 stories in one request, both ways, each well under a few seconds."""
    now = time.time()
    specs = [
        {"stories": [{"timestamp": now - age} for age in (600, 30000, 80000)]} for _ in range(1000)
    ]
    started = time.perf_counter()
    created = post(http, "/accounts", {"accounts": specs})["accounts"]
    assert time.perf_counter() - started < 5
    started = time.perf_counter()
    populated = post(http, "/populate", {"accounts": 1000, "stories_per_account": 3})["accounts"]
    assert time.perf_counter() - started < 5
    assert len(created) == len(populated) == 1000
    assert sim.world.summary()["live_stories"] == 6000
    last = populated[-1]
    listed = http.get(
        f"/v25.0/{last['ig_user_id']}/stories", params={"access_token": last["token"]}
    ).json()
    assert len(listed["data"]) == 3


def test_python_m_metasim_serves() -> None:
    """`python -m metasim --port P` serves Meta's routes and the control API, no env needed."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "metasim", "--port", str(port), "--accounts", "2", "--stories", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def up() -> Any:
            try:
                return httpx.get(f"{url}/_sim/state", timeout=1).json()
            except httpx.HTTPError:
                return None

        state = wait_until(up, timeout=20, interval=0.1)
        assert state["summary"]["accounts"] == 2
        assert state["summary"]["live_stories"] == 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_signature_is_hmac_over_the_raw_bytes() -> None:
    """sign() is sha256=<hex> of the exact bytes; re-serialised JSON would not match."""
    payload = story_insights_payload("1784", {"media_id": "1", "reach": 17, "note": "äöå"})
    delivery = deliver(payload, SECRET)
    assert b"\\u00e4\\u00f6\\u00e5" in delivery.body
    expected = hmac.new(SECRET.encode(), delivery.body, hashlib.sha256).hexdigest()
    assert delivery.signature == sign(delivery.body, SECRET) == f"sha256={expected}"
    reencoded = json.dumps(json.loads(delivery.body), ensure_ascii=False).encode()
    assert sign(reencoded, SECRET) != delivery.signature
    assert SECRET not in repr(delivery)
    assert delivery.signature not in repr(delivery)


def test_webhook_payload_forms() -> None:
    """story_insights array-wrapped or bare with -1 under 5; the Threads envelope."""
    world = World()
    account = world.add_account(ig_user_id="1784")
    small = world.add_story(account.ig_user_id, viewers=3)
    value = world.story_webhook_value(small.id)
    assert value["reach"] == -1
    assert set(value) == {
        "media_id",
        "exits",
        "replies",
        "reach",
        "taps_forward",
        "taps_back",
        "impressions",
    }
    wrapped = story_insights_payload("1784", value, sent_at=1547687043)
    bare = story_insights_payload("1784", value, sent_at=1547687043, wrapped=False)
    assert wrapped == [bare]
    assert bare["object"] == "instagram"
    (entry,) = bare["entry"]
    assert (entry["id"], entry["time"]) == ("1784", 1547687043)
    assert entry["changes"] == [{"field": "story_insights", "value": value}]
    threads = threads_payload(app_id="9", target_id="77", field="replies", value={"id": "5"})
    assert threads["values"] == {"value": {"id": "5"}, "field": "replies"}
    assert threads["has_uid_field"] is False
    listed = threads_payload(
        app_id="9", target_id="77", field="replies", value={}, values_as_list=True
    )
    assert isinstance(listed["values"], list)


def test_signed_delivery_verifies_at_a_real_endpoint() -> None:
    """A delivery POSTed over HTTP verifies against the raw body the endpoint reads."""

    async def hook(request: Request) -> PlainTextResponse:
        raw = await request.body()
        good = hmac.compare_digest(sign(raw, SECRET), request.headers["x-hub-signature-256"])
        return PlainTextResponse("ok" if good else "bad", 200 if good else 403)

    delivery = deliver(story_insights_payload("1784", {"media_id": "1", "reach": 9}), SECRET)
    with ServerThread(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as server:
        ok = httpx.post(f"{server.url}/hook", content=delivery.body, headers=delivery.headers)
        forged = httpx.post(
            f"{server.url}/hook", content=delivery.body + b" ", headers=delivery.headers
        )
    assert (ok.status_code, forged.status_code) == (200, 403)
