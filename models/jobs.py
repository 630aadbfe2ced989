"""Job names and deterministic job ids: the contract between whoever enqueues and the workers.

The receiver enqueues by name and never imports `workers`; a repeated id makes a duplicate
enqueue a no-op in arq.
"""

PROCESS_DELIVERY = "process_delivery"


def delivery_job_id(delivery_id: int) -> str:
    return f"event:{delivery_id}"


POLL_STORIES = "poll_stories"
CAPTURE_STORY = "capture_story"
POLL_THREADS = "poll_threads"
CAPTURE_THREADS_POST = "capture_threads_post"


def story_poll_job_id(account_id: int, due_epoch: int) -> str:
    """One listing per account and due time: the scheduler may enqueue it every tick."""
    return f"stories:{account_id}:{due_epoch}"


def threads_poll_job_id(account_id: int, due_epoch: int) -> str:
    return f"threads:{account_id}:{due_epoch}"


def capture_job_id(platform: str, media_id: str, slot: str) -> str:
    """One capture per media and slot, whichever worker or tick enqueues it:
    `story:<media_id>:<slot>` for stories, `threads_post:<media_id>:<slot>` for posts."""
    kind = "story" if platform == "instagram" else "threads_post"
    return f"{kind}:{media_id}:{slot}"
