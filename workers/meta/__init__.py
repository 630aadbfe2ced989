"""workers.meta."""
