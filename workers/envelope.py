"""Pure parsing of Meta webhook bodies (Instagram `entry[]` and Threads envelopes)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from models.errors import ArchiverError


class UnparseableDelivery(ArchiverError):
    """A signed body that is not JSON or not a known envelope; retrying cannot fix it."""


@dataclass(frozen=True)
class Change:
    """One `changes[]` or `messaging[]` item, with the entry it came in."""

    object: str
    entry_id: str
    entry_time: int | None
    kind: str  # changes | messaging | threads
    field: str
    value: dict[str, Any] = dc_field(default_factory=dict)


def _seconds(value: Any) -> int | None:
    # Messaging samples carry milliseconds; everything else seconds (META-API.md §1).
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return int(value / 1000) if value > 10**11 else int(value)


def _entry_changes(obj: str, entry: dict[str, Any]) -> list[Change]:
    entry_id, when = str(entry.get("id", "")), _seconds(entry.get("time"))
    out = [
        Change(obj, entry_id, when, "changes", str(c.get("field", "")), _as_dict(c.get("value")))
        for c in entry.get("changes") or []
        if isinstance(c, dict)
    ]
    out += [
        Change(obj, entry_id, when, "messaging", "messaging", m)
        for m in entry.get("messaging") or []
        if isinstance(m, dict)
    ]
    out += [
        Change(obj, entry_id, when, "changed_fields", str(name), {})
        for name in entry.get("changed_fields") or []
    ]
    return out


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {"value": value}


def _threads_changes(doc: dict[str, Any]) -> list[Change]:
    values = doc.get("values")
    items = values if isinstance(values, list) else [values]
    target, when = str(doc.get("target_id", "")), _seconds(doc.get("time"))
    return [
        Change(
            "threads", target, when, "threads", str(v.get("field", "")), _as_dict(v.get("value"))
        )
        for v in items
        if isinstance(v, dict)
    ]


def _document_changes(doc: Any) -> list[Change]:
    if isinstance(doc, dict) and isinstance(doc.get("entry"), list):
        obj = str(doc.get("object", ""))
        return [c for e in doc["entry"] if isinstance(e, dict) for c in _entry_changes(obj, e)]
    if isinstance(doc, dict) and "values" in doc and "topic" in doc:
        return _threads_changes(doc)
    msg = "unknown envelope: expected {object, entry[]} or a Threads {topic, values}"
    raise UnparseableDelivery(msg)


def parse_body(body: bytes) -> list[Change]:
    """Every change of a delivery, bare or array-wrapped (Meta's samples wrap in a list)."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"body is not JSON: {exc}"
        raise UnparseableDelivery(msg) from None
    docs = doc if isinstance(doc, list) else [doc]
    if not docs:
        msg = "empty JSON array"
        raise UnparseableDelivery(msg)
    return [change for d in docs for change in _document_changes(d)]
