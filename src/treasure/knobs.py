"""Config dataclass fields as knobs: each field carries its help text (`knob("…")`), so the CLI
(`treasure.cli._from_config`) and YAML recipes derive from the dataclass instead of repeating it.

A field whose type is itself a dataclass (e.g. `GenerationConfig`) contributes its own knobs, flattened;
`group("llm")` in its metadata prefixes their names (`llm_endpoint`, `--llm-endpoint`), and an optional one
(`LLMConfig | None`) is built only when one of its knobs is given. Fields without `knob` metadata are
library-only, including fields a config inherits from a foreign dataclass (e.g. TRL's `SFTConfig`, whose
fields carry a `help` of their own): only metadata made by `knob` (it holds the `KNOB` marker) counts.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterator
from types import NoneType, UnionType
from typing import Any

HELP, FLAGS, ENVVAR, PARSE, POSITIONAL = "help", "flags", "envvar", "parse", "positional"
GROUP, EXCLUDE = "group", "exclude"
KNOB = "treasure_knob"  # marks metadata made by `knob` (foreign dataclasses use "help" too)


def knob(
    help: str,
    *flags: str,
    envvar: str | None = None,
    parse: Callable[[str | None], Any] | None = None,
    positional: bool = False,
) -> dict[str, Any]:
    """Field metadata: the option's help; its flags if not `--field-name` (e.g. "--drain", "-o"); an
    environment variable it may come from; `parse` turning the text given (None when not given) into the
    field's value; `positional` for a command argument instead of an option."""
    return {KNOB: True, HELP: help, FLAGS: flags, ENVVAR: envvar, PARSE: parse, POSITIONAL: positional}


def group(prefix: str = "", exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """Metadata of a nested-config field: its knobs' names get `prefix_`; `exclude` lists fields of the
    nested config that are not knobs here (e.g. a seed the outer config sets)."""
    return {GROUP: prefix, EXCLUDE: exclude}


@dataclasses.dataclass(frozen=True)
class Knob:
    name: str  # unique among the config's knobs: the field name with its groups' prefixes
    path: tuple[str, ...]  # attribute path from the top config (nested dataclasses)
    kind: Any  # the field's resolved type
    default: Any  # `...` when the field has none
    help: str
    flags: tuple[str, ...]
    envvar: str | None
    parse: Callable[[str | None], Any] | None
    positional: bool
    optional_group: tuple[str, ...] | None  # path of the `X | None` config it belongs to, if any


def optional_type(kind: Any) -> tuple[Any, bool]:
    """`X | None` → (X, True); anything else → (kind, False)."""
    args = typing.get_args(kind)
    if (typing.get_origin(kind) in (typing.Union, UnionType)) and NoneType in args:
        rest = [a for a in args if a is not NoneType]
        return (rest[0] if len(rest) == 1 else str), True
    return kind, False


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return ...


def knobs(
    config_cls: type,
    path: tuple[str, ...] = (),
    prefix: str = "",
    optional_group: tuple[str, ...] | None = None,
    exclude: tuple[str, ...] = (),
) -> Iterator[Knob]:
    """Every CLI knob of `config_cls`, nested dataclass fields flattened, in declaration order."""
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        kind, optional = optional_type(hints[f.name])
        if f.name in exclude:
            continue
        meta = f.metadata
        if dataclasses.is_dataclass(kind) and (GROUP in meta or not meta):  # not a foreign field's
            inner = f"{prefix}{meta[GROUP]}_" if meta.get(GROUP) else prefix
            group_path = (*path, f.name) if optional and optional_group is None else optional_group
            yield from knobs(kind, (*path, f.name), inner, group_path, meta.get(EXCLUDE, ()))
            continue
        if not meta.get(KNOB):
            continue
        yield Knob(
            f"{prefix}{f.name}",
            (*path, f.name),
            hints[f.name],
            _default(f),
            meta[HELP],
            meta[FLAGS],
            meta[ENVVAR],
            meta.get(PARSE),
            meta.get(POSITIONAL, False),
            optional_group,
        )
