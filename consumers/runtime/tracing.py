"""OpenTelemetry spans around handlers: optional and free when unused.

Spans are made only when the `opentelemetry` package is importable and the job module (or
`opentelemetry-instrument`) has set a tracer provider. Otherwise the worker never wraps a
handler, so tracing costs nothing. The span is a child of the job's `traceparent`, which the
publisher set and retries, dead letters and replays carry unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jobstream.schemas import wire

if TYPE_CHECKING:
    from jobstream.consumers.runtime.types import Job

Handler = Callable[..., Any]


class Tracing:
    def __init__(self, tracer: Any, propagate: Any, kind: Any) -> None:
        self._tracer = tracer
        self._propagate = propagate
        self._kind = kind

    @classmethod
    def from_environment(cls) -> Tracing | None:
        try:
            from opentelemetry import propagate, trace
        except ImportError:
            return None
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            return None  # installed but not configured: no provider, no spans
        return cls(trace.get_tracer("jobstream"), propagate, trace.SpanKind.CONSUMER)

    def wrap(
        self,
        func: Handler,
        is_async: bool,
        job: Job,
    ) -> Handler:
        traceparent = job.headers.get(wire.TRACEPARENT)
        parent = self._propagate.extract({"traceparent": traceparent}) if traceparent else None
        name = f"{job.job_type} process"
        attributes = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": job.topic,
            "messaging.destination.partition.id": str(job.partition),
            "messaging.kafka.offset": job.offset,
            "jobstream.job_id": job.job_id,
            "jobstream.attempt": job.attempt,
        }

        def span() -> Any:
            return self._tracer.start_as_current_span(
                name, context=parent, kind=self._kind, attributes=attributes
            )

        if is_async:

            @functools.wraps(func)
            async def run_async(*args: Any) -> Any:
                with span():
                    return await func(*args)

            return run_async

        @functools.wraps(func)
        def run(*args: Any) -> Any:
            with span():  # records the exception and sets an error status on failure
                return func(*args)

        return run
