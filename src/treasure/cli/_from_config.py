"""Typer commands derived from config dataclasses (`treasure.knobs`): one option per knob, so each knob is
declared once, in its field. Tuple fields take a comma-separated list; mappings take repeated NAME=VALUE;
`X | None` text fields take the word `none` for None; booleans get `--x/--no-x`.

Only the options given on the command line (or through their environment variable) reach the config: the
others keep the value from `--config FILE.yaml` (or the command's own `recipe` loader), else the default."""

from __future__ import annotations

import collections.abc
import inspect
import re
import typing
from collections.abc import Callable
from pathlib import Path
from types import NoneType
from typing import Any

import typer

from treasure.errors import TreasureError
from treasure.knobs import Knob, build_config, knobs, load_config_file, optional_type

Recipe = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
CONTEXT, CONFIG_FILE = "treasure_context", "config_file"


def _is_mapping(kind: Any) -> bool:
    origin = typing.get_origin(kind) or kind
    return isinstance(origin, type) and issubclass(origin, collections.abc.Mapping)


def _cli_type(k: Knob) -> tuple[Any, Callable[[Any], Any]]:
    """The type Typer parses and the conversion to the field's value."""
    base, optional = optional_type(k.kind)
    if k.parse is not None:
        return (str | None), k.parse
    if _is_mapping(base):
        return list[str], name_values
    if typing.get_origin(base) is tuple:
        element = typing.get_args(base)[0] if typing.get_args(base) else str
        element = element if element in (int, float, Path) else str

        def to_tuple(text: str | None) -> tuple[Any, ...] | None:
            if text is None or (optional and text.strip().lower() == "none"):
                return None
            return tuple(element(part.strip()) for part in text.split(",") if part.strip())

        return (str | None), to_tuple
    if typing.get_origin(base) is typing.Literal:
        base = str
    if optional and base in (str, Path):

        def none_word(text: Any) -> Any:
            return None if text is not None and str(text).lower() == "none" else text

        return (base | None), none_word
    return (base | None) if optional or k.optional_group else base, lambda value: value


def _cli_default(k: Knob) -> Any:
    if _is_mapping(optional_type(k.kind)[0]):
        mapping = k.default if isinstance(k.default, collections.abc.Mapping) else {}
        return [f"{name}={value}" for name, value in mapping.items()]
    if k.default is ... and k.optional_group:
        return None  # required inside its config, but the config itself is optional
    if isinstance(k.default, tuple):
        return ",".join(map(str, k.default))
    if k.parse is not None and not isinstance(k.default, str | int | float | NoneType):
        return None  # e.g. a Taxonomy: shown as no default, the field's own default applies
    return k.default


def name_values(pairs: list[str]) -> dict[str, str]:
    """Repeated NAME=VALUE arguments as a mapping; a missing '=' is a clear error."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"expected NAME=VALUE, got {pair!r}")
        out[name.strip()] = value.strip()
    return out


def parameter(name: str, annotation: Any, info: Any) -> inspect.Parameter:
    """A command parameter that is not a knob (an input or output), e.g. `typer.Argument(...)`."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=info)


def _flags(k: Knob) -> list[str]:
    long = next((f[2:] for f in k.flags if f.startswith("--")), k.name.replace("_", "-"))
    short = [f for f in k.flags if not f.startswith("--")]
    return [f"--{long}/--no-{long}" if optional_type(k.kind)[0] is bool else f"--{long}", *short]


