"""What to export: a documented view and filters, turned into one SQLAlchemy Core SELECT.

Only the views of models.views are exportable: they are the frozen public query surface, so
a file exported today has the same columns as one exported next year. Each view is described
by its columns and their types (the types make SQLite's text timestamps come back as UTC
datetimes, as PostgreSQL's do) and by the columns its filters apply to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from core.errors import ConfigError, NotFoundError
from models.tables import Account, table_of
from models.types import UTCDateTime

FORMATS = ("csv", "jsonl", "parquet")
Kind = Literal["timestamp", "int", "float", "text"]


class InvalidExport(ConfigError, ValueError):
    """An export asked of a view in a way it cannot answer (a filter it has no column for,
    an unknown view or format); exit 2 on the command line, 400 in the dashboard."""


@dataclass(frozen=True)
class ViewSpec:
    """One exportable view: its columns in order, and the columns each filter reads."""

    columns: tuple[tuple[str, Kind], ...]
    order_by: tuple[str, ...]
    time_column: str  # what --since/--until compare with
    subject_column: str
    # Filters the view answers with a constant (story_latest holds Instagram stories only).
    fixed: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)


_KEY: tuple[tuple[str, Kind], ...] = (("metric", "text"), ("breakdown", "text"))
_VALUE: tuple[tuple[str, Kind], ...] = (
    ("dimension", "text"),
    ("value", "float"),
    ("flag", "text"),
)
_SNAPSHOT: tuple[tuple[str, Kind], ...] = (
    ("snapshot_id", "int"),
    ("version", "int"),
    ("captured_at", "timestamp"),
)
_STORY = {"platform": "instagram", "subject_type": "story"}

SPECS: dict[str, ViewSpec] = {
    "metric_history": ViewSpec(
        columns=(
            ("account_id", "int"),
            ("platform", "text"),
            ("subject_type", "text"),
            ("subject_id", "text"),
            *_SNAPSHOT,
            ("source", "text"),
            *_KEY,
            ("dimension", "text"),
            ("end_time", "timestamp"),
            ("value", "float"),
            ("flag", "text"),
        ),
        # snapshot_id alone: PostgreSQL walks the indexes and streams without a sort.
        order_by=("snapshot_id",),
        time_column="captured_at",
        subject_column="subject_id",
    ),
    "story_latest": ViewSpec(
        columns=(
            ("account_id", "int"),
            ("subject_id", "text"),
            ("posted_at", "timestamp"),
            ("expires_at", "timestamp"),
            *_SNAPSHOT,
            ("source", "text"),
            *_KEY,
            *_VALUE,
        ),
        order_by=("subject_id", "metric", "breakdown", "dimension"),
        time_column="captured_at",
        subject_column="subject_id",
        fixed=_STORY,
    ),
    "story_final": ViewSpec(
        columns=(
            ("account_id", "int"),
            ("subject_id", "text"),
            ("posted_at", "timestamp"),
            ("expires_at", "timestamp"),
            ("capture_state", "text"),
            *_SNAPSHOT,
            *_KEY,
            *_VALUE,
            ("webhook_value", "float"),
            ("webhook_flag", "text"),
        ),
        order_by=("subject_id", "metric", "breakdown", "dimension"),
        # captured_at is null on webhook-only rows; a story is dated by when it was posted.
        time_column="posted_at",
        subject_column="subject_id",
        fixed=_STORY,
    ),
    "threads_user_daily": ViewSpec(
        columns=(
            ("account_id", "int"),
            ("threads_user_id", "text"),
            ("day", "text"),
            *_KEY,
            *_VALUE,
            ("end_time", "timestamp"),
            *_SNAPSHOT,
        ),
        order_by=("threads_user_id", "day", "metric", "breakdown", "dimension"),
        time_column="day",
        subject_column="threads_user_id",
        fixed={"platform": "threads", "subject_type": "threads_user"},
    ),
    "threads_post_latest": ViewSpec(
        columns=(
            ("account_id", "int"),
            ("media_id", "text"),
            ("posted_at", "timestamp"),
            ("permalink", "text"),
            ("text", "text"),
            ("media_type", "text"),
            ("capture_state", "text"),
            *_SNAPSHOT,
            *_KEY,
            *_VALUE,
        ),
        order_by=("media_id", "metric", "breakdown", "dimension"),
        time_column="captured_at",
        subject_column="media_id",
        fixed={"platform": "threads", "subject_type": "threads_post"},
    ),
    "ig_account_daily": ViewSpec(
        columns=(
            ("account_id", "int"),
            ("ig_user_id", "text"),
            ("day", "text"),
            *_KEY,
            *_VALUE,
            ("end_time", "timestamp"),
            *_SNAPSHOT,
        ),
        order_by=("ig_user_id", "day", "metric", "breakdown", "dimension"),
        time_column="day",
        subject_column="ig_user_id",
        fixed={"platform": "instagram", "subject_type": "ig_account"},
    ),
    "ig_account_demographics": ViewSpec(
        columns=(
            ("account_id", "int"),
            ("ig_user_id", "text"),
            ("day", "text"),
            ("metric", "text"),
            ("timeframe", "text"),
            ("breakdown", "text"),
            *_VALUE,
            *_SNAPSHOT,
        ),
        order_by=("ig_user_id", "day", "metric", "breakdown", "dimension"),
        time_column="day",
        subject_column="ig_user_id",
        fixed={"platform": "instagram", "subject_type": "ig_account"},
    ),
    "media_latest": ViewSpec(
        columns=(
            ("account_id", "int"),
            ("subject_type", "text"),
            ("media_id", "text"),
            ("media_product_type", "text"),
            ("media_type", "text"),
            ("posted_at", "timestamp"),
            ("permalink", "text"),
            ("caption", "text"),
            ("capture_state", "text"),
            *_SNAPSHOT,
            *_KEY,
            *_VALUE,
        ),
        order_by=("media_id", "metric", "breakdown", "dimension"),
        time_column="posted_at",
        subject_column="media_id",
        fixed={"platform": "instagram"},
    ),
}
VIEWS: tuple[str, ...] = tuple(SPECS)

_TYPES: dict[Kind, sa.types.TypeEngine[Any]] = {
    "timestamp": UTCDateTime(),
    "int": sa.BigInteger(),
    "float": sa.Float(),
    "text": sa.Text(),
}


@dataclass(frozen=True)
class ExportQuery:
    """Which rows to export. Times are inclusive at `since`, exclusive at `until`; on the
    daily views (threads_user_daily, ig_account_daily, ig_account_demographics) they compare
    with the row's UTC day (`since`'s date and on, before `until`'s date)."""

    view: str = "metric_history"
    since: datetime | None = None
    until: datetime | None = None
    account: str | None = None  # an account name or id
    platform: str | None = None
    subject_type: str | None = None
    metrics: tuple[str, ...] = ()
    subject_id: str | None = None  # one media id / Threads user id

    @property
    def spec(self) -> ViewSpec:
        try:
            return SPECS[self.view]
        except KeyError:
            msg = f"unknown view {self.view!r}; exportable views: {', '.join(VIEWS)}"
            raise InvalidExport(msg) from None


