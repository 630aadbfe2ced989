"""The only names of arq's internals the project uses, imported here and nowhere else.

arq's public API enqueues one job per call (three round trips each); the receiver's relay
writes a whole batch in one script (jobqueue.outbox), exactly as arq writes a job, and the
dead-worker reclaim (workers.runtime.reclaim) frees a job's in-progress key. Both need arq's
key layout and job encoding, which arq does not promise to keep: pyproject.toml pins arq to the
minor version these were read from, and tests/test_worker.py and tests/test_relay.py run the
real arq worker against what is written here.
"""

from arq.constants import expires_extra_ms, in_progress_key_prefix, job_key_prefix
from arq.jobs import serialize_job

__all__ = ["expires_extra_ms", "in_progress_key_prefix", "job_key_prefix", "serialize_job"]
