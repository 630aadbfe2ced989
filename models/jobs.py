"""Job names and deterministic job ids: the contract between whoever enqueues and the workers.

The receiver enqueues by name and never imports `workers`; a repeated id makes a duplicate
enqueue a no-op in arq.
"""

PROCESS_DELIVERY = "process_delivery"


def delivery_job_id(delivery_id: int) -> str:
    return f"event:{delivery_id}"
