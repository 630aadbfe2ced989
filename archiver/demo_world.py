"""What `archiver demo` shows: its settings, the simulated shop and its stories, and the
progress, versions and example query it reads back from the database.

Kept apart from the command (archiver.commands.demo), which is about starting and stopping
the parts; this module is about what the user sees.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.config import Settings
from metasim import World
from metasim.world import tokens as sim_tokens
from models.accounts import Account
from models.types import UTCDateTime

DAY = 24 * 3600
SHOP = "demo_shop"


class DemoSettings(Settings):
    """Settings from arguments only: the tour must run the same whatever DATABASE_URL,
    REDIS_URL, META_* or a .env file in the working directory say."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def demo_settings(
    *, database_url: str, redis_url: str, sim_url: str, port: int, verbose: bool
) -> Settings:
    """Generated secrets, every Meta host on the simulator, intervals of seconds, not hours."""
    return DemoSettings(
        database_url=database_url,
        redis_url=redis_url,
        # The simulator's own app, so that debug_token (token expiry) answers as Meta would.
        meta_app_id=sim_tokens.APP_ID,
        meta_app_secret=SecretStr(sim_tokens.APP_SECRET),
        meta_verify_token=SecretStr(secrets.token_urlsafe(16)),
        facebook_graph_url=f"{sim_url}/facebook",
        instagram_graph_url=f"{sim_url}/instagram",
        threads_graph_url=f"{sim_url}/threads",
        story_poll_seconds=2,
        story_snapshot_seconds=5,
        story_final_margin_seconds=8,
        schedule_tick_seconds=1,
        meta_minute_seconds=1.0,
        relay_interval_seconds=0.2,
        host="127.0.0.1",
        port=port,
        log_level="INFO" if verbose else "WARNING",
    )


@dataclass(frozen=True)
class DemoStory:
    label: str
    media_id: str
    note: str


# (label, seconds left, viewers, note). Stories are posted in the past, the simulator's way
# of compressing time: one 23 h 59 min 40 s old expires 20 s into the tour. Counts grow
# fastest early on, so only a young story (D) shows them change between versions.
STORIES = (
    ("A", 20, 900, "expires in 20 s: watch its final snapshot"),
    ("B", 120, 1500, "expires in 2 min"),
    ("C", 3600, 3, "only 3 viewers: Meta withholds its numbers"),
    ("D", DAY - 60, 100_000, "posted a minute ago: its counts still grow"),
)


def populate(world: World, engine: Engine) -> tuple[str, list[DemoStory]]:
    """One account with three stories in the simulator, registered in the archiver too."""
    account = world.add_account(username=SHOP)
    stories = [
        DemoStory(
            label, world.add_story(account.ig_user_id, age_seconds=DAY - left, viewers=n).id, note
        )
        for label, left, n, note in STORIES
    ]
    with Session(engine) as session:
        session.add(
            Account(
                name=SHOP,
                ig_user_id=account.ig_user_id,
                ig_token=account.token,
                login=account.login,
            )
        )
        session.commit()
    return account.ig_user_id, stories


# One row per snapshot with its headline numbers; `after` lets progress read only new ones.
SNAPSHOTS = sa.text(
    """
SELECT s.id, s.subject_id, s.version, s.slot, s.source, s.captured_at,
       MAX(CASE WHEN m.metric = 'reach' AND m.breakdown IS NULL THEN m.value END) AS reach,
       MAX(CASE WHEN m.metric = 'views' AND m.breakdown IS NULL THEN m.value END) AS views,
       MAX(m.flag) AS flag
FROM snapshot s
LEFT JOIN metric_history m ON m.snapshot_id = s.id
WHERE s.id > :after AND s.subject_type = 'story'
GROUP BY s.id, s.subject_id, s.version, s.slot, s.source, s.captured_at
ORDER BY s.id
"""
).columns(captured_at=UTCDateTime)

FINALS = sa.text(
    """
SELECT md.media_id, s.version, s.captured_at, md.expires_at
FROM media md
JOIN snapshot s ON s.id = md.final_snapshot_id
WHERE md.capture_state = 'final_captured'
"""
).columns(captured_at=UTCDateTime, expires_at=UTCDateTime)

MISSED = sa.text("SELECT media_id, missed_reason FROM media WHERE capture_state = 'missed'")

