"""Durable, deduplicated storage of signed deliveries, committing concurrent requests together.

Group commit: each request hands its row to a queue and awaits a future. A writer takes every
row waiting (up to `max_batch`), inserts them with one INSERT ... ON CONFLICT DO NOTHING
RETURNING, commits, and resolves the futures of the whole batch in one loop callback, which
also hands the new rows' ids to the relay (`on_commit`). A commit
costs about the same for one row as for two hundred, so under load the cost per delivery falls
as batches grow; with no load a batch is one row and the latency is one commit.

Two writers share this front end (receiver.app picks one by backend):
- SQLite: one writer thread (sqlite3 blocks; SQLite has one write lock anyway), handing results
  back with one `loop.call_soon_threadsafe` per batch.
- PostgreSQL: writer tasks on the event loop itself, on psycopg's async connection
  (receiver.pgwriter), because a writer thread costs the loop its GIL hand-offs.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.errors import StoreUnavailable
from jobqueue.outbox import mark_enqueued
from receiver.inserts import Key, insert_sqlite, sqlite_statement

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 256


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One signed delivery as it will be stored; `headers` holds the relevant ones only."""

    platform: str
    body: bytes
    body_sha256: str
    headers: dict[str, str]
    received_at: datetime


Item = tuple[DeliveryRow, "asyncio.Future[bool]"]
OnCommit = Callable[[list[int]], None]  # the ids of the rows a commit stored


def unique_rows(rows: Sequence[DeliveryRow]) -> tuple[list[DeliveryRow], dict[Key, int]]:
    """Rows to send (a body repeated inside one batch goes once) and each key's first index."""
    first: dict[Key, int] = {}
    unique = []
    for index, row in enumerate(rows):
        key = (row.platform, row.body_sha256)
        if key not in first:
            first[key] = index
            unique.append(row)
    return unique, first


def outcomes(
    rows: Sequence[DeliveryRow], first: dict[Key, int], new: Mapping[Key, int]
) -> list[bool]:
    """True for a row that was inserted now; False for a duplicate (earlier or in-batch)."""
    result = []
    for index, row in enumerate(rows):
        key = (row.platform, row.body_sha256)
        result.append(first[key] == index and key in new)
    return result


def describe(exc: BaseException) -> str:
    """The driver's own message, never SQLAlchemy's (which quotes statement parameters)."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        return f"{type(exc.orig).__name__}: {exc.orig}".strip()
    if isinstance(exc, sa.exc.SQLAlchemyError):
        return type(exc).__name__
    return f"{type(exc).__name__}: {exc}".strip()


def _expire(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_exception(StoreUnavailable("database did not commit in time"))


class DeliveryArchive:
    """The request-facing half: `store()` waits for a writer to commit the row.

    `commits` and `rows_stored` (updated on the loop) show how well batching works.
    """

    def __init__(
        self,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        timeout: float = 10.0,
        on_commit: OnCommit | None = None,
    ) -> None:
        if max_batch < 1:
            msg = "max_batch must be at least 1"
            raise ValueError(msg)
        self.max_batch = max_batch
        self.timeout = timeout
        self.on_commit = on_commit  # called on the loop with the ids a batch stored, if any
        self.commits = 0
        self.rows_stored = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False
        self._down = False  # the database is failing: log the outage once, not every batch

    def start(self) -> None:
        """Start the writers; call from the event loop that will call `store()`."""
        if self._loop is not None:
            msg = "archive already started"
            raise RuntimeError(msg)
        self._loop = asyncio.get_running_loop()
        self._running = True
        self._start_writers()

    async def store(self, row: DeliveryRow) -> bool:
        """Commit `row`; True if it is new, False if the same body was stored before.

        Raises StoreUnavailable when the database fails or does not commit within `timeout`.
        """
        loop = self._loop
        if loop is None or not self._running:
            msg = "archive is not running"
            raise StoreUnavailable(msg)
        future: asyncio.Future[bool] = loop.create_future()
        self._submit((row, future))
        timer = loop.call_later(self.timeout, _expire, future)
        try:
            return await future
        finally:
            timer.cancel()

    async def aclose(self) -> None:
        """Commit what is queued, then stop the writers and close their connections."""
        raise NotImplementedError

    async def mark_enqueued(self, ids: list[int]) -> None:
        """`received` rows among `ids` become `enqueued`: the relay's mark once Redis has them."""
        raise NotImplementedError

    def _start_writers(self) -> None:
        raise NotImplementedError

    def _submit(self, item: Item) -> None:
        raise NotImplementedError

    # --- results, on the event loop ---------------------------------------------------------

    def _resolve(
        self, futures: list[asyncio.Future[bool]], stored: list[bool], ids: list[int]
    ) -> None:
        self.commits += 1
        self.rows_stored += len(ids)
        for future, new in zip(futures, stored, strict=True):
            if not future.done():
                future.set_result(new)
        if self.on_commit is not None and ids:
            self.on_commit(ids)

    @staticmethod
    def _fail(futures: list[asyncio.Future[bool]]) -> None:
        for future in futures:
            if not future.done():
                future.set_exception(StoreUnavailable("database unavailable"))

    def _note_failure(self, exc: BaseException) -> None:
        # No traceback and no SQLAlchemy statement text: its parameters hold signature headers.
        if not self._down:
            self._down = True
            log.warning("database writes fail, answering 503: %s", describe(exc))

    def _note_success(self) -> None:
        if self._down:
            self._down = False
            log.info("database writes succeed again")


