"""workers.webhooks."""
