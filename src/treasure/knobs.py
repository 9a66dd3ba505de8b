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
import difflib
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import NoneType, UnionType
from typing import Any

import yaml

from treasure.errors import TreasureError

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


def nested_config(f: dataclasses.Field, kind: Any) -> bool:
    """Whether field `f` (of type `kind`, `X | None` unwrapped) is a nested config of ours: a dataclass
    that is not itself a knob (e.g. a Taxonomy read from a path), nor a foreign library's field."""
    meta = f.metadata
    return dataclasses.is_dataclass(kind) and not meta.get(KNOB) and (GROUP in meta or not meta)


def default_of(config_cls: type, name: str) -> Any:
    """The default of field `name` (`...` when it has none)."""
    return _default(next(f for f in dataclasses.fields(config_cls) if f.name == name))


def knobs(
    config_cls: type,
    path: tuple[str, ...] = (),
    prefix: str = "",
    optional_group: tuple[str, ...] | None = None,
    exclude: tuple[str, ...] = (),
    base: Any = None,
) -> Iterator[Knob]:
    """Every CLI knob of `config_cls`, nested dataclass fields flattened, in declaration order. A nested
    config's knobs default to the outer field's default instance (`base`), not to the nested class's."""
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        kind, optional = optional_type(hints[f.name])
        if f.name in exclude:
            continue
        default = getattr(base, f.name) if base is not None else _default(f)
        meta = f.metadata
        if nested_config(f, kind):
            inner = f"{prefix}{meta[GROUP]}_" if meta.get(GROUP) else prefix
            group_path = (*path, f.name) if optional and optional_group is None else optional_group
            nested_base = default if dataclasses.is_dataclass(default) else None
            yield from knobs(kind, (*path, f.name), inner, group_path, meta.get(EXCLUDE, ()), nested_base)
            continue
        if not meta.get(KNOB):
            continue
        yield Knob(
            f"{prefix}{f.name}",
            (*path, f.name),
            hints[f.name],
            default,
            meta[HELP],
            meta[FLAGS],
            meta[ENVVAR],
            meta.get(PARSE),
            meta.get(POSITIONAL, False),
            optional_group,
        )


def config_values(
    config_cls: type, data: Any, where: str, renamed: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A YAML mapping of `config_cls` fields (nested configs as mappings) checked and typed: lists become
    tuples, strings become paths where the field says so, `parse` knobs parse their text. An unknown key
    is an error naming `where` and the key (with its new name when `renamed` has one)."""
    if not isinstance(data, Mapping):
        raise TreasureError(f"{where}: expected a mapping of {config_cls.__name__} fields, got {data!r}")
    data = nest_flat_keys(config_cls, data, where)
    check_keys(config_cls, data, where, renamed)
    hints = typing.get_type_hints(config_cls)
    by_name = {f.name: f for f in dataclasses.fields(config_cls)}
    out = {}
    for key, value in data.items():
        kind, _ = optional_type(hints[key])
        parse = by_name[key].metadata.get(PARSE)
        if nested_config(by_name[key], kind) and isinstance(value, Mapping):
            out[key] = config_values(kind, value, f"{where}: {key}")
        elif parse is not None and isinstance(value, str):
            out[key] = parse(value)
        else:
            out[key] = _typed(hints[key], value)
    return out


def flat_names(config_cls: type) -> dict[str, set[tuple[str, ...]]]:
    """Each name a nested config's field goes by when written flat (its own name, e.g. `annotators`, or its
    knob name, e.g. `llm_endpoint`) → the field paths it may mean."""
    out: dict[str, set[tuple[str, ...]]] = {}
    for path in _leaf_paths(config_cls):
        if len(path) > 1:
            out.setdefault(path[-1], set()).add(path)
    for k in knobs(config_cls):
        if len(k.path) > 1:
            out.setdefault(k.name, set()).add(k.path)
    return out


def _leaf_paths(config_cls: type, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        if nested_config(f, optional_type(hints[f.name])[0]):
            yield from _leaf_paths(optional_type(hints[f.name])[0], (*path, f.name))
        elif f.init:
            yield (*path, f.name)


def nest_flat_keys(config_cls: type, data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """`data` with each key that is no field of `config_cls` but names one field of a nested config (see
    `flat_names`) moved under that config, e.g. `annotators: [rules]` → `annotate: {annotators: [rules]}`.
    Keys that may mean several fields stay where they are (and are reported as unknown)."""
    fields_here = {f.name for f in dataclasses.fields(config_cls)}
    out = dict(data)
    flat = flat_names(config_cls) if set(data) - fields_here else {}
    for key in set(data) - fields_here:
        if len(flat.get(key, ())) != 1:
            continue
        [path] = flat[key]
        node = out
        for step in path[:-1]:
            inner = node.get(step)
            node[step] = dict(inner) if isinstance(inner, Mapping) else {} if inner is None else inner
            node = node[step]
        if not isinstance(node, dict) or path[-1] in node:
            raise TreasureError(f"{where}: {key} is given twice (also under {'.'.join(path[:-1])})")
        node[path[-1]] = out.pop(key)
    return out


def check_keys(
    config_cls: type, data: Mapping[str, Any], where: str, renamed: Mapping[str, str] | None = None
) -> None:
    """Every key must be a field of `config_cls`; else one error naming `where` and each unknown key with
    close matches (or its new name from `renamed`)."""
    names = [f.name for f in dataclasses.fields(config_cls) if f.init]
    unknown = sorted(str(key) for key in set(data) - set(names))
    if not unknown:
        return
    flat = flat_names(config_cls)
    described = []
    for key in unknown:
        close = difflib.get_close_matches(key, names + sorted(n for n, p in flat.items() if len(p) == 1), n=3)
        close = [renamed[key]] if renamed and key in renamed else close
        described.append(f"{key} (did you mean {' or '.join(close)}?)" if close else key)
    raise TreasureError(f"{where}: unknown key(s) {', '.join(described)}: not a {config_cls.__name__} field")


def _typed(kind: Any, value: Any) -> Any:
    """`value` as read from YAML, with lists made tuples and text made paths where `kind` asks for them."""
    kind, _ = optional_type(kind)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if value is None:
        return None
    if origin is tuple and isinstance(value, list):
        element = args[0] if args else Any
        return tuple(_typed(element, v) for v in value)
    if origin in (dict, Mapping) and isinstance(value, Mapping) and len(args) == 2:
        return {k: _typed(args[1], v) for k, v in value.items()}
    if kind is Path and isinstance(value, str):
        return Path(value)
    return value


def load_config_file(
    config_cls: type, path: str | Path, renamed: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """`config_values` of a YAML file; a missing or malformed file is one error naming it."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TreasureError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise TreasureError(f"{path}: not valid YAML ({exc})".replace("\n", " ")) from None
    return config_values(config_cls, data or {}, str(path), renamed)


def build_config(config_cls: type, values: Mapping[str, Any], base: Any = None) -> Any:
    """`config_cls` from field values (nested configs as mappings, e.g. from `load_config_file`); the fields
    not given keep `base`'s values (a nested config's default instance) or the class defaults."""
    hints = typing.get_type_hints(config_cls)
    by_name = {f.name: f for f in dataclasses.fields(config_cls)}
    out = {}
    for name, value in values.items():
        kind = optional_type(hints[name])[0]
        if nested_config(by_name[name], kind) and isinstance(value, Mapping):
            default = getattr(base, name) if base is not None else default_of(config_cls, name)
            value = build_config(kind, value, default if dataclasses.is_dataclass(default) else None)
        out[name] = value
    return dataclasses.replace(base, **out) if base is not None else config_cls(**out)
