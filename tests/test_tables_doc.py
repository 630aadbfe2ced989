"""docs/tables.md is generated from the models: every column described, the page current."""

from __future__ import annotations

from pathlib import Path

from models.tables import metadata
from models.tables_doc import COLUMNS, TABLES, render

PAGE = Path(__file__).resolve().parent.parent / "docs" / "tables.md"


def test_every_table_and_column_is_described() -> None:
    """A column added to a model without a description fails here, naming it."""
    assert set(TABLES) == set(metadata.tables) == set(COLUMNS)
    for name, table in metadata.tables.items():
        columns = {column.name for column in table.columns}
        assert columns - set(COLUMNS[name]) == set(), f"{name}: columns without a description"
        assert set(COLUMNS[name]) - columns == set(), f"{name}: descriptions of no column"
        assert all(text.strip() for text in COLUMNS[name].values())


def test_page_is_current() -> None:
    """Regenerating gives the committed page (`python -m models.tables_doc > docs/tables.md`)."""
    assert PAGE.read_text(encoding="utf-8") == render(), "docs/tables.md is stale: regenerate it"


def test_page_shows_types_and_nullability() -> None:
    """Types are PostgreSQL's and nullability comes from the schema, not from the prose."""
    page = render()
    assert "| `ig_token` | TEXT | no |" in page
    assert "| `body` | BYTEA | no |" in page
    assert "| `expires_at` | TIMESTAMP WITH TIME ZONE | yes |" in page
    assert "References `account.id`." in page
