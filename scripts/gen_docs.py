"""Regenerates the parts of the documentation that are data: the benchmark and reliability
tables from their results files, and the configuration reference from the settings models.
Each generated part sits between two markers in its page:

    <!-- generated: NAME -->
    ...
    <!-- end generated -->

`.venv/bin/python scripts/gen_docs.py` rewrites them; `--check` exits 1 when a page is out of date
(tests/unit/test_docs_generated.py runs it in CI)."""

from __future__ import annotations

import json
import re
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.figures import fmt  # noqa: E402  (after the path: run as a script)

DOCS = ROOT / "docs"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def benchmarks_table() -> str:
    data = json.loads((ROOT / "benchmarks" / "results" / "latest.json").read_text())
    meta = data.get("meta", {})
    out = [
        f"Sizes: {meta.get('sizes', '?')}; {meta.get('cpus', '?')} CPUs; librdkafka "
        f"{meta.get('librdkafka', '?')}; {meta.get('seconds', 0):.0f} s in all.",
        "",
        "| benchmark | figure | measured | baseline | ratio | target | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        passed = r.get("passed")
        result = "" if passed is None else ("pass" if passed else "**miss**")
        base = ""
        if r.get("baseline") is not None:
            base = f"{fmt(r['baseline'], r.get('unit', ''))} ({r.get('baseline_name', '')})"
        ratio = f"{r['ratio']:.2f}" if r.get("ratio") is not None else ""
        out.append(
            f"| {_cell(r['bench'])} | {_cell(r['name'])} | "
            f"{_cell(fmt(r.get('measured'), r.get('unit', '')))} | {_cell(base)} | {ratio} | "
            f"{_cell(r.get('target', ''))} | {result} |"
        )
    return "\n".join(out)


def _faults(faults: dict[str, Any]) -> str:
    parts = []
    for name, value in faults.items():
        label = name.replace("_", " ")
        if isinstance(value, dict):
            inner = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in value.items())
            value = f"{sum(value.values()):,} ({inner})"
        elif isinstance(value, list):
            value = ", ".join(fmt(float(v)) for v in value)
        elif isinstance(value, str):
            continue  # a trace of the run (e.g. the fleet sizes), not a figure
        parts.append(f"{label}: {value}")
    return "; ".join(parts)


