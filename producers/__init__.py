"""Publisher SDK: services enqueue jobs with `Publisher.publish`."""

from jobstream.producers.errors import (
    DeliveryError,
    InvalidJob,
    PayloadTooLarge,
    PublishError,
    Undelivered,
)
from jobstream.producers.publisher import Publisher, new_job_id

__all__ = [
    "DeliveryError",
    "InvalidJob",
    "PayloadTooLarge",
    "PublishError",
    "Publisher",
    "Undelivered",
    "new_job_id",
]
