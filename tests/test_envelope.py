"""Parsing of Meta's webhook envelopes (pure: bytes in, frozen changes out)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from core.errors import ArchiverError
from workers.webhooks.envelope import Change, UnparseableDelivery, parse_body

IG = "instagram"  # the Meta app's route

# Meta's story_insights sample (https://developers.facebook.com/docs/instagram-platform/webhooks).
STORY = {
    "media_id": "18023345989012587",
    "exits": 1,
    "replies": 0,
    "reach": 17,
    "taps_forward": 12,
    "taps_back": 0,
    "impressions": 28,
}


def encode(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def story_envelope(time: Any = 1547687043) -> dict[str, Any]:
    return {
        "entry": [
            {
                "changes": [{"field": "story_insights", "value": STORY}],
                "id": "17841405309211844",
                "time": time,
            }
        ],
        "object": "instagram",
    }


def threads_envelope(values: Any) -> dict[str, Any]:
    return {
        "app_id": "123",
        "topic": "moderate",
        "target_id": "7788",
        "time": 1723000000,
        "subscription_id": "456",
        "has_uid_field": False,
        "values": values,
    }


def test_array_wrapped_story_insights() -> None:
    """Meta's sample form, wrapped in a JSON array, yields its one change intact."""
    (change,) = parse_body(encode([story_envelope()]), platform=IG)
    assert change == Change(
        object="instagram",
        entry_id="17841405309211844",
        entry_time=1547687043,
        kind="changes",
        field="story_insights",
        value=STORY,
    )
    assert change.sent_at == datetime(2019, 1, 17, 1, 4, 3, tzinfo=UTC)


def test_bare_and_wrapped_forms_parse_alike() -> None:
    """The bare object of the getting-started page gives the same changes as the array."""
    assert parse_body(encode(story_envelope()), platform=IG) == parse_body(
        encode([story_envelope()]), platform=IG
    )


def test_every_entry_and_change_is_walked_in_order() -> None:
    """Batched deliveries: every entry[] and every changes[] item comes out, in order."""
    body = {
        "object": "instagram",
        "entry": [
            {
                "id": "1",
                "time": 1,
                "changes": [
                    {"field": "comments", "value": {"id": "c1"}},
                    {"field": "story_insights", "value": STORY},
                ],
            },
            {"id": "2", "time": 2, "changes": [{"field": "mentions", "value": {"id": "m"}}]},
        ],
    }
    changes = parse_body(encode(body), platform=IG)
    assert [(c.entry_id, c.field) for c in changes] == [
        ("1", "comments"),
        ("1", "story_insights"),
        ("2", "mentions"),
    ]


def test_several_array_items_are_all_parsed() -> None:
    """An array of two envelopes yields the changes of both."""
    changes = parse_body(encode([story_envelope(time=1), story_envelope(time=2)]), platform=IG)
    assert [c.entry_time for c in changes] == [1, 2]


def test_messaging_items_and_millisecond_times() -> None:
    """Messaging items become changes of kind messaging; a millisecond time becomes seconds."""
    item = {"sender": {"id": "1"}, "recipient": {"id": "9"}, "timestamp": 1458692752478}
    body = {
        "object": "instagram",
        "entry": [{"id": "9", "time": 1458692752478, "messaging": [item]}],
    }
    (change,) = parse_body(encode(body), platform=IG)
    assert (change.kind, change.field, change.value) == ("messaging", "messaging", item)
    assert change.entry_time == 1458692752


@pytest.mark.parametrize(
    ("raw_time", "seconds"),
    [(1547687043, 1547687043), (1547687043123, 1547687043), (1547687043.9, 1547687043)],
)
def test_seconds_and_milliseconds_give_the_same_second(raw_time: float, seconds: int) -> None:
    """entry.time in seconds, milliseconds or with a fraction all mean the same second."""
    (change,) = parse_body(encode(story_envelope(time=raw_time)), platform=IG)
    assert change.entry_time == seconds


@pytest.mark.parametrize("raw_time", [None, "soon", True, -5, 10**30])
def test_odd_entry_times_are_unknown(raw_time: Any) -> None:
    """A missing or nonsensical entry.time is None rather than a wrong date."""
    (change,) = parse_body(encode(story_envelope(time=raw_time)), platform=IG)
    assert change.entry_time is None
    assert change.sent_at is None


def test_changed_fields_without_values() -> None:
    """Subscriptions without "Include Values" send names only; each becomes a change."""
    body = {"object": "page", "entry": [{"id": "5", "time": 1, "changed_fields": ["feed"]}]}
    (change,) = parse_body(encode(body), platform=IG)
    assert (change.object, change.kind, change.field, change.value) == (
        "page",
        "changed_fields",
        "feed",
        {},
    )


@pytest.mark.parametrize(
    "values",
    [
        {"field": "replies", "value": {"id": "5", "text": "hi"}},
        [{"field": "replies", "value": {"id": "5", "text": "hi"}}],
    ],
)
def test_threads_envelope(values: Any) -> None:
    """The Threads envelope parses whether `values` is an object or a list."""
    (change,) = parse_body(encode(threads_envelope(values)), platform="threads")
    assert change == Change(
        object="threads",
        entry_id="7788",
        entry_time=1723000000,
        kind="threads",
        field="replies",
        value={"id": "5", "text": "hi"},
    )


def test_changes_are_frozen() -> None:
    """A parsed change cannot be altered by whoever processes it."""
    (change,) = parse_body(encode(story_envelope()), platform=IG)
    with pytest.raises(dataclasses.FrozenInstanceError):
        change.field = "other"  # type: ignore[misc]  # the point: mypy knows it is frozen


def test_a_scalar_value_is_kept_under_value() -> None:
    """A change whose value is not an object keeps it rather than dropping it."""
    body = {"object": "user", "entry": [{"id": "1", "changes": [{"field": "f", "value": 3}]}]}
    (change,) = parse_body(encode(body), platform=IG)
    assert change.value == {"value": 3}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[]", "empty JSON array"),
        (b"42", "unknown envelope"),
        (b'{"hello": 1}', "unknown envelope at body (hello)"),
        (b'[{"object": "instagram", "entry": "x"}]', "[0]: `object` must be a string"),
        (b'{"object": "instagram", "entry": [7]}', "body.entry[0] is not an object"),
        (b'{"object": "instagram", "entry": [{"changes": [{}]}]}', "changes[0] is not a"),
        (b'{"object": "instagram", "entry": [{"messaging": {}}]}', "messaging is not a list"),
        (b'{"topic": "t", "values": [1]}', "body.values[0] is not a {field, value}"),
    ],
)
def test_unparseable_bodies(body: bytes, message: str) -> None:
    """Non-JSON and unknown shapes raise one named ArchiverError that says where."""
    platform = "threads" if b'"topic"' in body else IG
    with pytest.raises(UnparseableDelivery) as caught:
        parse_body(body, platform=platform)
    assert message in str(caught.value)
    assert isinstance(caught.value, ArchiverError)
