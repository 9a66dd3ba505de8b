"""Config dataclass fields as knobs: each field carries its help text (`knob("…")`), so the CLI
(`treasure.cli._from_config`) and YAML recipes derive from the dataclass instead of repeating it.

A field whose type is itself a dataclass (e.g. `GenerationConfig`) contributes its own knobs, flattened.
Fields without `knob` metadata are library-only.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from types import NoneType, UnionType
from typing import Any

HELP, FLAGS, ENVVAR = "help", "flags", "envvar"


def knob(help: str, *flags: str, envvar: str | None = None) -> dict[str, Any]:
    """Field metadata: the option's help; its flags if not `--field-name` (e.g. "--drain", "-o"); an
    environment variable it may come from."""
    return {HELP: help, FLAGS: flags, ENVVAR: envvar}


@dataclasses.dataclass(frozen=True)
class Knob:
    name: str
    path: tuple[str, ...]  # attribute path from the top config (nested dataclasses)
    kind: Any  # the field's resolved type
    default: Any
    help: str
    flags: tuple[str, ...]
    envvar: str | None


def optional_type(kind: Any) -> tuple[Any, bool]:
    args = typing.get_args(kind)
    if (typing.get_origin(kind) in (typing.Union, UnionType)) and NoneType in args:
        rest = [a for a in args if a is not NoneType]
        return (rest[0] if len(rest) == 1 else str), True
    return kind, False


def knobs(config_cls: type, path: tuple[str, ...] = ()) -> Iterator[Knob]:
    """Every CLI knob of `config_cls`, nested dataclass fields flattened, in declaration order."""
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(optional_type(kind)[0]):
            yield from knobs(optional_type(kind)[0], (*path, f.name))
            continue
        if HELP not in f.metadata:
            continue
        default = f.default if f.default is not dataclasses.MISSING else ...
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        meta = f.metadata
        yield Knob(f.name, (*path, f.name), kind, default, meta[HELP], meta[FLAGS], meta[ENVVAR])
