"""Every table, imported in one place so that metadata and migrations see them all."""

import sqlalchemy as sa
from sqlmodel import SQLModel

from models.accounts import Account, MetricUnavailable
from models.deliveries import WebhookDelivery
from models.notices import Notice
from models.snapshots import Media, MetricKey, Snapshot, SnapshotRaw

metadata = SQLModel.metadata


def table_of(model: type[SQLModel]) -> sa.Table:
    """A table model's Core `Table`, typed (SQLModel sets `__table__` without declaring it)."""
    table = getattr(model, "__table__", None)
    if not isinstance(table, sa.Table):
        msg = f"{model.__name__} is not a table model"
        raise TypeError(msg)
    return table


__all__ = [
    "Account",
    "Media",
    "MetricKey",
    "MetricUnavailable",
    "Notice",
    "Snapshot",
    "SnapshotRaw",
    "WebhookDelivery",
    "metadata",
    "table_of",
]
