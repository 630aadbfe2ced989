"""What every job shares: the typed ctx and its database threads, how a failed job is
counted, retried or given up, and the reclaim of a killed worker's jobs."""
