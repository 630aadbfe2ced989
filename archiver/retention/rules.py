"""Which versions of one subject thinning may delete: a pure function of its versions.

A subject's first version, its final, its webhook versions and its newest are kept for good;
so is every version a view still reads (the newest holding each metric, for the `*_latest`
views; a story's last API capture before expiry, for `story_final`), so pruning never changes
what those views answer. Of the other versions captured before the cutoff, the first of each
spacing window stays unless the window holds one of those already, so that the thinned past
has one version per window (windows counted from the Unix epoch: 24 h windows are UTC days).

Only lifetime counters are thinned (stories, feed posts, Reels, Threads posts): each version
is the running total at its capture, so the versions left still draw the curve, at the chosen
spacing. Threads user and Instagram account insights are never thinned: each of their
versions holds days that no other version holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

THINNED = ("story", "feed", "reel", "threads_post")
NEVER_THINNED = ("threads_user", "ig_account")
FINAL_SLOT = "final"
WEBHOOK_SOURCE = "webhook"
API_SOURCE = "api"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Version:
    """What the rules need of one snapshot row."""

    id: int
    version: int
    slot: str
    source: str
    captured_at: datetime
    keys: tuple[int, ...]


@dataclass(frozen=True)
class Thinning:
    """Versions captured before `cutoff` are thinned to one per `spacing` window."""

    cutoff: datetime
    spacing: timedelta


def always_kept(
    versions: list[Version], *, final_id: int | None, expires_at: datetime | None
) -> set[int]:
    """The ids of the versions kept whatever their age (see the module docstring)."""
    if not versions:
        return set()
    ordered = sorted(versions, key=lambda v: v.version)
    kept = {ordered[0].id, ordered[-1].id}
    kept |= {
        v.id
        for v in ordered
        if v.slot == FINAL_SLOT or v.id == final_id or v.source == WEBHOOK_SOURCE
    }
    kept |= set(_newest_per_key(ordered).values())
    if expires_at is not None:
        before = [v for v in ordered if v.source == API_SOURCE and v.captured_at < expires_at]
        if before:
            kept.add(before[-1].id)
    return kept


def _newest_per_key(ordered: Iterable[Version]) -> dict[int, int]:
    newest: dict[int, int] = {}
    for v in ordered:  # oldest first, so the last writer of a key wins
        newest.update(dict.fromkeys(v.keys, v.id))
    return newest


def window_of(when: datetime, spacing: timedelta) -> int:
    return int((when - _EPOCH) // spacing)


def to_delete(
    versions: list[Version],
    thinning: Thinning,
    *,
    final_id: int | None = None,
    expires_at: datetime | None = None,
) -> list[Version]:
    """The versions thinning deletes, oldest first."""
    kept = always_kept(versions, final_id=final_id, expires_at=expires_at)
    # A window that holds a version kept for good needs no other.
    seen = {window_of(v.captured_at, thinning.spacing) for v in versions if v.id in kept}
    doomed = []
    for v in sorted(versions, key=lambda v: v.version):
        if v.id in kept or v.captured_at >= thinning.cutoff:
            continue
        window = window_of(v.captured_at, thinning.spacing)
        if window in seen:
            doomed.append(v)
        else:
            seen.add(window)
    return doomed
