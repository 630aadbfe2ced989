"""Column types shared by the tables.

The scrubbed types (and PackedJSON) scrub what is written to them (core.redaction), so an
error, a reason or a raw answer that quotes a token is stored masked whichever code path
writes it: ORM objects, Core INSERTs and UPDATEs alike.
"""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

from core.redaction import scrub_json, scrub_optional


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite keeps no zone of its own)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            msg = "naive datetime given; the archiver stores UTC only"
            raise ValueError(msg)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw SQLite text, e.g. from a view
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class ScrubbedText(sa.TypeDecorator[str]):
    """TEXT for errors, problems and reasons: scrubbed on the way in."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return scrub_optional(value)


class ScrubbedJSON(sa.TypeDecorator[Any]):
    """JSON (JSONB on PostgreSQL) for Meta's answers kept as `raw`: every string scrubbed,
    every secret-named key's value masked, on the way in."""

    impl = sa.JSON
    cache_ok = True
    should_evaluate_none = True  # as sa.JSON: None is stored as JSON null, as before

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(sa.JSON())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return scrub_json(value)


# Row ids of the tables that grow with the archive. SQLite's INTEGER PRIMARY KEY is its 64-bit
# rowid already (and a BIGINT one would not autoincrement there).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class _SQLiteTimes(sa.TypeDecorator[list[Any]]):
    """A list of UTC timestamps as JSON text, each spelled as SQLite spells a DATETIME, so the
    views can compare and date() them like any timestamp column."""

    impl = sa.JSON(none_as_null=True)
    cache_ok = True

    def process_bind_param(self, value: list[datetime | None] | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return [None if t is None else _sqlite_time(t) for t in value]

    def process_result_value(self, value: Any, dialect: Dialect) -> list[datetime | None] | None:
        if value is None:
            return None
        return [None if t is None else datetime.fromisoformat(t).replace(tzinfo=UTC) for t in value]


def _sqlite_time(value: datetime) -> str:
    if value.tzinfo is None:
        msg = "naive datetime given; the archiver stores UTC only"
        raise ValueError(msg)
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


# A snapshot's values side by side: native arrays on PostgreSQL, JSON text on SQLite.
IntArray = postgresql.ARRAY(sa.Integer()).with_variant(sa.JSON(), "sqlite")
FloatArray = postgresql.ARRAY(sa.Float()).with_variant(sa.JSON(), "sqlite")
TimeArray = postgresql.ARRAY(sa.DateTime(timezone=True)).with_variant(_SQLiteTimes(), "sqlite")
TextArray = postgresql.ARRAY(sa.Text()).with_variant(sa.JSON(none_as_null=True), "sqlite")


# --- Meta's raw answers, compressed ------------------------------------------------------------
# A body is stored as one format byte, the dictionary its compact JSON is deflated with
# (raw_dictionary_1.txt: typical answers of each kind), which shrinks a story capture's 2.3 KB
# to a few hundred bytes. A dictionary, once released, never changes: a new one gets the next
# format byte, so every stored body stays readable.
RAW_FORMAT = 1
# Keys of Meta's insights entries that repeat the same text in every answer (a metric's title
# and description): left out of the stored raw, which is otherwise kept as received.
_CONSTANT_KEYS = frozenset({"title", "description"})


@cache
def raw_dictionary(version: int) -> bytes:
    return (files("models") / f"raw_dictionary_{version}.txt").read_bytes()


def pack_json_text(text: str) -> bytes:
    """Compact JSON text as stored (see RAW_FORMAT); the caller has scrubbed it."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zdict=raw_dictionary(RAW_FORMAT))
    return bytes([RAW_FORMAT]) + deflate.compress(text.encode()) + deflate.flush()


def compact_raw(raw: Any) -> Any:
    """`raw` without Meta's constant strings (see _CONSTANT_KEYS), at any depth."""
    if isinstance(raw, dict):
        named = "name" in raw
        return {
            key: compact_raw(value)
            for key, value in raw.items()
            if not (named and key in _CONSTANT_KEYS)
        }
    if isinstance(raw, list):
        return [compact_raw(item) for item in raw]
    return raw


def pack_json(value: Any) -> bytes:
    """`value` compacted, scrubbed (core.redaction) and packed."""
    text = json.dumps(scrub_json(compact_raw(value)), separators=(",", ":"), ensure_ascii=False)
    return pack_json_text(text)


def unpack_json(blob: bytes | memoryview) -> Any:
    data = bytes(blob)
    inflate = zlib.decompressobj(-15, zdict=raw_dictionary(data[0]))
    return json.loads(inflate.decompress(data[1:]) + inflate.flush())


class PackedJSON(sa.TypeDecorator[Any]):
    """Meta's answers kept as `snapshot_raw.body`: compacted, scrubbed, then compressed
    (BYTEA / BLOB).
    SQL sees bytes; `models.snapshots.raw_body` and `archiver db raw` read them back."""

    impl = sa.LargeBinary
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> bytes | None:
        return None if value is None else pack_json(value)

    def process_result_value(self, value: bytes | None, dialect: Dialect) -> Any:
        return None if value is None else unpack_json(value)
