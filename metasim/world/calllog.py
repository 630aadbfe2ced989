"""The call log: every Meta call the simulator answered, readable from any thread."""

from __future__ import annotations

import threading
from typing import Any

from metasim.world.entities import Call


class CallLog:
    """Append-only list of Calls; `seq` numbers start at 1 and restart after clear()."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[Call] = []

    def record(self, **fields: Any) -> Call:
        with self._lock:
            call = Call(seq=len(self._calls) + 1, **fields)
            self._calls.append(call)
            return call

    def calls(
        self,
        *,
        kind: str | None = None,
        account: str | None = None,
        platform: str | None = None,
        since: int = 0,
    ) -> list[Call]:
        """Calls answered so far (oldest first), optionally filtered; `since` is a seq."""
        with self._lock:
            log = self._calls[since:]
        return [
            c
            for c in log
            if (kind is None or c.kind == kind)
            and (account is None or c.account == account)
            and (platform is None or c.platform == platform)
        ]

    def last_seq(self) -> int:
        """The seq of the latest call (0 if none): pass it as `since` to read only newer ones."""
        with self._lock:
            return len(self._calls)

    def clear(self) -> None:
        with self._lock:
            self._calls = []
