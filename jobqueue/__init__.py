"""The queue contract between whoever enqueues (the receiver's relay, the scheduler tick) and
the workers: queue and job names, deterministic job ids, the batch enqueue of deliveries, and
the only use of arq's internals (arq_internals)."""