def command(
    config_cls: type,
    run: Callable[..., None],
    *,
    extra: list[inspect.Parameter] | None = None,
    recipe: Recipe | None = None,
) -> Callable[..., None]:
    """A Typer command taking one option per knob of `config_cls` (plus `extra` parameters, see
    `parameter`) that builds the config and calls `run(config, **extra_values)`.

    `recipe(given, extra_values)` (optional) returns field values (nested configs as dicts) that the
    options given on the command line override; `given` holds those options' values by knob name."""
    parameters = [parameter(CONTEXT, typer.Context, inspect.Parameter.empty)]
    converters: dict[str, tuple[Knob, Callable[[Any], Any]]] = {}
    for k in knobs(config_cls):
        if k.name in converters:
            raise TypeError(f"{config_cls.__name__}: knob {k.name!r} declared twice")
        kind, convert = _cli_type(k)
        converters[k.name] = (k, convert)
        if k.positional:
            info = typer.Argument(
                ... if k.default is ... else _cli_default(k), metavar=k.name.upper(), help=k.help
            )
        else:
            info = typer.Option(_cli_default(k), *_flags(k), help=k.help, envvar=k.envvar)
        parameters.append(parameter(k.name, kind, info))
    parameters += extra or []
    if recipe is None:  # every derived command reads a YAML file of its config's fields
        recipe = _yaml_recipe(config_cls)
        help = f"YAML file of {config_cls.__name__} fields (nested configs as mappings); options given win."
        parameters.append(
            parameter(CONFIG_FILE, Path | None, typer.Option(None, "--config", "-c", help=help))
        )

    options = _option_names(converters, extra or [])

    def invoke(**values: Any) -> None:
        context: typer.Context = values.pop(CONTEXT)
        given: dict[str, Any] = {}
        for name, (_, convert) in converters.items():
            value = values.pop(name)
            source = context.get_parameter_source(name)
            if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT"):
                given[name] = convert(value)
        tree = recipe(dict(given), values)
        for name, value in given.items():
            node = tree
            for step in converters[name][0].path[:-1]:
                node = node.setdefault(step, {})
            node[converters[name][0].path[-1]] = value
        _check_groups(converters, tree)
        try:
            run(build_config(config_cls, tree), **values)
        except TreasureError as error:  # errors name fields: the user gave options, so name those
            error.args = (in_options(str(error), options),)
            raise

    invoke.__name__, invoke.__doc__ = run.__name__, run.__doc__
    invoke.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    invoke.__annotations__ = {p.name: p.annotation for p in parameters}
    return invoke


def in_options(message: str, options: dict[str, tuple[str, ...]]) -> str:
    """`message` with each field it names written as the option setting it: a name in backticks, or a bare
    one with a `_` or `.` (not a plain word, nor part of a path, quote or longer name). `options` maps each
    flag to the names its field goes by."""
    for flag, names in options.items():
        for name in sorted(names, key=len, reverse=True):
            message = message.replace(f"`{name}`", flag)
            if "_" in name or "." in name:
                bare = rf"(?<![\w.\-/'\"]){re.escape(name)}(?![\w\-/'\"]|\.\w)"
                message = re.sub(bare, flag, message)
    return message


def _option_names(
    converters: dict[str, tuple[Knob, Any]], extra: list[inspect.Parameter]
) -> dict[str, tuple[str, ...]]:
    """Each option's flag → the names its field goes by (knob name, dotted path, last part; an extra
    parameter's name)."""
    options = {
        _flags(k)[0].split("/")[0]: (k.name, ".".join(k.path), k.path[-1]) for k, _ in converters.values()
    }
    for p in extra:
        decls = [d for d in getattr(p.default, "param_decls", None) or () if d.startswith("--")]
        if decls:
            options.setdefault(decls[0].split("/")[0], (p.name,))
    return options


def _yaml_recipe(config_cls: type) -> Recipe:
    def recipe(given: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        path = extra.pop(CONFIG_FILE)
        return load_config_file(config_cls, path) if path is not None else {}

    return recipe


def _check_groups(converters: dict[str, tuple[Knob, Any]], tree: dict[str, Any]) -> None:
    """An optional config (e.g. `llm`) set at all, by options or the YAML file, needs every field it has no
    default for."""
    groups: dict[tuple[str, ...], list[Knob]] = {}
    for k, _ in converters.values():
        if k.optional_group is not None:
            groups.setdefault(k.optional_group, []).append(k)
    for group, members in groups.items():
        values: Any = tree
        for step in group:
            values = values.get(step) if isinstance(values, dict) else None
        if not isinstance(values, dict) or not values:
            continue
        required = [k for k in members if k.default is ...]
        if any(k.path[-1] not in values for k in required):
            needed = " and ".join(_flags(k)[0] for k in required)
            set_by = next((_flags(k)[0] for k in members if k.path[-1] in values), ".".join(group))
            raise typer.BadParameter(f"{needed} go together ({set_by} was given)")
