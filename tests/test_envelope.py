"""Parsing of Meta's webhook envelopes."""

from __future__ import annotations

import json

import pytest

from workers.envelope import UnparseableDelivery, parse_body

STORY = {"media_id": "1801", "exits": 1, "replies": 0, "reach": 17, "impressions": 28}


def test_array_wrapped_story_insights() -> None:
    """Meta's sample form, wrapped in a JSON array, yields its change."""
    body = [
        {
            "entry": [
                {
                    "changes": [{"field": "story_insights", "value": STORY}],
                    "id": "178414",
                    "time": 1547687043,
                }
            ],
            "object": "instagram",
        }
    ]
    (change,) = parse_body(json.dumps(body).encode())
    assert (change.object, change.entry_id, change.field) == (
        "instagram",
        "178414",
        "story_insights",
    )
    assert change.value["reach"] == 17
    assert change.entry_time == 1547687043


def test_bare_envelope_with_several_entries_and_changes() -> None:
    """Every entry and every change of a bare envelope is walked."""
    body = {
        "object": "instagram",
        "entry": [
            {
                "id": "1",
                "time": 1,
                "changes": [
                    {"field": "comments", "value": {}},
                    {"field": "story_insights", "value": STORY},
                ],
            },
            {"id": "2", "time": 2, "changes": [{"field": "mentions", "value": {}}]},
        ],
    }
    fields = [c.field for c in parse_body(json.dumps(body).encode())]
    assert fields == ["comments", "story_insights", "mentions"]


def test_messaging_items_and_millisecond_times() -> None:
    """Messaging entries are kept as changes; a millisecond time becomes seconds."""
    body = {
        "object": "instagram",
        "entry": [
            {
                "id": "9",
                "time": 1458692752478,
                "messaging": [{"sender": {"id": "1"}, "recipient": {"id": "9"}, "timestamp": 1}],
            }
        ],
    }
    (change,) = parse_body(json.dumps(body).encode())
    assert change.kind == "messaging"
    assert change.entry_time == 1458692752


@pytest.mark.parametrize(
    "values",
    [{"field": "publish", "value": {"id": "5"}}, [{"field": "publish", "value": {"id": "5"}}]],
)
def test_threads_envelope(values: object) -> None:
    """The Threads envelope parses whether `values` is an object or a list."""
    body = {
        "app_id": "1",
        "topic": "interaction",
        "target_id": "77",
        "time": 1,
        "subscription_id": "s",
        "has_uid_field": False,
        "values": values,
    }
    (change,) = parse_body(json.dumps(body).encode())
    assert (change.object, change.entry_id, change.field) == ("threads", "77", "publish")


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe", b"[]", b'{"hello": 1}', b"42"])
def test_unparseable_bodies(body: bytes) -> None:
    """Non-JSON and unknown shapes raise one named error."""
    with pytest.raises(UnparseableDelivery):
        parse_body(body)
