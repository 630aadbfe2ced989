"""Column types that scrub what is written to them (core.redaction), so an error, a reason or
a `raw` body that quotes a token is stored masked whichever code path writes it: ORM objects,
Core INSERTs and UPDATEs alike. The column's schema type is unchanged (TEXT, JSON / JSONB).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

from core.redaction import scrub_json, scrub_optional


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
