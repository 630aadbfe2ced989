"""Permission errors on demand: an account (or Threads user) whose token lacks a permission.

Meta answers a missing permission with code 10 or 200-299
(https://developers.facebook.com/docs/graph-api/guides/error-handling): e.g. (#10)
"Application does not have permission for this action" when instagram_manage_insights was
not granted, or (#200) "Requires <permission> permission". Code 10 is also "Not enough
viewers" on story insights, which is no permission problem: clients must tell them apart by
the message. The HTTP statuses (400 for #10, 403 for #200) follow public reports [UNCERTAIN].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final

# Route kind -> (Facebook Login permission, Instagram Login permission) it needs (MINS).
NEEDED: Final = {
    "insights": ("instagram_manage_insights", "instagram_business_manage_insights"),
    "ig_media_insights": ("instagram_manage_insights", "instagram_business_manage_insights"),
    "threads_insights": ("threads_manage_insights", "threads_manage_insights"),
    "threads_media_insights": ("threads_manage_insights", "threads_manage_insights"),
}
BASIC: Final = ("instagram_basic", "instagram_business_basic")


@dataclass
class Denial:
    """Calls of `account` (of route `kind`, or all) fail with permission error `code`."""

    account: str
    code: int = 10
    kind: str | None = None
    permission: str | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        if self.code != 10 and not 200 <= self.code <= 299:
            msg = f"a permission error has code 10 or 200-299, not {self.code}"
            raise ValueError(msg)

    def matches(self, account: str | None, kind: str) -> bool:
        return account == self.account and self.kind in (None, kind)

    def text(self, kind: str, instagram_login: bool) -> str:
        """The error message: as given, else Meta's wording for the code."""
        if self.message:
            return self.message
        if self.code == 10:
            return "(#10) Application does not have permission for this action"
        permission = self.permission or NEEDED.get(kind, BASIC)[int(instagram_login)]
        return f"(#{self.code}) Requires {permission} permission"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Denials:
    """The denials in force; the first one matching a call answers it."""

    def __init__(self) -> None:
        self.items: list[Denial] = []

    def add(self, denial: Denial) -> Denial:
        self.items.append(denial)
        return denial

    def find(self, account: str | None, kind: str) -> Denial | None:
        return next((d for d in self.items if d.matches(account, kind)), None)

    def remove(self, account: str, kind: str | None = None) -> int:
        """Grant again: drop the account's denials (of one kind, or all); how many went."""
        kept = [d for d in self.items if d.account != account or kind not in (None, d.kind)]
        removed, self.items = len(self.items) - len(kept), kept
        return removed
