"""The worker runtime. Job modules use: `from consumers import job, JobContext, PermanentError,
RetryAfter`."""

from jobstream.consumers.context import JobContext
from jobstream.consumers.errors import PermanentError, RetryAfter
from jobstream.consumers.jobs import job

__all__ = ["JobContext", "PermanentError", "RetryAfter", "job"]
