"""Publisher SDK: services enqueue jobs with `Publisher.publish`."""

from producers.publisher import PayloadTooLarge, Publisher, PublishError, new_job_id

__all__ = ["PayloadTooLarge", "PublishError", "Publisher", "new_job_id"]
