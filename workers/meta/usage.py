"""The usage headers Meta sends with every answer, errors included (X-App-Usage,
X-Business-Use-Case-Usage): https://developers.facebook.com/docs/graph-api/overview/rate-limiting.
Parsing is pure and forgiving: a missing or malformed header is "no information".

X-App-Usage comes in two shapes. graph.facebook.com sends
`{"call_count":28,"total_time":25,"total_cputime":25}` (documented on the page above);
graph.instagram.com (Instagram Login) is reported to send `call_volume` and `cpu_time`
instead of `call_count` and `total_cputime`, beside `total_time`. That second shape is
unconfirmed: Meta does not document it, so both names are read wherever they appear.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

# Our name -> the names Meta uses for it (Graph shape first, then Instagram Login's).
_ALIASES: Final = {
    "call_count": ("call_count", "call_volume"),
    "total_cputime": ("total_cputime", "cpu_time"),
    "total_time": ("total_time",),
}


@dataclass(frozen=True)
class Usage:
    """One usage figure set, in percent (X-App-Usage, or one BUC entry)."""

    call_count: float = 0.0
    total_time: float = 0.0
    total_cputime: float = 0.0
    regain_minutes: float = 0.0
    type: str | None = None

    @property
    def peak(self) -> float:
        return max(self.call_count, self.total_time, self.total_cputime)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        def number(*names: str) -> float:
            for name in names:
                value = data.get(name)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    return float(value)
            return 0.0

        kind = data.get("type")
        return cls(
            call_count=number(*_ALIASES["call_count"]),
            total_time=number(*_ALIASES["total_time"]),
            total_cputime=number(*_ALIASES["total_cputime"]),
            regain_minutes=number("estimated_time_to_regain_access"),
            type=kind if isinstance(kind, str) else None,
        )


def parse_app_usage(value: str | None) -> Usage | None:
    """X-App-Usage in either shape; None if absent or malformed."""
    data = _loads(value)
    return Usage.from_dict(data) if isinstance(data, dict) else None


def parse_buc_usage(value: str | None) -> dict[str, list[Usage]]:
    """X-Business-Use-Case-Usage: business-object id -> its usage entries ({} if absent/bad)."""
    data = _loads(value)
    if not isinstance(data, dict):
        return {}
    return {
        str(key): [Usage.from_dict(item) for item in entries if isinstance(item, dict)]
        for key, entries in data.items()
        if isinstance(entries, list)
    }


def _loads(value: str | None) -> Any:
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None