def view_table(spec: ViewSpec, name: str) -> sa.TableClause:
    """The view as a typed Core table clause."""
    return sa.table(name, *(sa.column(col, _TYPES[kind]) for col, kind in spec.columns))


def build_select(query: ExportQuery, account_id: int | None = None) -> sa.Select[tuple[object]]:
    """The SELECT for `query`; `account_id` is the resolved `query.account` (see
    resolve_account), kept apart so that this stays pure."""
    spec = query.spec
    view = view_table(spec, query.view)
    stmt = sa.select(*view.c).order_by(*(view.c[name] for name in spec.order_by))
    for column, wanted in (("platform", query.platform), ("subject_type", query.subject_type)):
        if wanted is not None:
            stmt = stmt.where(*_equals(spec, query.view, view, column, wanted))
    if account_id is not None:
        stmt = stmt.where(view.c.account_id == account_id)
    if query.metrics:
        stmt = stmt.where(view.c.metric.in_(query.metrics))
    if query.subject_id is not None:
        stmt = stmt.where(view.c[spec.subject_column] == query.subject_id)
    when = view.c[spec.time_column]
    if query.since is not None:
        stmt = stmt.where(when >= _bound(spec, query.since))
    if query.until is not None:
        stmt = stmt.where(when < _bound(spec, query.until))
    return stmt


def _equals(
    spec: ViewSpec, name: str, view: sa.TableClause, column: str, wanted: str
) -> tuple[sa.ColumnElement[bool], ...]:
    """`column = wanted`, or nothing when the view holds that value only, or an error when
    the view holds other rows only."""
    if column in spec.names:
        return (view.c[column] == wanted,)
    if spec.fixed.get(column) == wanted:
        return ()
    holds = spec.fixed.get(column, "no such column")
    msg = f"{name} cannot be filtered by {column} {wanted!r} (it holds {holds})"
    raise InvalidExport(msg)


def _bound(spec: ViewSpec, when: datetime) -> datetime | str:
    if when.tzinfo is None:
        msg = f"naive time {when.isoformat()} given; export bounds are UTC-aware"
        raise InvalidExport(msg)
    return when.date().isoformat() if spec.time_column == "day" else when


def resolve_account(conn: sa.Connection, account: str) -> int:
    """An account's id from its name or id; NotFoundError (exit 3) names what was asked."""
    table = table_of(Account)
    match = table.c.name == account
    if account.isdigit():
        match = sa.or_(match, table.c.id == int(account))
    ids = conn.execute(sa.select(table.c.id).where(match).order_by(table.c.id)).scalars().all()
    if not ids:
        msg = f"no account named or numbered {account!r}"
        raise NotFoundError(msg)
    # A name that is another account's id: the name wins, as the more specific spelling.
    by_name = conn.execute(sa.select(table.c.id).where(table.c.name == account)).scalar()
    return int(by_name if by_name is not None else ids[0])
