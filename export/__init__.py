"""Rows of the archive out as files: CSV, JSON lines, Parquet, streamed."""
