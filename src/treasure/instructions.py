"""Plain-words constraints → markers, for the "fixed" mode (docs/architecture.md §3, last paragraph).

`detect(prompt)` finds length limits ("using 50 words or less", "in 3 sentences", "in one paragraph"),
the answer language ("answer in Spanish", "en español", "フランス語で") and formats ("as a table",
"in JSON", "as a bulleted list"), turns them into markers and removes what stated them: the whole
sentence when nothing but the constraint is left in it, else just the phrase.

The rules are data: one `PhraseTable` per prompt language (English, Spanish, French, German,
Portuguese, Italian, Japanese) in `resources/phrases.yaml`. A new language is a new table, not new code.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from importlib import resources
from importlib.abc import Traversable
from typing import Any

import yaml

from treasure.taxonomy import Taxonomy

UNIT_MARKERS = {"words": "length_tokens", "sentences": "length_sentences", "paragraphs": "length_paragraphs"}


@dataclass(frozen=True)
class PhraseTable:
    """The phrases of one prompt language. Regex fragments; matching ignores case."""

    code: str
    numbers: dict[str, int] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)  # regex → "words" | "sentences" | "paragraphs"
    before: tuple[str, ...] = ()  # relation phrases before the number ("no more than", "at least")
    after: tuple[str, ...] = ()  # relation phrases after the unit ("or less", "or more")
    between: tuple[str, ...] = ()  # range joiners ("to", "and")
    language_names: dict[str, str] = field(default_factory=dict)  # regex → taxonomy language
    language_cues: tuple[str, ...] = ()  # regexes with a "{lang}" slot; group "cut" = the text to remove
    formats: tuple[tuple[str, str], ...] = ()  # (regex, taxonomy format value)
    connectors: tuple[str, ...] = ()  # words left dangling before a removed phrase
    suffix_units: bool = False  # number + unit + relation with no spaces (Japanese)


def _alt(options: Any) -> str:
    return "|".join(sorted(options, key=len, reverse=True))


def load_phrase_tables(path: Traversable | None = None) -> tuple[tuple[PhraseTable, ...], frozenset[str]]:
    """The phrase tables and filler words of `resources/phrases.yaml` (or another file of that shape)."""
    source = path or resources.files("treasure") / "resources" / "phrases.yaml"
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    tables = []
    for entry in data["tables"]:
        fields_ = {k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()}
        fields_["formats"] = tuple((f["pattern"], f["format"]) for f in entry.get("formats", ()))
        tables.append(PhraseTable(**fields_))
    return tuple(tables), frozenset(data["filler_words"].split())


TABLES, FILLER = load_phrase_tables()


@dataclass
class Detection:
    """Markers found in a prompt and the prompt with the constraint text removed."""

    markers: dict[str, Any] = field(default_factory=dict)
    prompt: str = ""
    spans: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class DetectConfig:
    """`set_bucket` also sets `length_bucket` from `length_tokens` with the taxonomy's thresholds."""

    set_bucket: bool = False


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    kind: str  # "length" | "language" | "format"
    table: PhraseTable
    value: str = ""


def _number_pattern(table: PhraseTable) -> str:
    words = _alt(re.escape(w) for w in table.numbers)
    return rf"\d{{1,5}}|{words}" if words else r"\d{1,5}"


def _length_rules(table: PhraseTable) -> list[_Rule]:
    num = _number_pattern(table)
    units = "|".join(f"(?:{u})" for u in table.units)
    after = rf"(?:\s*(?:{_alt(table.after)}))?" if table.after else ""
    if table.suffix_units:
        pattern = rf"(?P<n>\d{{1,5}})\s*(?P<unit>{units})(?P<post>{_alt(table.after)})?(?:の文章|の文)?で?"
        return [_Rule(re.compile(pattern, re.IGNORECASE), "length", table)]
    before = rf"(?:(?:{_alt(table.before)})\s+)?" if table.before else ""
    rules = []
    if table.between:
        joiners = _alt(re.escape(j) for j in table.between)
        ranged = (
            rf"(?:between\s+|entre\s+)?(?P<n>{num})\s*(?:{joiners})\s*(?P<n2>{num})\s*(?P<unit>{units})\b"
        )
        rules.append(_Rule(re.compile(rf"\b{ranged}", re.IGNORECASE), "length", table))
    not_case = r"(?!\s+(?:in|be in|with|written in)\s+(?:all\s+)?capital)"
    single = rf"\b{before}(?P<n>{num})(?:\s*\+|-)?\s*(?P<unit>{units})\b{not_case}{after}"
    rules.append(_Rule(re.compile(single, re.IGNORECASE), "length", table))
    return rules


def _rules(table: PhraseTable) -> list[_Rule]:
    rules = _length_rules(table) if table.units else []
    if table.language_names:
        names = _alt(table.language_names)
        for cue in table.language_cues:
            pattern = cue.replace("{lang}", f"(?P<lang>{names})")
            rules.append(_Rule(re.compile(pattern, re.IGNORECASE), "language", table))
    rules.extend(_Rule(re.compile(p, re.IGNORECASE), "format", table, v) for p, v in table.formats)
    return rules