SLOTS = (
    "slots: first at discovery, sN every STORY_SNAPSHOT_SECONDS after posting, final "
    "STORY_FINAL_MARGIN_SECONDS before expiry, webhook when Meta sends story_insights"
)
EXAMPLE_QUERY = """\
SELECT subject_id,
       COUNT(*)                AS versions,
       MIN(value)              AS first_reach,
       MAX(value)              AS last_reach,
       MAX(flag)               AS flag
FROM metric_history
WHERE subject_type = 'story' AND metric = 'reach' AND breakdown IS NULL
GROUP BY subject_id
ORDER BY subject_id;"""


@dataclass
class Progress:
    """Turns what the worker wrote since the last look into one line per event."""

    engine: Engine
    stories: Sequence[DemoStory]
    discovered: set[str] = field(default_factory=set)
    finals: set[str] = field(default_factory=set)
    missed: set[str] = field(default_factory=set)
    webhooks: set[str] = field(default_factory=set)
    last_snapshot: int = 0

    def label(self, media_id: str) -> str:
        return next((s.label for s in self.stories if s.media_id == media_id), media_id)

    def poll(self) -> list[str]:
        """Blocking (run it in a thread): the events seen since the previous call."""
        with self.engine.connect() as conn:
            media = conn.execute(sa.text("SELECT media_id FROM media ORDER BY id")).scalars()
            found = [m for m in media if m not in self.discovered]
            snaps = conn.execute(SNAPSHOTS, {"after": self.last_snapshot}).all()
            finals = [row for row in conn.execute(FINALS) if row[0] not in self.finals]
            missed = [row for row in conn.execute(MISSED) if row[0] not in self.missed]
        lines = [self._discovered(media_id) for media_id in found]
        lines += [self._captured(row) for row in snaps]
        lines += [self._final(*row) for row in finals]
        for media_id, reason in missed:
            self.missed.add(media_id)
            lines.append(f"story {self.label(media_id)} missed its final capture: {reason}")
        return lines

    def _discovered(self, media_id: str) -> str:
        self.discovered.add(media_id)
        note = next((s.note for s in self.stories if s.media_id == media_id), "")
        return f"story {self.label(media_id)} discovered ({note})"

    def _captured(self, row: Any) -> str:
        self.last_snapshot = max(self.last_snapshot, row.id)
        if row.source == "webhook":
            self.webhooks.add(row.subject_id)
        what = (
            "below_threshold (fewer than 5 viewers: values null, flagged)"
            if row.flag == "below_threshold"
            else f"reach {number(row.reach)}, views {number(row.views)}"
        )
        return (
            f"story {self.label(row.subject_id)} version {row.version} captured "
            f"(slot {row.slot}, source {row.source}): {what}"
        )

    def _final(self, media_id: str, version: int, captured_at: Any, expires_at: Any) -> str:
        self.finals.add(media_id)
        left = (expires_at - captured_at).total_seconds()
        return (
            f"story {self.label(media_id)} final captured: version {version} is its last "
            f"snapshot, taken {left:.0f} s before the story expired"
        )


def number(value: Any) -> str:
    """Counts as integers, missing values as `-`, everything else as it is."""
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Plain left-aligned columns, the way psql prints a result."""
    cells = [[number(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return [line.rstrip() for line in lines]


def versions_table(engine: Engine, stories: Sequence[DemoStory]) -> list[str]:
    """Every snapshot version of every story, grouped by story."""
    order = {s.media_id: s.label for s in stories}
    with engine.connect() as conn:
        rows = list(conn.execute(SNAPSHOTS, {"after": 0}))
    rows.sort(key=lambda r: (order.get(r.subject_id, r.subject_id), r.version))
    shown = [
        (
            order.get(r.subject_id, r.subject_id),
            r.version,
            r.slot,
            r.source,
            r.captured_at.strftime("%H:%M:%S"),
            r.flag or number(r.reach),
            r.flag or number(r.views),
        )
        for r in rows
    ]
    header = ("story", "version", "slot", "source", "captured_at", "reach", "views")
    return table(header, shown)


def example_query(engine: Engine) -> list[str]:
    """EXAMPLE_QUERY's result, printed under the query itself."""
    with engine.connect() as conn:
        result = conn.execute(sa.text(EXAMPLE_QUERY))
        header = list(result.keys())
        rows = result.all()
    return table(header, rows)


def report(engine: Engine, stories: Sequence[DemoStory]) -> list[str]:
    """The versions table, then the example query and its result."""
    legend = ", ".join(f"{s.label} = {s.media_id}" for s in stories)
    lines = ["", f"Snapshot versions per story ({legend}):", *versions_table(engine, stories)]
    lines += [SLOTS, "", "Query it with plain SQL (the metric_history view):", ""]
    return [*lines, EXAMPLE_QUERY, "", *example_query(engine)]
