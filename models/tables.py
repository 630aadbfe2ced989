"""Every table, imported in one place so that metadata and migrations see them all."""

from sqlmodel import SQLModel

from models.accounts import Account, MetricUnavailable
from models.deliveries import WebhookDelivery
from models.snapshots import Media, MetricValue, Snapshot

metadata = SQLModel.metadata

__all__ = [
    "Account",
    "Media",
    "MetricUnavailable",
    "MetricValue",
    "Snapshot",
    "WebhookDelivery",
    "metadata",
]
