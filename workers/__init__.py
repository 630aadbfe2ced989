"""The arq workers, in layers that import only downwards: `meta` (Meta's APIs), `runtime` (what
every job shares), then `webhooks` and `captures` (the jobs); `main` builds each lane's
WorkerSettings and `running` runs the lanes of one process."""
