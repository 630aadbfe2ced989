"""Cursor pagination the Graph API way (https://developers.facebook.com/docs/graph-api/results/).

`{"data":[...],"paging":{"cursors":{"before","after"},"previous","next"}}`; `next` is absent
on the last page. A cursor names an item's position key (time, id), not an offset, so a story
that expires between two pages does not shift the next page.
"""

from __future__ import annotations

import base64
import binascii
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.requests import Request

from metasim.api import error_bodies

T = TypeVar("T")
SortKey = tuple[int, str]


def encode_cursor(key: SortKey) -> str:
    raw = f"{key[0]}:{key[1]}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> SortKey:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        rank, _, ident = raw.partition(":")
        return (int(rank), ident)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise error_bodies.bad_param("Invalid cursor") from None


@dataclass(frozen=True)
class Page:
    items: list[Any]
    has_previous: bool
    has_next: bool


def paginate(
    items: Sequence[T],
    key: Callable[[T], SortKey],
    *,
    limit: int,
    after: str | None = None,
    before: str | None = None,
) -> Page:
    """One page of `items` (already sorted by `key`) after or before a cursor."""
    keys = [key(item) for item in items]
    if before is not None:
        end = bisect_left(keys, decode_cursor(before))
        start = max(0, end - limit)
    else:
        start = bisect_right(keys, decode_cursor(after)) if after is not None else 0
        end = min(len(items), start + limit)
    return Page(list(items[start:end]), has_previous=start > 0, has_next=end < len(items))


def page_body(
    request: Request, page: Page, data: list[dict[str, Any]], key: Callable[[Any], SortKey]
) -> dict[str, Any]:
    """The JSON of a page; next/previous are absolute URLs on the host the client called."""
    if not page.items:
        return {"data": []}
    first, last = encode_cursor(key(page.items[0])), encode_cursor(key(page.items[-1]))
    paging: dict[str, Any] = {"cursors": {"before": first, "after": last}}
    url = request.url.remove_query_params(["after", "before"])
    if page.has_previous:
        paging["previous"] = str(url.include_query_params(before=first))
    if page.has_next:
        paging["next"] = str(url.include_query_params(after=last))
    return {"data": data, "paging": paging}


def limit_param(value: str | None, *, default: int, maximum: int | None = None) -> int:
    if value is None or value == "":
        return default
    try:
        limit = int(value)
    except ValueError:
        raise error_bodies.bad_param("Param limit must be a number") from None
    if limit <= 0:
        return default
    return min(limit, maximum) if maximum else limit
