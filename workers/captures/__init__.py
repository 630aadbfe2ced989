"""workers.captures."""