class ThreadedArchive(DeliveryArchive):
    """Writer threads on a blocking engine (SQLite), fed through a thread-safe queue."""

    def __init__(
        self,
        engine: Engine,
        *,
        writers: int = 1,
        max_batch: int = DEFAULT_MAX_BATCH,
        timeout: float = 10.0,
        on_commit: OnCommit | None = None,
    ) -> None:
        super().__init__(max_batch=max_batch, timeout=timeout, on_commit=on_commit)
        self.engine = engine
        self.writers = writers
        self._stmt = sqlite_statement()
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def _start_writers(self) -> None:
        for number in range(self.writers):
            thread = threading.Thread(target=self._run, name=f"archive-writer-{number}")
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def _submit(self, item: Item) -> None:
        self._queue.put(item)

    async def mark_enqueued(self, ids: list[int]) -> None:
        await asyncio.to_thread(mark_enqueued, self.engine, ids)

    async def aclose(self) -> None:
        self._running = False
        threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(None)  # after everything already queued
        for thread in threads:
            await asyncio.to_thread(thread.join)

    def _run(self) -> None:
        conn: Connection | None = None
        try:
            while (batch := self._take()) is not None:
                conn = self._write(conn, batch)
        finally:
            if conn is not None:
                conn.close()

    def _take(self) -> list[Item] | None:
        """Block for one row, then take whatever else is already waiting (up to max_batch)."""
        item = self._queue.get()
        if item is None:
            return None
        batch = [item]
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # seen on this writer's next take, after this batch
                break
            batch.append(item)
        return batch

    def _write(self, conn: Connection | None, batch: list[Item]) -> Connection | None:
        """One transaction for the batch; the connection is kept while it works."""
        loop = self._loop
        assert loop is not None
        futures = [future for _, future in batch]
        rows = [row for row, _ in batch]
        try:
            if conn is None:
                conn = self.engine.connect()
            unique, first = unique_rows(rows)
            with conn.begin():
                new = insert_sqlite(conn, self._stmt, unique)
        except Exception as exc:  # any failure must reach the waiting requests as a 503
            _discard(conn)
            self._note_failure(exc)
            loop.call_soon_threadsafe(self._fail, futures)
            return None
        self._note_success()
        stored = outcomes(rows, first, new)
        loop.call_soon_threadsafe(self._resolve, futures, stored, list(new.values()))
        return conn


def _discard(conn: Connection | None) -> None:
    """Drop a connection after a failure; the next batch opens a fresh one."""
    if conn is None:
        return
    try:
        conn.invalidate()
        conn.close()
    except Exception:  # closing a broken connection may fail too; it is gone either way
        log.debug("closing a failed connection raised")
