"""CloudEvents binary mode (Kafka protocol binding, spec 1.0) read as jobstream headers.

A job type opts in with `jobs.<type>.accept: [jobstream, cloudevents]`. The `ce_*` headers of
such a record are mapped onto the `js-*` ones the decoder reads; a `js-*` header that is present
and non-empty wins over its `ce_*` counterpart (the worker's own retry headers are `js-*`, and a
gateway that adds `ce_*` to a jobstream record must not change the job's identity), and a
disagreement is reported as a warning. docs/wire-format.md is the normative description."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from jobstream.schemas import wire

JOBSTREAM = "jobstream"
CLOUDEVENTS = "cloudevents"
FORMATS = (JOBSTREAM, CLOUDEVENTS)
DEFAULT_ACCEPT = (JOBSTREAM,)

PREFIX = "ce_"
SPECVERSION = "ce_specversion"
ID = "ce_id"
SOURCE = "ce_source"
TYPE = "ce_type"
TIME = "ce_time"
DATASCHEMA = "ce_dataschema"
TRACEPARENT = "ce_traceparent"
CONTENT_TYPE = "content-type"  # datacontenttype, unprefixed in the Kafka binding

# The js-* header each ce_* header fills in (docs/wire-format.md, table cloudevents-headers).
MAPS_TO = {
    ID: wire.JOB_ID,
    TYPE: wire.JOB_TYPE,
    DATASCHEMA: wire.SCHEMA_VERSION,
    TIME: wire.ENQUEUED_AT,
    TRACEPARENT: wire.TRACEPARENT,
}
# Read and checked, mapped to nothing.
CHECKED = (SPECVERSION, CONTENT_TYPE)
NOT_READ = (SOURCE,)

SPEC_VERSION = "1.0"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The value is the same schemaless Avro datum as a jobstream record's.
AVRO_CONTENT_TYPES = frozenset(
    {"application/avro", "avro/binary", "application/vnd.apache.avro+binary"}
)

# ce_dataschema names the writer version at its end: .../v2, .../v2.avsc, urn:...:v2, ...-v2,
# or a registry-style .../versions/2.
_DATASCHEMA_VERSION = re.compile(
    r"(?:(?:\A|[^A-Za-z0-9])v|/versions/)([1-9][0-9]{0,8})(?:\.avsc)?\Z", re.ASCII
)
_TRACEPARENT = re.compile(r"\A([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})\Z")
# RFC 3339 date-time: full date, `T`, full time with optional fraction, Z or an offset.
_RFC3339 = re.compile(
    r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})\Z"
)


@dataclass
class Mapped:
    """The headers the decoder reads (a copy with `js-*` filled in from `ce_*`), or the
    reason the record is refused, and disagreements that were resolved by precedence."""

    headers: dict[str, str]
    fault: str | None = None
    warnings: list[str] = field(default_factory=list)


def is_cloudevent(headers: Mapping[str, str]) -> bool:
    """The Kafka binding reserves the `ce_` prefix for event attributes."""
    return any(name.startswith(PREFIX) for name in headers)


def accepts_cloudevents(
    job_type: str, accepts: Mapping[str, Collection[str]], carries: Collection[str]
) -> bool:
    """Whether a record naming `job_type` is read as a CloudEvent. A job type this worker does
    not run is, when its topic carries one that accepts them, so that it is dead-lettered as
    `unknown_job_type` (or as not belonging on the topic), not as a missing `js-job-id`."""
    formats = accepts.get(job_type)
    if formats is not None:
        return CLOUDEVENTS in formats
    return any(CLOUDEVENTS in accepts.get(t, ()) for t in carries)


def to_jobstream(
    headers: dict[str, str],
    accepts: Mapping[str, Collection[str]],
    carries: Collection[str],
) -> Mapped:
    """Map a record's headers for the decoder. `accepts`: job type -> accepted formats, for the
    job types this worker runs (absent: jobstream only); `carries`: the job types of the
    record's topic."""
    # The common case first: a complete jobstream record of a job type on the default setting,
    # whose ce_* headers (if any) are not read.
    if (
        accepts.get(headers.get(wire.JOB_TYPE, "")) == DEFAULT_ACCEPT
        and headers.get(wire.JOB_ID)
        and headers.get(wire.SCHEMA_VERSION)
    ):
        return Mapped(headers)
    out = Mapped(headers)  # copied only when js-* headers are filled in
    ce = is_cloudevent(headers)
    job_type = headers.get(wire.JOB_TYPE) or (headers.get(TYPE, "") if ce else "")
    formats = accepts.get(job_type, DEFAULT_ACCEPT)
    if not ce:
        if JOBSTREAM not in formats:
            out.fault = (
                f"job type {job_type!r} accepts only CloudEvents records (jobs.{job_type}.accept); "
                f"this one has no {SPECVERSION} header"
            )
        return out
    if not accepts_cloudevents(job_type, accepts, carries):
        required = (wire.JOB_ID, wire.JOB_TYPE, wire.SCHEMA_VERSION)
        missing = [h for h in required if not headers.get(h)]
        if missing:
            out.fault = (
                f"missing header {missing[0]}: the record has CloudEvents (ce_*) headers, which "
                f"job type {job_type!r} does not accept (add cloudevents to jobs.{job_type}.accept)"
            )
        return out
    out.headers = dict(headers)
    try:
        _map(headers, out)
    except _Malformed as e:
        out.fault = str(e)
    return out


