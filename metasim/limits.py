"""Throttling (per-account BUC budget, per-app budget) and injected faults.

Meta counts calls per app + app-user pair over a rolling window and reports usage in whole
percentages (X-App-Usage, X-Business-Use-Case-Usage); `estimated_time_to_regain_access` is in
minutes (https://developers.facebook.com/docs/graph-api/overview/rate-limiting). Here a window
is fixed, `window_minutes` long, and a "minute" lasts `minute_seconds` so tests can run a
throttle cycle in a second. Not thread-safe on its own: the World calls it under its lock.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Window:
    """Calls counted in the current window of one key (an account, or the app)."""

    start: float = 0.0
    count: int = 0


@dataclass(frozen=True)
class Charge:
    """The outcome of one call against a budget."""

    percent: int  # call_count, 0..100
    regain_minutes: int  # 0 unless over budget
    over: bool

    def usage(self) -> dict[str, int]:
        """The figures of one usage header entry; time and CPU follow the call count."""
        return {
            "call_count": self.percent,
            "total_cputime": self.percent * 2 // 5,
            "total_time": self.percent * 3 // 5,
        }


class Limiter:
    """Fixed-window call budgets keyed by account id (and "app")."""

    def __init__(self) -> None:
        self.windows: dict[str, Window] = {}

    def clear(self) -> None:
        self.windows.clear()

    def charge(
        self, key: str, budget: int, now: float, window_seconds: float, minute_seconds: float
    ) -> Charge:
        """Count one call unless the key is over budget; say how full the window is."""
        window = self.windows.get(key)
        if window is None or now - window.start >= window_seconds:
            window = self.windows[key] = Window(start=now)
        budget = max(budget, 1)
        if window.count >= budget:
            left = window.start + window_seconds - now
            return Charge(100, max(1, math.ceil(left / minute_seconds)), over=True)
        window.count += 1
        return Charge(min(100, window.count * 100 // budget), 0, over=False)

    def peek(self, key: str, budget: int, now: float, window_seconds: float) -> Charge:
        """The current usage of a key without counting a call (for answers before charging)."""
        window = self.windows.get(key)
        if window is None or now - window.start >= window_seconds:
            return Charge(0, 0, over=False)
        return Charge(min(100, window.count * 100 // max(budget, 1)), 0, over=False)


@dataclass
class Fault:
    """A failure to inject: an error (Meta `code` and/or HTTP `status`) and/or a delay.

    It applies to the next `count` matching calls, or until the world clock passes `until`,
    whichever ends first; `account` and `kind` (a route kind such as "insights") narrow it.
    """

    id: int
    code: int | None = None
    status: int | None = None
    delay: float = 0.0
    count: int | None = None
    until: float | None = None
    account: str | None = None
    kind: str | None = None
    message: str | None = None
    subcode: int | None = None
    is_transient: bool | None = None
    regain_minutes: int = 1
    hits: int = field(default=0)

    @property
    def is_error(self) -> bool:
        return self.code is not None or self.status is not None

    def live(self, now: float) -> bool:
        if self.count is not None and self.hits >= self.count:
            return False
        return self.until is None or now < self.until

    def matches(self, account: str | None, kind: str) -> bool:
        if self.account is not None and self.account != account:
            return False
        return self.kind is None or self.kind == kind

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultBook:
    """The injected faults, first added first served."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self.next_id = 1

    def add(self, now: float, *, seconds: float | None = None, **spec: Any) -> Fault:
        if spec.get("count") is None and seconds is None:
            spec["count"] = 1
        until = now + seconds if seconds is not None else None
        fault = Fault(id=self.next_id, until=until, **spec)
        self.next_id += 1
        self.faults.append(fault)
        return fault

    def take(self, account: str | None, kind: str, now: float) -> Fault | None:
        """The first live fault matching this call, counted as hit; spent ones are dropped."""
        self.faults = [f for f in self.faults if f.live(now)]
        for fault in self.faults:
            if fault.matches(account, kind):
                fault.hits += 1
                return fault
        return None

    def clear(self) -> None:
        self.faults.clear()
