"""The Meta API layer: one transport (pacing, usage headers, retries, the error tree) and the
Instagram Graph and Threads clients on it, the metric sets per API version and the metrics Meta
refused. Imports nothing else of `workers`."""
