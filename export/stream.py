"""Rows of a SELECT in batches, holding one batch at a time whatever the result's size.

On PostgreSQL `stream_results` opens a server-side cursor (psycopg's named cursor), so the
server sends `yield_per` rows per round trip instead of the whole result at once. SQLite's
cursor steps through the result lazily by itself; `yield_per` fetches it in the same batches.
https://docs.sqlalchemy.org/en/20/core/connections.html#using-server-side-cursors-a-k-a-stream-results
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy.engine import Engine

from export.query import ExportQuery, build_select, resolve_account

BATCH_ROWS = 10_000

Batch = Sequence[tuple[object, ...]]


def batches(engine: Engine, query: ExportQuery, *, size: int = BATCH_ROWS) -> Iterator[Batch]:
    """The export's rows, `size` at a time, in the view's order."""
    with engine.connect() as conn:
        account_id = resolve_account(conn, query.account) if query.account else None
        stmt = build_select(query, account_id)
        streaming = conn.execution_options(stream_results=True, yield_per=size)
        result = streaming.execute(stmt)
        for part in result.partitions(size):
            yield [tuple(row) for row in part]
