"""jobqueue."""