class _Malformed(Exception):
    pass


def _required(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name, "")
    if not value:
        raise _Malformed(f"missing header {name} (required in a CloudEvents record)")
    return value


def _fill(headers: Mapping[str, str], out: Mapped, ce: str, value: str) -> None:
    """Set the js-* header of `ce` from its value unless the record has it (js-* wins)."""
    js = MAPS_TO[ce]
    own = headers.get(js)
    if not own:
        out.headers[js] = value
    elif own != value:
        out.warnings.append(
            f"header {ce}={value[:80]!r} differs from {js}={own[:80]!r}; {js} is used"
        )


def _map(headers: Mapping[str, str], out: Mapped) -> None:
    # Every ce_* header jobstream reads must be well formed, even one that a js-* header
    # overrides: a malformed CloudEvent means a broken producer, which a dead letter shows.
    spec = headers.get(SPECVERSION)
    if spec is None:
        raise _Malformed(
            f"missing header {SPECVERSION} (a record with ce_* headers is a CloudEvent)"
        )
    if spec != SPEC_VERSION:
        raise _Malformed(f"header {SPECVERSION} must be {SPEC_VERSION}, got {spec[:40]!r}")
    _fill(headers, out, ID, _required(headers, ID))
    _fill(headers, out, TYPE, _required(headers, TYPE))
    schema = headers.get(DATASCHEMA)
    if schema is not None:
        m = _DATASCHEMA_VERSION.search(schema)
        if m is None:
            raise _Malformed(
                f"header {DATASCHEMA} does not end in a schema version (v<N>, v<N>.avsc or "
                f"/versions/<N>): "
                f"{schema[:120]!r}"
            )
        _fill(headers, out, DATASCHEMA, m.group(1))
    elif not headers.get(wire.SCHEMA_VERSION):
        raise _Malformed(
            f"missing header {DATASCHEMA} (or {wire.SCHEMA_VERSION}): the schema version"
        )
    when = headers.get(TIME)
    if when is not None:
        _fill(headers, out, TIME, str(rfc3339_ms(when)))
    trace = headers.get(TRACEPARENT)
    if trace is not None:
        if not valid_traceparent(trace):
            raise _Malformed(f"header {TRACEPARENT} is not a W3C traceparent: {trace[:80]!r}")
        _fill(headers, out, TRACEPARENT, trace)
    content_type = headers.get(CONTENT_TYPE)
    if content_type is not None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in AVRO_CONTENT_TYPES:
            raise _Malformed(
                f"header {CONTENT_TYPE} is {content_type[:60]!r}: the value must be Avro binary "
                f"({', '.join(sorted(AVRO_CONTENT_TYPES))}, or no {CONTENT_TYPE})"
            )


def rfc3339_ms(text: str) -> int:
    """An RFC 3339 timestamp (with `Z` or an offset: a time without a zone is ambiguous) as
    milliseconds since the epoch."""
    if not _RFC3339.match(text):
        raise _Malformed(f"header {TIME} is not an RFC 3339 time with a zone: {text[:60]!r}")
    # fromisoformat takes at most 6 fraction digits; RFC 3339 allows more.
    norm = re.sub(r"(\.[0-9]{6})[0-9]+", r"\1", text.upper().replace("Z", "+00:00"))
    try:
        moment = datetime.fromisoformat(norm)
    except ValueError:
        raise _Malformed(f"header {TIME} is not a valid time: {text[:60]!r}") from None
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def valid_traceparent(text: str) -> bool:
    m = _TRACEPARENT.match(text)
    if m is None:
        return False
    version, trace, span, _ = m.groups()
    return version != "ff" and trace != "0" * 32 and span != "0" * 16
