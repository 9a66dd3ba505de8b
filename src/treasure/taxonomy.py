"""Marker definitions: the default taxonomy (the paper's 13 categories), YAML load/validate/save.

A taxonomy is data. `Taxonomy.load(path)` reads either a full definition or a file that starts with
`extends: default` and lists changes (`add_values`, `remove_values`, `thresholds`, `user_settable`,
new markers). Every problem is collected and reported at once, each with the file and key.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from treasure.errors import MarkerError, TaxonomyError

Kind = Literal["categorical", "ordinal", "integer", "float"]
KINDS: tuple[str, ...] = ("categorical", "ordinal", "integer", "float")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
VALUE_RE = re.compile(r"^[^<>\n\r&]+$")
DEFAULT_FILE = "default_taxonomy.yaml"
GIVEN = "given"  # the `annotator` of a marker the data carries (see annotate/registry.py)
MARKER_KEYS = {
    "kind",
    "values",
    "annotator",
    "user_settable",
    "description",
    "minimum",
    "maximum",
    "of",
    "thresholds",
    "quantiles",
    "within",
}
CHANGE_KEYS = {"add_values", "remove_values"}
NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
INT_RE = re.compile(r"^[+-]?\d+$")
_KIND_WORD = {"integer": "a whole number", "float": "a finite number"}


def _number(raw: Any, kind: str) -> int | float | None:
    """`raw` as a finite int (kind integer) or float, or None. Text must be a plain decimal number."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, str):
        text = raw.strip()
        if kind == "integer" and INT_RE.match(text) and len(text) <= 4000:
            return int(text)
        if not NUMBER_RE.match(text):
            return None
        raw = text
    if kind == "integer" and isinstance(raw, int):
        return raw
    try:
        number = float(raw)
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(number):
        return None
    if kind == "integer":
        return int(number) if number == int(number) else None
    return number


