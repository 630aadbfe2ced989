"""Injected faults: errors, delays and garbage answers for the next N calls or for a while."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Final

from metasim.world.state import WorldState

# A 200 whose body is not JSON (cut short, as a dropped connection leaves it) or is JSON but
# not an object: what a client must treat as a failed answer and retry, never as data.
GARBAGE: Final = {
    "not_json": ('{"data":[{"id":"1790000000000', "application/json"),
    "not_object": ("[]", "application/json"),
}


# An error that quotes a token back (metasim.api.pipeline.quoting_error): the caller's own token,
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


class Faults:
    """The injected faults, first added first served, on the world's clock."""

    def __init__(self, state: WorldState) -> None:
        self.state = state
        self.reset()

    def reset(self) -> None:
        """Forget every fault; ids start again at 1."""
        self.book: list[Fault] = []
        self.next_id = 1

    def add(
        self,
        *,
        code: int | None = None,
        status: int | None = None,
        delay: float = 0.0,
        count: int | None = None,
        seconds: float | None = None,
        account: str | None = None,
        kind: str | None = None,
        message: str | None = None,
        subcode: int | None = None,
        is_transient: bool | None = None,
        regain_minutes: int = 1,
        garbage: str | None = None,
        quote: str | None = None,
    ) -> Fault:
        """Inject a fault: a Meta error `code` and/or HTTP `status`, and/or a `delay` (s), or
        a `garbage` 200 ("not_json" or "not_object"), for the next `count` matching calls
        (default 1) or for `seconds` of world time; `account` (IG user or Threads user id)
        and `kind` (route kind) narrow it. `quote` ("token", "old_token", "url") makes the
        error's message quote a token back (metasim.api.pipeline.quoting_error)."""
        with self.state.lock:
            now = self.state.clock()
            fault = Fault(
                id=self.next_id, until=None if seconds is None else now + seconds, code=code,
                status=status, delay=delay, count=1 if count is None and seconds is None else count,
                account=None if account is None else str(account), kind=kind, message=message,
                subcode=subcode, is_transient=is_transient, regain_minutes=regain_minutes,
                garbage=garbage, quote=quote,
            )  # fmt: skip
            self.next_id += 1
            self.book.append(fault)
            return fault

    def take(self, account: str | None, kind: str) -> Fault | None:
        """The first live fault matching this call, counted as hit; spent ones are dropped."""
        with self.state.lock:
            if not self.book:
                return None
            now = self.state.clock()
            self.book = [f for f in self.book if f.live(now)]
            for fault in self.book:
                if fault.matches(account, kind):
                    fault.hits += 1
                    return fault
            return None

    def live(self) -> list[Fault]:
        """The faults still in force."""
        with self.state.lock:
            return [f for f in self.book if f.live(self.state.clock())]

    def clear(self) -> None:
        with self.state.lock:
            self.book.clear()
