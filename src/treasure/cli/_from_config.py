"""Typer commands derived from config dataclasses (`treasure.knobs`): one option per knob, so each knob is
declared once, in its field. Tuple fields take a comma-separated list; `X | None` text fields take the word
`none` for None; booleans get `--x/--no-x`."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from treasure.knobs import Knob, knobs, optional_type


def _cli_type(kind: Any) -> tuple[Any, Callable[[Any], Any]]:
    """The type Typer parses and the conversion to the field's value."""
    base, optional = optional_type(kind)
    if typing.get_origin(base) is tuple:

        def to_tuple(text: str | None) -> tuple[str, ...] | None:
            if text is None or (optional and text.strip().lower() == "none"):
                return None
            return tuple(part.strip() for part in text.split(",") if part.strip())

        return (str | None), to_tuple
    if typing.get_origin(base) is typing.Literal:
        base = str
    if optional and base in (str, Path):

        def none_word(text: Any) -> Any:
            return None if text is not None and str(text).lower() == "none" else text

        return (base | None), none_word
    return (base | None) if optional else base, lambda value: value


def _cli_default(default: Any) -> Any:
    if isinstance(default, tuple):
        return ",".join(map(str, default))
    return default


def parameter(name: str, annotation: Any, info: Any) -> inspect.Parameter:
    """A command parameter that is not a knob (an input or output), e.g. `typer.Argument(...)`."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=info)


def command(
    config_cls: type, run: Callable[..., None], *, extra: list[inspect.Parameter] | None = None
) -> Callable[..., None]:
    """A Typer command taking one option per knob of `config_cls` (plus `extra` parameters, see
    `parameter`) that builds the config and calls `run(config, **extra_values)`."""
    parameters: list[inspect.Parameter] = []
    converters: dict[str, tuple[Knob, Callable[[Any], Any]]] = {}
    for k in knobs(config_cls):
        if k.name in converters:
            raise TypeError(f"{config_cls.__name__}: knob {k.name!r} declared twice")
        kind, convert = _cli_type(k.kind)
        converters[k.name] = (k, convert)
        long = next((f[2:] for f in k.flags if f.startswith("--")), k.name.replace("_", "-"))
        short = tuple(f for f in k.flags if not f.startswith("--"))
        flag = f"--{long}/--no-{long}" if optional_type(k.kind)[0] is bool else f"--{long}"
        info = typer.Option(_cli_default(k.default), flag, *short, help=k.help, envvar=k.envvar)
        parameters.append(parameter(k.name, kind, info))
    parameters += extra or []

    def invoke(**values: Any) -> None:
        tree: dict[str, Any] = {}
        for name, (k, convert) in converters.items():
            node = tree
            for step in k.path[:-1]:
                node = node.setdefault(step, {})
            node[k.path[-1]] = convert(values.pop(name))
        run(_build(config_cls, tree), **values)

    invoke.__name__, invoke.__doc__ = run.__name__, run.__doc__
    invoke.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    invoke.__annotations__ = {p.name: p.annotation for p in parameters}
    return invoke


def _build(config_cls: type, tree: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(config_cls)
    values = {}
    for name, value in tree.items():
        kind = optional_type(hints[name])[0]
        values[name] = _build(kind, value) if dataclasses.is_dataclass(kind) else value
    return config_cls(**values)
