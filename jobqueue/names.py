"""Job names, queues and deterministic job ids: the contract between whoever enqueues and the
workers.

The receiver enqueues by name and never imports `workers`; a repeated id makes a duplicate
enqueue a no-op in arq while the job waits or runs. The workers keep no job results, so once a
job has ended, whatever its outcome, the same id can be enqueued again.

Two queues, each worked by its own lane of every worker process (workers.main): a burst of
webhook deliveries waits in its own queue and cannot hold back the story captures.
"""

MAIN_QUEUE = "arq:queue"  # arq's default: listings, captures, Threads polls
DELIVERIES_QUEUE = "arq:queue:deliveries"  # webhook deliveries and their sweeper
CONTROL_QUEUE = "arq:queue:control"  # the scheduler tick and token refresh, never behind work

PROCESS_DELIVERY = "process_delivery"


def delivery_job_id(delivery_id: int) -> str:
    return f"event:{delivery_id}"


POLL_STORIES = "poll_stories"
CAPTURE_STORY = "capture_story"
POLL_THREADS = "poll_threads"
CAPTURE_THREADS_POST = "capture_threads_post"
CAPTURE_ACCOUNT_INSIGHTS = "capture_account_insights"
LIST_IG_MEDIA = "list_ig_media"
CAPTURE_IG_MEDIA = "capture_ig_media"
IG_MEDIA = "ig_media"  # the capture key of feed posts and Reels (platform `instagram`)


def story_poll_job_id(account_id: int, due_epoch: int) -> str:
    """One listing per account and due time: the scheduler may enqueue it every tick."""
    return f"stories:{account_id}:{due_epoch}"


def threads_poll_job_id(account_id: int, due_epoch: int) -> str:
    return f"threads:{account_id}:{due_epoch}"


def account_insights_job_id(account_id: int, due_epoch: int) -> str:
    """One account insights run per account and due time (workers.captures.account_insights)."""
    return f"ig_account:{account_id}:{due_epoch}"


def media_listing_job_id(account_id: int, due_epoch: int) -> str:
    return f"ig_media_list:{account_id}:{due_epoch}"


def capture_job_id(platform: str, media_id: str, slot: str) -> str:
    """One capture per media and slot, whichever worker or tick enqueues it:
    `story:<media_id>:<slot>` for stories, `threads_post:<media_id>:<slot>` for Threads posts,
    `ig_media:<media_id>:<slot>` for feed posts and Reels (key IG_MEDIA)."""
    kind = {"instagram": "story", IG_MEDIA: IG_MEDIA}.get(platform, "threads_post")
    return f"{kind}:{media_id}:{slot}"
