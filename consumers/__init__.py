"""The worker runtime. Job modules use: `from consumers import job, JobContext, PermanentError,
RetryAfter`."""

from consumers.context import JobContext
from consumers.errors import PermanentError, RetryAfter
from consumers.jobs import job

__all__ = ["JobContext", "PermanentError", "RetryAfter", "job"]