RULES: list[_Rule] = [rule for table in TABLES for rule in _rules(table)]
SENTENCE_RE = re.compile(r"[^.!?。！？\n]*(?:[.!?。！？]+[\"')\]]*|\n+|$)[ \t]*")


def _number(text: str, table: PhraseTable) -> int:
    text = text.lower().strip()
    return int(text) if text.isdigit() else table.numbers[text]


def _lookup(names: dict[str, str], found: str) -> str:
    lowered = found.lower()
    for pattern, value in names.items():
        if re.fullmatch(pattern, lowered, re.IGNORECASE):
            return value
    raise KeyError(found)


def _marker_of(rule: _Rule, match: re.Match[str]) -> tuple[str, Any]:
    if rule.kind == "format":
        return "format", rule.value
    if rule.kind == "language":
        return "language", _lookup(rule.table.language_names, match.group("lang"))
    unit = next(
        u for pattern, u in rule.table.units.items() if re.fullmatch(pattern, match.group("unit"), re.I)
    )
    value = _number(match.group("n"), rule.table)
    if "n2" in match.groupdict() and match.group("n2"):
        value = (value + _number(match.group("n2"), rule.table)) // 2
    return UNIT_MARKERS[unit], value


def detect(prompt: str, taxonomy: Taxonomy | None = None, config: DetectConfig | None = None) -> Detection:
    """Find plain-words constraints; return markers valid in `taxonomy` and the prompt without them.

    The first match of a marker wins; a value the taxonomy does not allow (a language it lacks) is
    ignored and its text is left in the prompt.
    """
    tax = taxonomy or Taxonomy.default()
    config = config or DetectConfig()
    markers: dict[str, Any] = {}
    spans: list[tuple[int, int]] = []
    for rule in RULES:
        for match in rule.regex.finditer(prompt):
            if any(match.start() < end and start < match.end() for start, end in spans):
                continue
            name, value = _marker_of(rule, match)
            if name in markers or name not in tax:
                continue
            try:
                markers[name] = tax.canonical(name, value)
            except ValueError:
                continue
            cut = match.groupdict().get("cut")
            spans.append(match.span("cut") if cut else match.span())
    if config.set_bucket and "length_tokens" in markers and "length_bucket" in tax:
        bucket = tax["length_bucket"]
        if bucket.thresholds:
            markers.setdefault("length_bucket", bucket.bucket_of(markers["length_tokens"]))
    spans.sort()
    return Detection(markers=markers, prompt=_remove(prompt, spans), spans=spans)


def fit_to_trained(
    markers: Mapping[str, Any], trained: Collection[str], taxonomy: Taxonomy
) -> dict[str, Any]:
    """Detected markers restated with the markers a model was trained on.

    A word limit (`length_tokens = N`) for a model trained without `length_tokens` but with
    `length_bucket` becomes the longest bucket whose whole range fits under N (`Marker.bucket_within`);
    `length_tokens` counts words and punctuation, so N words is a safe token bound. Other markers pass.
    """
    fitted = dict(markers)
    limit = fitted.get("length_tokens")
    if limit is not None and "length_tokens" not in trained and "length_bucket" in trained:
        del fitted["length_tokens"]
        bucket = taxonomy["length_bucket"]
        if bucket.thresholds:
            fitted.setdefault("length_bucket", bucket.bucket_within(limit))
    return fitted


def _remove(prompt: str, spans: list[tuple[int, int]]) -> str:
    """Drop each sentence that holds only constraints; elsewhere drop only the constraint phrase."""
    if not spans:
        return prompt
    connectors = _alt({c for t in TABLES for c in t.connectors})
    dangling = re.compile(rf"(?:[\s,;:]*\b(?:{connectors}))?[\s,;:]*$", re.IGNORECASE)
    pieces: list[str] = []
    for sentence in SENTENCE_RE.finditer(prompt):
        start, end = sentence.span()
        if start == end:
            continue
        inside = [(max(s, start), min(e, end)) for s, e in spans if s < end and start < e]
        if not inside:
            pieces.append(sentence.group())
            continue
        kept, cursor = "", start
        for s, e in inside:
            kept += prompt[cursor:s]
            cursor = e
        remainder = kept + prompt[cursor:end]
        content = [w for w in re.findall(r"\w+", remainder.lower()) if w not in FILLER and not w.isdigit()]
        if not content:
            continue
        text, cursor = "", start
        for s, e in inside:
            text = dangling.sub("", text + prompt[cursor:s])
            cursor = e
        rest = prompt[cursor:end]
        if not text.strip():
            rest = rest.lstrip("、，,;: ")
        pieces.append(text + rest)
    out = "".join(pieces)
    out = re.sub(r"[ \t]+([.,;:!?])", r"\1", out)
    out = re.sub(r"[ \t]{2,}", " ", out)
    return out.strip()
