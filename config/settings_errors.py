"""How settings problems are worded: validation errors that never echo a secret, and warnings
for `JOBSTREAM_*` environment variables that name no setting (pydantic-settings ignores them)."""

from __future__ import annotations

import difflib
import json
import re
import types
from collections.abc import Iterator, Mapping
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

PREFIX = "JOBSTREAM_"
# librdkafka and our own names that hold secrets, or may (a JAAS or OAuth config line).
_SECRET = re.compile(
    r"pass|pwd|secret|token|credential|private|jaas|api[._-]?key|ssl[._]key|oauthbearer[._]config",
    re.IGNORECASE,
)
# Expected a section or a collection: the input may be a whole section written as one string.
_CONTAINER_ERRORS = {
    "model_type", "model_attributes_type", "dict_type", "mapping_type", "list_type",
    "tuple_type", "set_type", "dataclass_type", "iterable_type",
}
# pydantic names each member of a `str | int | float | bool` union in the error location.
_UNION_TAGS = {"str", "int", "float", "bool"}
_MAX_SHOWN = 120
# Variables of jobstream's own tooling (tests, benchmarks, scripts), not settings.
_TOOLING = {"JOBSTREAM_DEBUG", "JOBSTREAM_CACHE", "JOBSTREAM_FRESH_BROKER"}
_TOOLING_PREFIXES = ("JOBSTREAM_TEST_", "JOBSTREAM_CHAOS_", "JOBSTREAM_BENCH_")
# Kubernetes service links for a Service named jobstream[-...] (JOBSTREAM_SERVICE_HOST, ...).
_SERVICE_LINK = re.compile(r"^JOBSTREAM(_\w+?)?_(SERVICE_HOST|SERVICE_PORT\w*|PORT(_\d+_\w+)?)$")


def is_secret_name(name: str) -> bool:
    return bool(_SECRET.search(name))


def _unwrap(tp: Any) -> Any:
    """`X | None` -> X."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _model_at(model: type[BaseModel], path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class at a location (dict keys stepped over), or None."""
    tp: Any = model
    for part in path:
        tp = _unwrap(tp)
        if _is_model(tp):
            field = tp.model_fields.get(str(part))
            if field is None:
                return None
            tp = field.annotation
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        else:
            return None
    tp = _unwrap(tp)
    return tp if _is_model(tp) else None


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple, set)):
        return "a list"
    return f"a {type(value).__name__}"


def _shown(err: Mapping[str, Any], name: str) -> str:
    """What to say about the input: its value only when it cannot be a secret."""
    value = err.get("input")
    if err["type"] == "extra_forbidden" or is_secret_name(name):
        return "value not shown"
    scalar = value is None or isinstance(value, (bool, int, float, str))
    if not scalar or err["type"] in _CONTAINER_ERRORS:
        return f"got {_kind(value)}, not shown"  # a whole section, as one string or nested
    text = repr(value)
    return f"got {text}" if len(text) <= _MAX_SHOWN else f"got {_kind(value)}, not shown"


def _merge(msgs: list[str]) -> str:
    lead = "Input should be a valid "
    if len(msgs) > 1 and all(m.startswith(lead) for m in msgs):
        kinds = [m[len(lead):] for m in msgs]
        return lead + ", ".join(kinds[:-1]) + " or " + kinds[-1]
    return "; ".join(dict.fromkeys(msgs))


def describe_errors(e: ValidationError, model: type[BaseModel]) -> str:
    """One line per wrong setting, named by its dotted path; union branches merged."""
    errors = e.errors()
    stripped = [
        tuple(err["loc"][:-1])
        if len(err["loc"]) > 1 and err["loc"][-1] in _UNION_TAGS
        else tuple(err["loc"])
        for err in errors
    ]
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for loc, err in zip(stripped, errors, strict=True):
        # A lone tagged error is not a union's branch: keep its full location.
        key = loc if stripped.count(loc) > 1 else tuple(err["loc"])
        groups.setdefault(key, []).append(err)
    lines = []
    for loc, errs in groups.items():
        name = ".".join(str(p) for p in loc) or "settings"
        first = errs[0]
        # pydantic's "Value error, " before a validator's own message says nothing to a user.
        msg = _merge([str(err["msg"]).removeprefix("Value error, ") for err in errs])
        if first["type"] == "extra_forbidden":
            msg = "unknown setting"
            known = _model_at(model, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), list(known.model_fields), 1, 0.6) \
                if known else []
            if close:
                parent = ".".join(str(p) for p in loc[:-1])
                msg += f"; did you mean {parent + '.' if parent else ''}{close[0]}?"
        value = first.get("input")
        shown = _shown(first, name)
        if isinstance(value, str) and value and not shown.startswith("got '"):
            msg = msg.replace(value, "***")  # a validator may have quoted it in its message
        lines.append(f"  {name}: {msg} ({shown})")
    return "invalid settings:\n" + "\n".join(lines)


def describe_env_parse_error(message: str, environ: Mapping[str, str]) -> str:
    """pydantic-settings could not JSON-decode a variable: name it, never its value."""
    m = re.search(r'field "([^"]+)"', message)
    field = (m.group(1) if m else "").upper()
    bad = []
    for var, value in environ.items():
        upper = var.upper()
        if field and (upper == PREFIX + field or upper.startswith(f"{PREFIX}{field}__")):
            try:
                json.loads(value)
            except ValueError:
                bad.append(var)
    names = ", ".join(sorted(bad)) or f"{PREFIX}{field}*"
    return (
        f"environment {names}: not valid JSON (a section, list or mapping set in one variable "
        f"is written as JSON, e.g. JOBSTREAM_KAFKA__EXTRA='{{\"linger.ms\": 5}}'; value not shown)"
    )


def _env_names(model: type[BaseModel], prefix: str = PREFIX) -> Iterator[str]:
    for field_name, field in model.model_fields.items():
        full = prefix + field_name.upper()
        yield full
        tp = _unwrap(field.annotation)
        if _is_model(tp):
            yield from _env_names(tp, full + "__")


def unknown_env(environ: Mapping[str, str], model: type[BaseModel]) -> list[str]:
    """A warning for each `JOBSTREAM_*` variable that pydantic-settings will ignore."""
    top = {name.upper() for name in model.model_fields}
    known = list(_env_names(model))
    squeezed = {re.sub("_+", "_", k): k for k in known}
    warnings = []
    for var in sorted(environ):
        upper = var.upper()
        if not upper.startswith(PREFIX) or upper in _TOOLING:
            continue
        if upper.startswith(_TOOLING_PREFIXES) or _SERVICE_LINK.match(upper):
            continue
        if upper[len(PREFIX):].split("__", 1)[0] in top:
            continue  # a setting; pydantic reports a wrong nested name itself
        guess = squeezed.get(re.sub("_+", "_", upper)) or next(
            iter(difflib.get_close_matches(upper, known, 1, 0.75)), None
        )
        hint = (
            f"; did you mean {guess}?"
            if guess
            else " (settings are JOBSTREAM_<SECTION>__<KEY>, two underscores between parts)"
        )
        warnings.append(
            f"environment variable {var} is not a jobstream setting and is ignored{hint}"
        )
    return warnings
