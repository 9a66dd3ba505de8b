"""Render, parse and escape the `<TEMPLATE>` marker block (docs/architecture.md §2).

    <TEMPLATE>
    <domain>Legal</domain>
    <task>CreativeWriting</task>
    </TEMPLATE>
    answer text ...

`render` sorts markers by name, one per line. `parse` is total: it never raises; a malformed, unclosed,
duplicated or unknown tag comes back in `Parsed.error` and the response text is always kept.
`escape` makes marker-like text in user prompts inert, so a prompt cannot forge or close a block.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from treasure.errors import MarkerError
from treasure.taxonomy import Taxonomy

OPEN = "<TEMPLATE>"
CLOSE = "</TEMPLATE>"
LINE_RE = re.compile(r"^<([A-Za-z_][A-Za-z0-9_]*)>([^<>\n]*)</([A-Za-z_][A-Za-z0-9_]*)>$")
# "<" that begins something tag-like: "<x" or "</x" (tags never contain spaces, so "a < b" is safe)
TAG_START_RE = re.compile(r"<(?=/?[A-Za-z_])")


@dataclass
class Parsed:
    """Result of parsing: markers found, the response text, and what was wrong (None if nothing)."""

    markers: dict[str, Any] = field(default_factory=dict)
    response: str = ""
    error: str | None = None
    has_block: bool = False


def format_value(value: Any) -> str:
    """Text form of a canonical marker value (floats via repr, so they round-trip exactly)."""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def render(markers: Mapping[str, Any], taxonomy: Taxonomy | None = None) -> str:
    """Render markers as a template block ending in a newline; values are validated first."""
    tax = taxonomy or Taxonomy.default()
    canonical = tax.canonical_markers(markers)
    lines = [f"<{name}>{format_value(canonical[name])}</{name}>" for name in sorted(canonical)]
    return "\n".join([OPEN, *lines, CLOSE]) + "\n"


def parse(text: str, taxonomy: Taxonomy | None = None) -> Parsed:
    """Split model output into (markers, response). Never raises; the response text is never lost.

    Only a block at the very start (after optional whitespace) counts; tags anywhere in the response
    body (`<TEMPLATE>`, `<task>`, ...) are ignored and kept as response text. A block is closed by the
    first `</TEMPLATE>`; every line before it must look like a tag, else the block counts as unclosed.
    Text without a block is returned whole with no markers; an unclosed block likewise, with an error.
    Inside a closed block, malformed lines, unknown names, duplicates and invalid values are skipped and
    listed in `error` (the valid markers are kept).
    """
    tax = taxonomy or Taxonomy.default()
    stripped = text.lstrip()
    if not stripped.startswith(OPEN):
        return Parsed(response=text)
    end = stripped.find(CLOSE)
    body = stripped[len(OPEN) : end]
    prose = next((line for line in body.split("\n") if not _tag_like(line)), None) if end >= 0 else None
    if end < 0 or prose is not None:
        reason = "no </TEMPLATE>" if end < 0 else f"line {prose.strip()[:60]!r} is not a marker"
        return Parsed(response=text, error=f"unclosed template block: {reason}", has_block=True)
    response = stripped[end + len(CLOSE) :]
    if response.startswith("\n"):
        response = response[1:]
    markers, problems = _parse_body(body, tax)
    error = "; ".join(problems) if problems else None
    return Parsed(markers=markers, response=response, error=error, has_block=True)


def block_end(text: str) -> int | None:
    """Where the answer begins in a completion written so far: just after the leading block's
    `</TEMPLATE>`; 0 when the text does not open with a block; None while that is still undecided (empty,
    a prefix of `<TEMPLATE>`, or a block not closed yet)."""
    stripped = text.lstrip()
    if stripped.startswith(OPEN):
        end = text.find(CLOSE)
        return end + len(CLOSE) if end >= 0 else None
    return None if OPEN.startswith(stripped) else 0


def strip_blocks(text: str) -> tuple[str, int]:
    """Remove every template block from answer text; returns (clean text, blocks removed).

    A closed block goes from `<TEMPLATE>` through `</TEMPLATE>` (and one newline after it); an unclosed
    one (cut off by a token limit, or marker lines looping) loses `<TEMPLATE>` and the tag-like lines
    after it, a cut-off last line included, so no marker text is ever shown as part of an answer.
    """
    out: list[str] = []
    count = pos = 0
    while (start := text.find(OPEN, pos)) >= 0:
        out.append(text[pos:start])
        count += 1
        end = text.find(CLOSE, start)
        if end >= 0:
            pos = end + len(CLOSE)
        else:
            lines = text[start + len(OPEN) :].split("\n")
            keep = next(
                (i for i, line in enumerate(lines) if not (_tag_like(line) or _partial_tag(line, i, lines))),
                len(lines),
            )
            pos = len(text) - len("\n".join(lines[keep:])) if keep < len(lines) else len(text)
        if text.startswith("\n", pos):
            pos += 1
    out.append(text[pos:])
    return "".join(out), count


def _partial_tag(line: str, index: int, lines: list[str]) -> bool:
    return index == len(lines) - 1 and line.lstrip().startswith("<")


def _tag_like(line: str) -> bool:
    line = line.strip()
    return not line or (line.startswith("<") and line.endswith(">"))


def _parse_body(body: str, tax: Taxonomy) -> tuple[dict[str, Any], list[str]]:
    markers: dict[str, Any] = {}
    problems: list[str] = []
    for raw_line in body.split("\n"):
        line = raw_line.strip()
        if not line:
            continue
        match = LINE_RE.match(line)
        if match is None or match.group(1) != match.group(3):
            problems.append(f"malformed line {line[:60]!r}")
            continue
        name, value = match.group(1), match.group(2)
        if name in markers:
            problems.append(f"duplicate marker '{name}'")
            continue
        try:
            markers[name] = tax.canonical(name, value)
        except MarkerError as exc:
            problems.append(str(exc))
    return markers, problems


def escape(text: str) -> str:
    """Make tag-like text inert: every '<' that starts something tag-like becomes '&lt;'.

    Comparisons such as `a < b` or `x<3` are left alone; `<TEMPLATE>`, `</task>` and every other
    tag-like sequence can no longer open, close or forge a marker block.
    """
    return TAG_START_RE.sub("&lt;", text)


def with_prompt_markers(prompt: str, markers: Mapping[str, Any], taxonomy: Taxonomy | None = None) -> str:
    """The user turn: `escape(prompt)`, then (if any markers) a blank line and the rendered block.

    The prompt is always escaped, so whatever tag-like text it holds, `parse_prompt` of the result
    returns exactly `markers` (None values dropped); with no markers there is no block at all.
    """
    tax = taxonomy or Taxonomy.default()
    text = escape(prompt)
    if not tax.canonical_markers(markers):
        return text
    return f"{text}\n\n{render(markers, tax).rstrip(chr(10))}"


def parse_prompt(text: str, taxonomy: Taxonomy | None = None) -> Parsed:
    """Read the markers the builder appended to a user turn; `.response` is the (escaped) prompt part.

    Only a block that ends the text counts: escaped user text cannot contain `<TEMPLATE>`, so the last
    one is the builder's. Never raises.
    """
    start = text.rfind(OPEN)
    if start < 0:
        return Parsed(response=text)
    parsed = parse(text[start:], taxonomy)
    if parsed.response.strip():  # unclosed, or text after the block: not the builder's block
        return Parsed(response=text, error=parsed.error or "template block does not end the prompt")
    prompt = text[:start]
    if prompt.endswith("\n\n"):
        prompt = prompt[:-2]
    return Parsed(markers=parsed.markers, response=prompt, error=parsed.error, has_block=True)
