"""Publisher SDK: services enqueue jobs with `Publisher.publish`."""

from producers.publisher import (
    InvalidJob,
    PayloadTooLarge,
    Publisher,
    PublishError,
    new_job_id,
)

__all__ = ["InvalidJob", "PayloadTooLarge", "PublishError", "Publisher", "new_job_id"]
