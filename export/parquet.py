"""Parquet exports through pyarrow (the `parquet` extra), one row group per batch.

Columns are typed from the view: timestamps as timestamp[us, UTC], ids and versions as
int64, values as float64, the rest as strings; nulls are Parquet nulls. The writer never
seeks, so the file can go to a pipe; its footer is written when the last batch is in.
https://arrow.apache.org/docs/python/generated/pyarrow.parquet.ParquetWriter.html
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, BinaryIO

from core.errors import ConfigError
from export.query import Kind
from export.stream import Batch

MISSING = "parquet needs pyarrow: pip install 'meta-insights-archiver[parquet]'"


class ParquetUnavailable(ConfigError):
    """pyarrow is not installed (exit 2): the other formats need nothing extra."""


def require_pyarrow() -> Any:
    """The pyarrow module, or ParquetUnavailable with the line that says how to get it."""
    try:
        import pyarrow
        import pyarrow.parquet  # the submodule must be importable too
    except ImportError:
        raise ParquetUnavailable(MISSING) from None
    return pyarrow


def arrow_schema(columns: tuple[tuple[str, Kind], ...]) -> Any:
    pa_ = require_pyarrow()
    types = {
        "timestamp": pa_.timestamp("us", tz="UTC"),
        "int": pa_.int64(),
        "float": pa_.float64(),
        "text": pa_.string(),
    }
    return pa_.schema([(name, types[kind]) for name, kind in columns])


def write_parquet(
    columns: tuple[tuple[str, Kind], ...],
    rows: Iterable[Batch],
    out: BinaryIO,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Each batch becomes a row group written at once; a batch is not kept once written."""
    pa_ = require_pyarrow()
    schema = arrow_schema(columns)
    written = 0
    with pa_.parquet.ParquetWriter(out, schema, compression="zstd") as writer:
        for batch in rows:
            cells = zip(*batch, strict=True)  # row tuples to column tuples
            arrays = [
                pa_.array(column, type=kind)
                for column, kind in zip(cells, schema.types, strict=True)
            ]
            table = pa_.Table.from_arrays(arrays, schema=schema)
            writer.write_table(table)
            written += len(batch)
            if progress is not None:
                progress(written)
    return written