@dataclass(frozen=True)
class Marker:
    """One marker category: its name, kind, allowed values or range, annotator and user control."""

    name: str
    kind: Kind
    values: tuple[str, ...] = ()
    annotator: str = GIVEN
    user_settable: bool = True
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    of: str | None = None
    thresholds: tuple[float, ...] = ()
    quantiles: int | None = None
    within: str | None = None

    def canonical(self, raw: Any) -> str | int | float:
        """Return `raw` as this marker's canonical value, or raise `MarkerError` listing valid ones."""
        if self.kind in ("categorical", "ordinal"):
            text = str(raw).strip()
            for value in self.values:
                if value.lower() == text.lower():
                    return value
            raise MarkerError(
                f"invalid value {_show(raw)} for marker '{self.name}'; valid: {', '.join(self.values)}"
            )
        number = _number(raw, self.kind)
        if number is None:
            raise MarkerError(
                f"invalid value {_show(raw)} for marker '{self.name}': expected {_KIND_WORD[self.kind]}"
            )
        if self.minimum is not None and number < self.minimum:
            raise MarkerError(f"value {_show(raw)} for marker '{self.name}' is below {self.minimum}")
        if self.maximum is not None and number > self.maximum:
            raise MarkerError(f"value {_show(raw)} for marker '{self.name}' is above {self.maximum}")
        return number

    def bucket_of(self, number: float, thresholds: tuple[float, ...] | None = None) -> str:
        """Ordinal value for `number` given ascending thresholds.

        With thresholds (a, b): value < a -> first, a <= value <= b -> middle, value > b -> last.
        """
        cuts = self._cuts(thresholds)
        index = int(number >= cuts[0]) + sum(number > cut for cut in cuts[1:])
        return self.values[index]

    def bucket_within(self, limit: float) -> str:
        """The longest ordinal value whose whole range stays at or under `limit` (first value if none).

        With thresholds (a, b): the middle value fits when b <= limit; the last value is unbounded and
        never fits; the first value is the fallback.
        """
        cuts = self._cuts()
        fitting = [i for i, cut in enumerate(cuts[1:], start=1) if cut <= limit]
        return self.values[max(fitting, default=0)]

    def _cuts(self, thresholds: tuple[float, ...] | None = None) -> tuple[float, ...]:
        """The bucket thresholds (`thresholds` or the marker's own), checked against the values."""
        cuts = self.thresholds if thresholds is None else thresholds
        if self.kind != "ordinal" or len(cuts) != len(self.values) - 1:
            raise MarkerError(
                f"marker '{self.name}' cannot bucket numbers: it needs {max(len(self.values) - 1, 0)} "
                f"thresholds, has {len(cuts)}"
            )
        return cuts

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (what the YAML file holds), leaving out unset fields."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.values:
            out["values"] = list(self.values)
        out["annotator"] = self.annotator
        out["user_settable"] = self.user_settable
        if self.description:
            out["description"] = self.description
        for key in ("minimum", "maximum", "of", "quantiles", "within"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.thresholds:
            out["thresholds"] = list(self.thresholds)
        return out


@dataclass(frozen=True)
class Taxonomy:
    """An ordered set of markers; the single source of truth for names and allowed values."""

    markers: dict[str, Marker] = field(default_factory=dict)

    def __contains__(self, name: object) -> bool:
        return name in self.markers

    def __getitem__(self, name: str) -> Marker:
        try:
            return self.markers[name]
        except KeyError:
            raise MarkerError(f"unknown marker '{name}'; valid: {', '.join(sorted(self.markers))}") from None

    @property
    def names(self) -> list[str]:
        return list(self.markers)

    def canonical(self, name: str, raw: Any) -> str | int | float:
        """Validate one (name, value) pair and return the canonical value."""
        return self[name].canonical(raw)

    def canonical_markers(self, markers: Mapping[str, Any]) -> dict[str, Any]:
        """Validate a whole marker dict (None values are dropped: absent, never empty)."""
        return {k: self.canonical(k, v) for k, v in markers.items() if v is not None}

    def user_markers(self, markers: Mapping[str, Any]) -> dict[str, Any]:
        """Validate markers set by a user at inference: also checks `user_settable`."""
        settable = [n for n, m in self.markers.items() if m.user_settable]
        for name in markers:
            if name in self.markers and not self.markers[name].user_settable:
                raise MarkerError(
                    f"marker '{name}' cannot be set at inference; settable: {', '.join(settable)}"
                )
        return self.canonical_markers(markers)

    def to_dict(self) -> dict[str, Any]:
        return {"version": 1, "markers": {n: m.to_dict() for n, m in self.markers.items()}}

    def content_hash(self) -> str:
        """sha256 of the canonical JSON of the definitions (stable across YAML formatting)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    def save(self, path: str | Path) -> Path:
        """Write the full definition (no `extends`) with its content hash in a header comment."""
        path = Path(path)
        text = f"# treasure taxonomy, content hash sha256:{self.content_hash()}\n"
        text += yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=100)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def default(cls) -> Taxonomy:
        return _default()

    @classmethod
    def load(cls, path: str | Path | None) -> Taxonomy:
        """Load a taxonomy file (None → the default); raises `TaxonomyError` with every problem."""
        if path is None:
            return _default()
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TaxonomyError([f"{path}: file not found"]) from None
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise TaxonomyError([f"{path}: not valid YAML: {exc}"]) from None
        return from_data(data, str(path))


_DEFAULT: Taxonomy | None = None


def _default() -> Taxonomy:
    global _DEFAULT
    if _DEFAULT is None:
        text = resources.files("treasure").joinpath(DEFAULT_FILE).read_text(encoding="utf-8")
        _DEFAULT = from_data(yaml.safe_load(text), DEFAULT_FILE)
    return _DEFAULT


def from_data(data: Any, source: str) -> Taxonomy:
    """Build a taxonomy from parsed YAML, collecting every problem with `source` and the key."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise TaxonomyError([f"{source}: top level must be a mapping with a 'markers' key"])
    for key in data:
        if key not in ("version", "extends", "markers"):
            problems.append(f"{source}: {key}: unknown top-level key; valid: version, extends, markers")
    if data.get("version", 1) != 1:
        problems.append(f"{source}: version: only version 1 is known, got {data['version']!r}")
    extends = data.get("extends")
    base: dict[str, dict[str, Any]] = {}
    if extends is not None:
        if extends != "default":
            problems.append(f"{source}: extends: only 'default' can be extended, got {extends!r}")
        else:
            base = {n: m.to_dict() for n, m in _default().markers.items()}
    entries = data.get("markers")
    if entries is None and base:
        entries = {}
    if not isinstance(entries, dict) or (not entries and not base):
        problems.append(f"{source}: markers: must be a non-empty mapping of marker name → definition")
        entries = {}
    merged = {name: dict(spec) for name, spec in base.items()}
    for raw_name, spec in entries.items():
        name = str(raw_name)
        key = f"{source}: markers.{name}"
        if spec is None and name in merged:
            del merged[name]  # `name: null` removes an inherited marker
            continue
        if not isinstance(spec, dict):
            problems.append(f"{key}: must be a mapping (or null to remove an inherited marker)")
            continue
        target = merged.setdefault(name, {})
        changes = {}
        for change in sorted(CHANGE_KEYS & spec.keys()):
            if isinstance(spec[change], list):
                changes[change] = [str(v) for v in spec[change]]
            else:
                problems.append(f"{key}.{change}: must be a list")
        target.update({k: v for k, v in spec.items() if k not in CHANGE_KEYS})
        if not changes:
            continue
        values = target.get("values")
        values = [str(v) for v in values] if isinstance(values, list) else []
        values += [v for v in changes.get("add_values", []) if v not in values]
        for value in changes.get("remove_values", []):
            if value not in values:
                problems.append(f"{key}.remove_values: {value!r} is not a value of '{name}'")
        target["values"] = [v for v in values if v not in changes.get("remove_values", [])]
    markers = {}
    for name, spec in merged.items():
        marker = _marker(name, spec, f"{source}: markers.{name}", problems)
        if marker is not None:
            markers[name] = marker
    for name, marker in markers.items():
        for ref_key, kinds in (("of", ("integer", "float")), ("within", ("categorical", "ordinal"))):
            ref = getattr(marker, ref_key)
            if ref is None:
                continue
            if ref not in markers:
                problems.append(f"{source}: markers.{name}.{ref_key}: unknown marker '{ref}'")
            elif markers[ref].kind not in kinds:
                problems.append(
                    f"{source}: markers.{name}.{ref_key}: '{ref}' is {markers[ref].kind}, "
                    f"must be {' or '.join(kinds)}"
                )
    if problems:
        raise TaxonomyError(problems)
    return Taxonomy(markers)


def _marker(name: str, spec: dict[str, Any], key: str, problems: list[str]) -> Marker | None:
    start = len(problems)
    if not NAME_RE.match(name):
        problems.append(f"{key}: name must be lower_snake_case (letters, digits, _)")
    for unknown in sorted(set(spec) - MARKER_KEYS):
        problems.append(f"{key}.{unknown}: unknown key; valid: {', '.join(sorted(MARKER_KEYS))}")
    kind = spec.get("kind")
    if kind not in KINDS:
        problems.append(f"{key}.kind: must be one of {', '.join(KINDS)}, got {kind!r}")
    values = spec.get("values") or []
    if not isinstance(values, list):
        problems.append(f"{key}.values: must be a list")
        values = []
    values = [str(v) for v in values]
    if kind in ("categorical", "ordinal") and not values:
        problems.append(f"{key}.values: a {kind} marker needs at least one value")
    if kind in ("integer", "float") and values:
        problems.append(f"{key}.values: {kind} markers take minimum/maximum, not values")
    for value in values:
        if not VALUE_RE.match(value) or value != value.strip():
            problems.append(
                f"{key}.values: {value!r} may not contain <, >, & or line breaks, "
                "nor start or end with a space"
            )
    lowered = [v.lower() for v in values]
    for value in sorted({v for v in lowered if lowered.count(v) > 1}):
        problems.append(f"{key}.values: {value!r} appears more than once (case-insensitive)")
    if not isinstance(spec.get("user_settable", True), bool):
        problems.append(f"{key}.user_settable: must be true or false")
    for bound in ("minimum", "maximum"):
        if spec.get(bound) is not None and not _is_number(spec[bound]):
            problems.append(f"{key}.{bound}: must be a number")
    for ref_key in ("of", "within"):
        if spec.get(ref_key) is not None and not isinstance(spec[ref_key], str):
            problems.append(f"{key}.{ref_key}: must be a marker name")
    thresholds = spec.get("thresholds") or []
    if not isinstance(thresholds, list):
        problems.append(f"{key}.thresholds: must be a list of numbers")
    elif thresholds:
        if kind != "ordinal":
            problems.append(f"{key}.thresholds: only ordinal markers take thresholds")
        elif not all(_is_number(t) for t in thresholds):
            problems.append(f"{key}.thresholds: must be numbers")
        elif list(thresholds) != sorted(thresholds):
            problems.append(f"{key}.thresholds: must be ascending")
        elif len(thresholds) != len(values) - 1:
            problems.append(
                f"{key}.thresholds: {len(values)} values need {len(values) - 1} thresholds, "
                f"got {len(thresholds)}"
            )
    quantiles = spec.get("quantiles")
    if quantiles is not None and (
        isinstance(quantiles, bool) or not isinstance(quantiles, int) or quantiles != len(values)
    ):
        problems.append(f"{key}.quantiles: must equal the number of values ({len(values)})")
    if len(problems) > start:
        return None
    return Marker(
        name=name,
        kind=kind,
        values=tuple(values),
        annotator=str(spec.get("annotator", GIVEN)),
        user_settable=spec.get("user_settable", True),
        description=str(spec.get("description", "")),
        minimum=spec.get("minimum"),
        maximum=spec.get("maximum"),
        of=spec.get("of"),
        thresholds=tuple(thresholds),
        quantiles=quantiles,
        within=spec.get("within"),
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _show(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 80 else text[:77] + "..."


def with_thresholds(taxonomy: Taxonomy, name: str, thresholds: tuple[float, ...]) -> Taxonomy:
    """A copy of `taxonomy` whose ordinal marker `name` uses new bucket thresholds (validated)."""
    marker = taxonomy[name]
    cuts = [int(t) if isinstance(t, numbers.Integral) else t for t in thresholds]
    cuts = [float(t) if isinstance(t, numbers.Real) and not isinstance(t, int) else t for t in cuts]
    problems = []
    if marker.kind != "ordinal":
        problems.append(f"markers.{name}.thresholds: only ordinal markers take thresholds")
    elif not all(_is_number(t) for t in cuts) or cuts != sorted(cuts):
        problems.append(f"markers.{name}.thresholds: must be ascending numbers, got {cuts}")
    elif len(cuts) != len(marker.values) - 1:
        problems.append(
            f"markers.{name}.thresholds: {len(marker.values)} values need {len(marker.values) - 1} "
            f"thresholds, got {len(cuts)}"
        )
    if problems:
        raise TaxonomyError(problems)
    markers = dict(taxonomy.markers)
    markers[name] = replace(marker, thresholds=tuple(cuts))
    return Taxonomy(markers)
