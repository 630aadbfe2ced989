"""What `archiver status` prints: the throttle pauses read from Redis, the `--json`
document and the text report (the command itself is archiver/commands/status.py)."""
