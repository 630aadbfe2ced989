"""The read-only dashboard: accounts, story curves, Threads users and posts, deliveries."""
