"""The queries the workers run against the tables: what is due (listings, polls, captures,
token renewals), writing a capture, back-off bookkeeping, token re-encryption."""
