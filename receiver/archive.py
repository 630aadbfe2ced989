"""Durable, deduplicated storage of signed deliveries, with the commits of concurrent requests
batched together (group commit).

Each request hands a row to a queue and awaits a future. A writer thread drains up to
`max_batch` waiting rows, inserts them with one multi-row INSERT ... ON CONFLICT DO NOTHING
RETURNING, commits, and resolves every future of the batch with a single
`loop.call_soon_threadsafe`. A commit costs about the same for 1 row as for 200, so under load
the cost per delivery falls as the batches grow; with no load a batch is one row and the
latency is one commit. No ORM on this path: SQLAlchemy Core with a cached statement.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from models.errors import StoreUnavailable
from receiver.inserts import BatchInsert, batch_insert_for

log = logging.getLogger(__name__)

_STOP = object()
DEFAULT_MAX_BATCH = 256


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One signed delivery as it will be stored; `headers` holds the relevant ones only."""

    platform: str
    body: bytes
    body_sha256: str
    headers: dict[str, str]
    received_at: datetime


_Item = tuple[DeliveryRow, "asyncio.Future[bool]"]


def insert_batch(conn: Connection, insert: BatchInsert, rows: Sequence[DeliveryRow]) -> list[bool]:
    """Insert and commit `rows`; True for each row that is new, False for each duplicate.

    A body repeated inside the batch is sent once; its later copies are duplicates.
    """
    first: dict[tuple[str, str], int] = {}
    unique = []
    for index, row in enumerate(rows):
        key = (row.platform, row.body_sha256)
        if key not in first:
            first[key] = index
            unique.append(row)
    with conn.begin():
        inserted = insert(conn, unique)
    return [
        first[key] == index and key in inserted
        for index, key in enumerate((row.platform, row.body_sha256) for row in rows)
    ]


def _expire(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_exception(StoreUnavailable("database did not commit in time"))


class DeliveryArchive:
    """Group-committing writer threads in front of the webhook_delivery table.

    `start()` and `store()` run on the event loop; the writers only touch the loop through
    `call_soon_threadsafe`. `commits` and `rows_stored` let tests and the benchmark see how
    well the batching works.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        writers: int = 1,
        max_batch: int = DEFAULT_MAX_BATCH,
        timeout: float = 10.0,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        if writers < 1 or max_batch < 1:
            msg = "writers and max_batch must be at least 1"
            raise ValueError(msg)
        self.engine = engine
        self.writers = writers
        self.max_batch = max_batch
        self.timeout = timeout
        self.on_commit = on_commit  # called on the loop after a batch that stored new rows
        self.commits = 0
        self.rows_stored = 0
        self._insert = batch_insert_for(engine)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._down = False  # the database is failing: log the outage once, not every batch

    def start(self) -> None:
        """Start the writer threads; call from the event loop that will call `store()`."""
        if self._loop is not None:
            msg = "archive already started"
            raise RuntimeError(msg)
        self._loop = asyncio.get_running_loop()
        for number in range(self.writers):
            thread = threading.Thread(
                target=self._run, name=f"archive-writer-{number}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    async def store(self, row: DeliveryRow) -> bool:
        """Commit `row`; True if it is new, False if the same body was stored before.

        Raises StoreUnavailable when the database fails or does not commit within `timeout`.
        """
        loop = self._loop
        if loop is None or not self._threads:
            msg = "archive is not running"
            raise StoreUnavailable(msg)
        future: asyncio.Future[bool] = loop.create_future()
        self._queue.put((row, future))
        timer = loop.call_later(self.timeout, _expire, future)
        try:
            return await future
        finally:
            timer.cancel()

    async def aclose(self) -> None:
        """Let the writers finish what is queued, then stop them and close their connections."""
        threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(_STOP)
        for thread in threads:
            await asyncio.to_thread(thread.join)

    # --- writer threads ---------------------------------------------------------------------

    def _run(self) -> None:
        conn: Connection | None = None
        try:
            while (batch := self._take()) is not None:
                conn = self._write(conn, batch)
        finally:
            _discard(conn)  # not back to the pool: prepare() customised it for this writer

    def _take(self) -> list[_Item] | None:
        """Block for one row, then take whatever else is already waiting (up to max_batch)."""
        item = self._queue.get()
        if item is _STOP:
            return None
        batch: list[_Item] = [item]  # type: ignore[list-item]
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self._queue.put(_STOP)  # seen on this writer's next take, after this batch
                break
            batch.append(item)  # type: ignore[arg-type]
        return batch

    def _write(self, conn: Connection | None, batch: list[_Item]) -> Connection | None:
        """One transaction for the batch; the connection is kept for the next one if healthy."""
        futures = [future for _, future in batch]
        loop = self._loop
        assert loop is not None
        try:
            if conn is None:
                conn = self._insert.prepare(self.engine.connect())
            outcomes = insert_batch(conn, self._insert, [row for row, _ in batch])
        except Exception as exc:  # any failure must reach the waiting requests as a 503
            _discard(conn)
            self._note_failure(exc)
            loop.call_soon_threadsafe(self._fail, futures)
            return None
        with self._lock:
            self.commits += 1
            self.rows_stored += sum(outcomes)
        if self._down:
            self._down = False
            log.info("database writes succeed again")
        loop.call_soon_threadsafe(self._resolve, futures, outcomes)
        return conn

    def _note_failure(self, exc: Exception) -> None:
        # No traceback and no SQLAlchemy statement text: its parameters hold signature headers.
        if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | OSError):
            if not self._down:
                self._down = True
                log.warning("database unavailable, answering 503: %s", describe(exc))
            return
        log.error("archive insert failed, answering 503: %s", describe(exc))

    # --- on the event loop ------------------------------------------------------------------

    def _resolve(self, futures: list[asyncio.Future[bool]], outcomes: list[bool]) -> None:
        for future, stored in zip(futures, outcomes, strict=True):
            if not future.done():
                future.set_result(stored)
        if self.on_commit is not None and any(outcomes):
            self.on_commit()

    @staticmethod
    def _fail(futures: list[asyncio.Future[bool]]) -> None:
        for future in futures:
            if not future.done():
                future.set_exception(StoreUnavailable("database unavailable"))


def describe(exc: BaseException) -> str:
    """The driver's own message, never SQLAlchemy's (which quotes statement parameters)."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        return f"{type(exc.orig).__name__}: {exc.orig}".strip()
    if isinstance(exc, sa.exc.SQLAlchemyError):
        return type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def _discard(conn: Connection | None) -> None:
    """Drop a connection after a failure; the next batch opens a fresh one."""
    if conn is None:
        return
    try:
        conn.invalidate()
        conn.close()
    except Exception:  # closing a broken connection may fail too; it is gone either way
        log.debug("closing a failed connection raised")