def reliability_table() -> str:
    data = json.loads((ROOT / "tests" / "chaos" / "results" / "latest.json").read_text())
    out = [
        "| scenario | jobs | faults | lost | runs after a recorded completion | "
        "dead-lettered (twice) | elapsed | passed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in data["scenarios"]:
        out.append(
            f"| {s['scenario'].replace('_', ' ')} | {s['jobs']:,} | "
            f"{_cell(_faults(s.get('faults', {})))} | {s['lost']} | "
            f"{s['runs_after_completion']} | {s['dead_lettered']:,} ({s.get('dlq_repeats', 0)}) | "
            f"{s['elapsed_s']:.0f} s | {'yes' if s.get('passed') else '**no**'} |"
        )
    return "\n".join(out)


def readme_figures() -> str:
    """The README's short table: each benchmark with a target, its figure and result."""
    data = json.loads((ROOT / "benchmarks" / "results" / "latest.json").read_text())
    out = ["| benchmark | figure | measured | target | result |", "|---|---|---|---|---|"]
    for r in data["rows"]:
        if not r.get("target"):
            continue
        measured = fmt(r.get("measured"), r.get("unit", ""))
        if r.get("ratio") is not None:
            measured += f" ({r['ratio']:.2f} x {r.get('baseline_name', 'baseline')})"
        result = "pass" if r.get("passed") else "miss"
        out.append(
            f"| {_cell(r['bench'])} | {_cell(r['name'])} | {_cell(measured)} | "
            f"{_cell(r['target'])} | {result} |"
        )
    return "\n".join(out)


@dataclass
class Section:
    """One table of the configuration reference: a model's settings under a dotted prefix."""

    name: str  # "" for the top level, "worker.dlq_guard", "jobs.<type>"
    description: str | None
    env_prefix: str
    rows: list[tuple[str, str, Any]] = field(default_factory=list)  # (dotted, env, FieldInfo)


def _unwrap_optional(tp: Any) -> Any:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _model_of(tp: Any) -> Any:
    from pydantic import BaseModel

    tp = _unwrap_optional(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def settings_sections() -> list[Section]:
    """Every setting of the Settings model tree, one Section per model, top level first."""
    from jobstream.config.settings import Settings

    sections: list[Section] = []

    def walk(model: Any, name: str, description: str | None, env: str) -> None:
        section = Section(name, description, env)
        sections.append(section)
        nested: list[tuple[Any, str, str | None, str]] = []
        for key, info in model.model_fields.items():
            dotted = f"{name}.{key}" if name else key
            sub = _model_of(info.annotation)
            if get_origin(info.annotation) is dict and _model_of(get_args(info.annotation)[1]):
                sub = _model_of(get_args(info.annotation)[1])
                ph = "name" if key == "schedules" else "type"  # what the mapping is keyed by
                nested.append((sub, f"{dotted}.<{ph}>", info.description,
                               f"{env}{key}__<{ph.upper()}>__"))
            elif sub is not None:
                nested.append((sub, dotted, info.description, f"{env}{key}__".upper()))
            else:
                section.rows.append((dotted, f"{env}{key}".upper(), info))
        for sub, sub_name, sub_description, sub_env in nested:
            walk(sub, sub_name, sub_description, sub_env)

    walk(Settings, "", Settings.__doc__, "JOBSTREAM_")
    return sections


def _duration_unit(info_or_metadata: Any) -> Any:
    from jobstream.config.durations import DurationUnit

    metadata = getattr(info_or_metadata, "metadata", info_or_metadata)
    return next((m for m in metadata if isinstance(m, DurationUnit)), None)


def _duration_type(unit: Any) -> str:
    # The prose of docs/configuration.md explains the type once, under "Durations".
    return f"[duration](#durations) in {unit.unit}"


def _type_name(tp: Any) -> str:
    from pydantic import SecretStr

    tp = _unwrap_optional(tp)
    if get_origin(tp) is Annotated:
        unit = _duration_unit(tp.__metadata__)
        return _duration_type(unit) if unit else _type_name(get_args(tp)[0])
    if get_origin(tp) is tuple:
        return "list of " + _type_name(get_args(tp)[0]).replace("duration", "durations", 1)\
            .replace("string", "strings", 1).replace("path", "paths", 1)
    if get_origin(tp) is dict:
        return "mapping"
    if isinstance(tp, type) and issubclass(tp, Enum):
        return "one of " + ", ".join(f"`{m.value}`" for m in tp)
    names = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path",
             SecretStr: "secret string"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _bounds(info: Any) -> str:
    from jobstream.config.durations import format_duration

    unit = _duration_unit(info)

    def show(v: float) -> str:
        if unit is None:
            return str(int(v)) if v == int(v) and abs(v) >= 1 else str(v)
        return format_duration(v / 1000 if unit.unit == "ms" else v)

    signs = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    parts = [
        f"{sign} {show(getattr(m, attr))}"
        for m in info.metadata
        for attr, sign in signs.items()
        if hasattr(m, attr) and type(m).__name__.lower() == attr
    ]
    return ", ".join(parts)


def _default_text(info: Any) -> str:
    from pydantic_core import PydanticUndefined

    from jobstream.config.durations import format_duration

    value = info.default_factory() if info.default_factory else info.default
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "unset"
    unit = _duration_unit(info)
    if unit is not None:
        text = format_duration(value / 1000 if unit.unit == "ms" else value)
    elif isinstance(value, Enum):
        text = str(value.value)
    elif isinstance(value, Path):
        home = str(Path.home())
        text = str(value).replace(home, "~", 1) if str(value).startswith(home) else str(value)
    elif isinstance(value, tuple):
        text = "[" + ", ".join(str(v) for v in value) + "]"
    elif isinstance(value, dict):
        text = json.dumps(value)
    else:
        text = str(value)
    return f"`{text}`"


def _rows(section: Section) -> Iterator[str]:
    yield "| setting | environment | type | default | description |"
    yield "|---|---|---|---|---|"
    for dotted, env, info in section.rows:
        unit = _duration_unit(info)
        kind = _duration_type(unit) if unit else _type_name(info.annotation)
        bounds = _bounds(info)
        if bounds:
            kind += f", {bounds}"
        yield (
            f"| `{_cell(dotted)}` | `{_cell(env)}` | {_cell(kind)} | "
            f"{_cell(_default_text(info))} | {_cell(info.description or '')} |"
        )


def configuration_reference() -> str:
    out: list[str] = []
    for section in settings_sections():
        out.append(f"### `{section.name}`" if section.name else "### Top level")
        out.append("")
        if section.name and section.description:
            out += [section.description, ""]
        out += [*_rows(section), ""]
    return "\n".join(out).rstrip()


def settings_without_description() -> list[str]:
    """Dotted names of settings, sections included, that have no description."""
    missing = []
    for section in settings_sections():
        if section.name and not section.description:
            missing.append(section.name)
        missing += [dotted for dotted, _, info in section.rows if not info.description]
    return missing


GENERATORS: dict[str, Callable[[], str]] = {
    "benchmarks": benchmarks_table,
    "configuration": configuration_reference,
    "readme-figures": readme_figures,
    "reliability": reliability_table,
}

_BLOCK = re.compile(
    r"(<!-- generated: (?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S
)


def render(text: str) -> str:
    def sub(m: re.Match[str]) -> str:
        gen = GENERATORS[m.group("name")]
        return f"{m.group(1)}{gen()}\n{m.group(4)}"

    return _BLOCK.sub(sub, text)


def stale_pages() -> list[Path]:
    """Pages whose generated parts differ from what the generators make now."""
    pages = [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]
    return [p for p in pages if render(p.read_text()) != p.read_text()]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    stale = stale_pages()
    if "--check" in args:
        for p in stale:
            print(f"{p.relative_to(ROOT)} is out of date: run .venv/bin/python scripts/gen_docs.py")
        return 1 if stale else 0
    for p in stale:
        p.write_text(render(p.read_text()))
        print(f"regenerated {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
