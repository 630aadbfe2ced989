"""Pure parsing of Meta webhook bodies into a flat list of changes (no I/O, no database).

Two envelope families exist (https://developers.facebook.com/docs/graph-api/webhooks/getting-started,
https://developers.facebook.com/docs/threads/webhooks):
- Graph webhooks: `{"object": ..., "entry": [{"id", "time", "changes"|"messaging"|...}]}`,
  bare as in Meta's getting-started page or wrapped in a JSON array as in its Instagram
  samples (https://developers.facebook.com/docs/graph-api/webhooks/getting-started).
- Threads webhooks: `{"app_id", "topic", "target_id", "time", "values": {...} or [...]}`
  (https://developers.facebook.com/docs/threads/webhooks).
Both come out as the same `Change` shape, so processing never looks at envelopes again.

Each platform's webhook is verified with its own app secret, so a body is read only as the
platform of the route it came in on: Threads envelopes (and a Graph `object` "threads") on
Threads' route, every other Graph object on the Meta app's (`instagram`) route. A body naming
the other platform's object is never turned into changes (MisroutedDelivery): otherwise the
holder of one secret could write the other platform's data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime
from typing import Any

from core.errors import ArchiverError
from workers.webhooks import strict_json

CHANGES = "changes"
MESSAGING = "messaging"
CHANGED_FIELDS = "changed_fields"
THREADS = "threads"
INSTAGRAM = "instagram"  # the Meta app's route: Instagram, and any other Graph object
_SHOWN = 40  # characters of a foreign `object` quoted in the reason
MAX_ID_CHARS = 64  # the archive's id and metric name columns (String(64))

# entry.time is seconds in `changes` samples and milliseconds in messaging samples
# (https://developers.facebook.com/docs/graph-api/webhooks/getting-started); no seconds value
# reaches 10**11 before the year 5000.
_MILLISECONDS_FROM = 10**11


class UnparseableDelivery(ArchiverError):
    """A signed body that is not JSON or not a known envelope; retrying cannot fix it."""


class MisroutedDelivery(ArchiverError):
    """A body verified by one platform's secret that names the other platform's object."""


@dataclass(frozen=True)
class Change:
    """One `changes[]`, `messaging[]` or Threads `values` item, with the entry it came in.

    `kind` is `changes`, `messaging`, `changed_fields` (subscriptions without values) or
    `threads`; `field` is Meta's field name (`messaging` for messaging items); `entry_time`
    is Unix seconds, whatever unit Meta used.
    """

    object: str
    entry_id: str
    entry_time: int | None
    kind: str
    field: str
    value: dict[str, Any] = dc_field(default_factory=dict, hash=False)

    @property
    def sent_at(self) -> datetime | None:
        """When Meta sent the notification (not when the change happened)."""
        return None if self.entry_time is None else datetime.fromtimestamp(self.entry_time, UTC)


def parse_body(body: bytes, *, platform: str) -> list[Change]:
    """Every change of a delivery that came in on `platform`'s route, in order; raise
    UnparseableDelivery for anything else, MisroutedDelivery for another platform's body."""
    try:
        doc = strict_json.loads(body)
    except strict_json.MalformedJSON as exc:
        msg = f"body {exc}"
        raise UnparseableDelivery(msg) from None
    if isinstance(doc, list):
        if not doc:
            msg = "body is an empty JSON array, expected webhook envelopes in it"
            raise UnparseableDelivery(msg)
        return [c for i, item in enumerate(doc) for c in _envelope(item, f"[{i}]", platform)]
    return _envelope(doc, "body", platform)


def _envelope(doc: Any, where: str, platform: str) -> list[Change]:
    if isinstance(doc, dict) and "entry" in doc:
        obj = doc.get("object")
        if isinstance(obj, str):
            _check_route(obj, f"object {obj[:_SHOWN]!r}", platform, where)
        return _graph_envelope(doc, where)
    if isinstance(doc, dict) and "values" in doc and ("topic" in doc or "target_id" in doc):
        _check_route(THREADS, "a Threads envelope", platform, where)
        return _threads_envelope(doc, where)
    keys = ", ".join(sorted(doc)[:8]) if isinstance(doc, dict) else type(doc).__name__
    msg = (
        f"unknown envelope at {where} ({keys}): expected {{object, entry[]}} "
        "or a Threads {topic, target_id, values}"
    )
    raise UnparseableDelivery(msg)


def _check_route(obj: str, what: str, platform: str, where: str) -> None:
    if (THREADS if obj == THREADS else INSTAGRAM) != platform:
        at = "" if where == "body" else f" (at {where})"
        msg = f"{what} arrived on the {platform} webhook{at}"
        raise MisroutedDelivery(msg)


def _graph_envelope(doc: dict[str, Any], where: str) -> list[Change]:
    obj, entries = doc.get("object"), doc["entry"]
    if not isinstance(obj, str) or not isinstance(entries, list):
        msg = f"{where}: `object` must be a string and `entry` a list"
        raise UnparseableDelivery(msg)
    changes: list[Change] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            msg = f"{where}.entry[{i}] is not an object"
            raise UnparseableDelivery(msg)
        changes += _entry_changes(obj, entry, f"{where}.entry[{i}]")
    return changes


def _entry_changes(obj: str, entry: dict[str, Any], where: str) -> list[Change]:
    entry_id, when = _text(entry.get("id")), _seconds(entry.get("time"))
    out = []
    for i, item in enumerate(_items(entry, CHANGES, where)):
        if not isinstance(item, dict) or not isinstance(item.get("field"), str):
            msg = f"{where}.changes[{i}] is not a {{field, value}} object"
            raise UnparseableDelivery(msg)
        out.append(Change(obj, entry_id, when, CHANGES, item["field"], _as_dict(item.get("value"))))
    for i, item in enumerate(_items(entry, MESSAGING, where)):
        if not isinstance(item, dict):
            msg = f"{where}.messaging[{i}] is not an object"
            raise UnparseableDelivery(msg)
        out.append(Change(obj, entry_id, when, MESSAGING, MESSAGING, item))
    for name in _items(entry, CHANGED_FIELDS, where):
        out.append(Change(obj, entry_id, when, CHANGED_FIELDS, _text(name), {}))
    return out


def _threads_envelope(doc: dict[str, Any], where: str) -> list[Change]:
    values = doc["values"]
    items = values if isinstance(values, list) else [values]
    target, when = _text(doc.get("target_id")), _seconds(doc.get("time"))
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("field"), str):
            msg = f"{where}.values[{i}] is not a {{field, value}} object"
            raise UnparseableDelivery(msg)
        out.append(
            Change(THREADS, target, when, THREADS, item["field"], _as_dict(item.get("value")))
        )
    return out


def _items(entry: dict[str, Any], key: str, where: str) -> list[Any]:
    items = entry.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        msg = f"{where}.{key} is not a list"
        raise UnparseableDelivery(msg)
    return items


def _seconds(value: Any) -> int | None:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, float) and math.isfinite(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    seconds = value // 1000 if value >= _MILLISECONDS_FROM else value
    return seconds if seconds < _MILLISECONDS_FROM else None


def identifier(value: Any) -> str | None:
    """A Meta id named in a change's value (a string or an integer, as Meta's samples vary),
    or None when it is missing or could not be one: empty, a bool, longer than the archive's
    id columns."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    text = str(value)
    return text if 0 < len(text) <= MAX_ID_CHARS else None


def _text(value: Any) -> str:
    # Ids are strings in Meta's samples; a number is the same id, so keep its digits.
    return "" if value is None else str(value)


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {"value": value}
