"""The export's file formats, written batch by batch to a binary stream.

Every format keeps the view's column names and order; timestamps are UTC ISO 8601, nulls stay
nulls (CSV: an empty field; JSON lines: null), numbers stay numbers. A writer holds one batch
at a time: it encodes a batch, writes it out, and lets it go before asking for the next.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import BinaryIO, Protocol

from sqlalchemy.engine import Engine

from export.query import FORMATS, ExportQuery, InvalidExport, Kind
from export.stream import Batch, batches

MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}

Progress = Callable[[int], None]


class Writer(Protocol):
    def __call__(
        self,
        columns: tuple[tuple[str, Kind], ...],
        rows: Iterable[Batch],
        out: BinaryIO,
        progress: Progress | None,
    ) -> int: ...


def media_type(fmt: str) -> str:
    """The Content-Type of an export in `fmt`."""
    return MEDIA_TYPES[check_format(fmt)]


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        msg = f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}"
        raise InvalidExport(msg)
    return fmt


def write_export(
    engine: Engine,
    query: ExportQuery,
    fmt: str,
    out: BinaryIO,
    *,
    progress: Progress | None = None,
) -> int:
    """Stream the rows of `query` to `out` in `fmt`; the number of rows written.

    Checks the format and the query (InvalidExport) before the first byte is written.
    """
    writer = _writer(check_format(fmt))
    spec = query.spec
    return writer(spec.columns, batches(engine, query), out, progress)


def _writer(fmt: str) -> Writer:
    if fmt == "parquet":
        from export.parquet import write_parquet

        return write_parquet
    return write_csv if fmt == "csv" else write_jsonl


def write_csv(
    columns: tuple[tuple[str, Kind], ...],
    rows: Iterable[Batch],
    out: BinaryIO,
    progress: Progress | None = None,
) -> int:
    """RFC 4180 CSV (CRLF line ends, the csv module's quoting) with a header row."""
    buffer = io.StringIO()
    sheet = csv.writer(buffer)
    sheet.writerow([name for name, _ in columns])
    written = 0
    for batch in rows:
        sheet.writerows([_csv_cell(cell) for cell in row] for row in batch)
        written = _flush(buffer, out, written + len(batch), progress)
    _flush(buffer, out, written, None)
    return written


def write_jsonl(
    columns: tuple[tuple[str, Kind], ...],
    rows: Iterable[Batch],
    out: BinaryIO,
    progress: Progress | None = None,
) -> int:
    """One JSON object per line, keys in the view's column order."""
    names = [name for name, _ in columns]
    buffer = io.StringIO()
    written = 0
    for batch in rows:
        for row in batch:
            record = dict(zip(names, map(_json_cell, row), strict=True))
            buffer.write(json.dumps(record, ensure_ascii=False, allow_nan=False))
            buffer.write("\n")
        written = _flush(buffer, out, written + len(batch), progress)
    return written


def _flush(buffer: io.StringIO, out: BinaryIO, written: int, progress: Progress | None) -> int:
    out.write(buffer.getvalue().encode("utf-8"))
    buffer.seek(0)
    buffer.truncate()
    if progress is not None:
        progress(written)
    return written


def _json_cell(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return int(value)  # counts read 42, not 42.0, whichever database stored them
    return value


def _csv_cell(value: object) -> object:
    return "" if value is None else _json_cell(value)
