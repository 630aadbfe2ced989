"""The captures layer: slot arithmetic, the scheduler tick, story listings and captures,
Threads polls and post captures, token refresh and expiry checks."""
