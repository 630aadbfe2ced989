"""Read-only figures for `archiver status` and `/metrics`: per-account coverage, what is
overdue, media with a problem, the workers' counters."""
