"""Injected faults: errors, delays and garbage answers for the next N calls or for a while."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Final

# A 200 whose body is not JSON (cut short, as a dropped connection leaves it) or is JSON but
# not an object: what a client must treat as a failed answer and retry, never as data.
GARBAGE: Final = {
    "not_json": ('{"data":[{"id":"1790000000000', "application/json"),
    "not_object": ("[]", "application/json"),
}


# An error that quotes a token back (metasim.tokens.quoting_error): the caller's own token,
# an older token of the same owner, or the request's URL with its `access_token=`.
QUOTES: Final = ("token", "old_token", "url")


@dataclass
class Fault:
    """A failure to inject: an error (Meta `code` and/or HTTP `status`), a `delay`, and/or a
    `garbage` 200 (a GARBAGE key). With `quote` (one of QUOTES) the error's message quotes a
    token: `message`, if given, says where with `{quote}`.

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
    garbage: str | None = None
    quote: str | None = None
    hits: int = field(default=0)

    def __post_init__(self) -> None:
        if self.garbage is not None and self.garbage not in GARBAGE:
            msg = f"garbage must be one of {', '.join(GARBAGE)}, not {self.garbage!r}"
            raise ValueError(msg)
        if self.quote is not None and self.quote not in QUOTES:
            msg = f"quote must be one of {', '.join(QUOTES)}, not {self.quote!r}"
            raise ValueError(msg)
        if self.quote is not None and self.message is not None and "{quote}" not in self.message:
            msg = "a message that quotes a token must say where: put {quote} in it"
            raise ValueError(msg)

    @property
    def is_error(self) -> bool:
        return self.code is not None or self.status is not None or self.quote is not None

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
