"""jobstream: background jobs on Kafka for Python services.

The public API. Job modules and publishing services import from here:

    from jobstream import job, JobContext, PermanentError, RetryAfter, Publisher
    from jobstream import Hook, add_hook          # hooks around every job (docs/hooks.md)

The four folders of the repository install as its subpackages (jobstream.config,
jobstream.schemas, jobstream.producers, jobstream.consumers), so none of them shadows a
service's own `config` or `schemas` module.
"""

from importlib.metadata import PackageNotFoundError, version

from jobstream.consumers.context import JobContext
from jobstream.consumers.errors import PermanentError, RetryAfter
from jobstream.consumers.jobs import job
from jobstream.consumers.runtime.hooks import Finished, Hook, Refuse, Verdict, add_hook
from jobstream.consumers.runtime.types import Outcome
from jobstream.producers.chains import Chain, chain
from jobstream.producers.errors import DeliveryError, InvalidJob, PayloadTooLarge, PublishError
from jobstream.producers.publisher import Publisher, new_job_id

try:
    __version__ = version("jobstream")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "Chain",
    "DeliveryError",
    "Finished",
    "Hook",
    "InvalidJob",
    "JobContext",
    "Outcome",
    "PayloadTooLarge",
    "PermanentError",
    "PublishError",
    "Publisher",
    "Refuse",
    "RetryAfter",
    "Verdict",
    "__version__",
    "add_hook",
    "chain",
    "job",
    "new_job_id",
]
