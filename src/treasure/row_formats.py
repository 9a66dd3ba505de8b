"""Row formats (presets) of the input datasets: each turns one raw record into a schema row (`normalise`),
naming the input field when it cannot. Row schema: `id`, `prompt`, `response`, `source`, optional `messages`
(earlier chat turns) and any given markers; the record's other fields are carried in `INPUT_COLUMNS`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from treasure.errors import MarkerError, TreasureError
from treasure.taxonomy import Taxonomy

FASTCHAT_PREAMBLE_END = "### Instruction:"
ROLE_ALIASES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
}


class RowError(ValueError):
    """One record is unusable: `field` names the input field (None for the record as a whole)."""

    def __init__(self, field: str | None, message: str):
        self.field = field
        super().__init__(message)


def _need_str(record: Mapping[str, Any], key: str) -> str:
    if key not in record or record[key] is None:
        raise RowError(key, "missing")
    value = record[key]
    if not isinstance(value, str):
        raise RowError(key, f"expected text, got {type(value).__name__}")
    if not value.strip():
        raise RowError(key, "empty")
    return value


def _alpaca(record: Mapping[str, Any]) -> dict[str, Any]:
    instruction = _need_str(record, "instruction")
    extra = record.get("input") or ""
    if not isinstance(extra, str):
        raise RowError("input", f"expected text, got {type(extra).__name__}")
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    return {"prompt": prompt, "response": _need_str(record, "output")}


def strip_preamble(text: str) -> str:
    """Undo the Alpaca wrapper FastChat sets carry ("Below is an instruction ... ### Instruction: X
    ### Input: Y ### Response:") → "X\n\nY", the prompt the `alpaca` preset gives for the same row."""
    if not (text.startswith("Below is an instruction") and FASTCHAT_PREAMBLE_END in text):
        return text.strip()
    text = text.split(FASTCHAT_PREAMBLE_END, 1)[1].split("### Response:", 1)[0]
    instruction, _, extra = text.partition("### Input:")
    return f"{instruction.strip()}\n\n{extra.strip()}" if extra.strip() else instruction.strip()


def _turns(turns: Any, role_key: str, text_key: str, field_name: str) -> list[dict[str, str]]:
    if not isinstance(turns, list) or not turns:
        raise RowError(field_name, "expected a non-empty list of turns")
    out = []
    for number, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict) or not isinstance(turn.get(text_key), str):
            raise RowError(field_name, f"turn {number} needs '{role_key}' and text '{text_key}'")
        role = ROLE_ALIASES.get(str(turn.get(role_key, "")).lower())
        if role is None:
            valid = ", ".join(sorted(ROLE_ALIASES))
            raise RowError(field_name, f"turn {number}: unknown role {turn.get(role_key)!r}; valid: {valid}")
        out.append({"role": role, "content": turn[text_key]})
    return out


def _chat_row(turns: list[dict[str, str]], field_name: str) -> dict[str, Any]:
    last_assistant = max((i for i, t in enumerate(turns) if t["role"] == "assistant"), default=-1)
    if last_assistant < 1 or turns[last_assistant - 1]["role"] != "user":
        raise RowError(field_name, "needs a user turn followed by an assistant turn")
    prompt, response = turns[last_assistant - 1]["content"], turns[last_assistant]["content"]
    if not prompt.strip() or not response.strip():
        raise RowError(field_name, "the last user or assistant turn is empty")
    history = turns[: last_assistant - 1]
    return {"prompt": prompt, "response": response, "messages": history or None}


def _fastchat(record: Mapping[str, Any]) -> dict[str, Any]:
    if "conversations" not in record:
        raise RowError("conversations", "missing")
    turns = _turns(record["conversations"], "from", "value", "conversations")
    for turn in turns:
        if turn["role"] == "user":
            turn["content"] = strip_preamble(turn["content"])
    return _chat_row(turns, "conversations")


def _messages(record: Mapping[str, Any]) -> dict[str, Any]:
    if "messages" not in record:
        raise RowError("messages", "missing")
    return _chat_row(_turns(record["messages"], "role", "content", "messages"), "messages")


def _self_instruct(record: Mapping[str, Any]) -> dict[str, Any]:
    instances = record.get("instances")
    if not isinstance(instances, list) or not instances or not isinstance(instances[0], dict):
        raise RowError("instances", "expected a non-empty list of {input, output} objects")
    first = instances[0]
    return _alpaca(
        {
            "instruction": record.get("instruction"),
            "input": first.get("input", ""),
            "output": first.get("output"),
        }
    )


def _plain(record: Mapping[str, Any]) -> dict[str, Any]:
    """The row schema itself (what `save` writes): prompt, response, optional earlier `messages`."""
    history = record.get("messages")
    if history is not None:
        history = _turns(history, "role", "content", "messages") if history != [] else None
    return {
        "prompt": _need_str(record, "prompt"),
        "response": _need_str(record, "response"),
        "messages": history,
    }


PRESETS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "alpaca": _alpaca,
    "fastchat": _fastchat,
    "messages": _messages,
    "self_instruct": _self_instruct,
    "plain": _plain,
}
PRESET_KEYS = {  # detection order: the first preset whose keys a record has
    "plain": {"prompt", "response"},
    "fastchat": {"conversations"},
    "messages": {"messages"},
    "self_instruct": {"instruction", "instances"},
    "alpaca": {"instruction", "output"},
}
INPUT_FIELDS = {
    "id",
    "instruction",
    "input",
    "output",
    "conversations",
    "messages",
    "instances",
    "prompt",
    "response",
}


def detect_preset(record: Mapping[str, Any]) -> str | None:
    """The first preset whose required keys are all in `record`, else None."""
    for name, keys in PRESET_KEYS.items():
        if keys <= set(record):
            return name
    return None


def row_id(row: Mapping[str, Any]) -> str:
    """Stable id from content: sha256 of prompt, response (and earlier turns if any), 16 hex digits."""
    parts = [row.get("prompt"), row.get("response")]
    if row.get("messages"):
        parts.append(row["messages"])
    blob = json.dumps(parts, ensure_ascii=False, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def check_options(preset: str | None, fields: Mapping[str, str] | None, taxonomy: Taxonomy) -> None:
    """Raise `TreasureError` for an unknown preset or a `fields` target that nothing reads."""
    if preset is not None and preset not in PRESETS:
        raise TreasureError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    valid = sorted(INPUT_FIELDS) + [n for n in taxonomy.names if n not in INPUT_FIELDS]
    for target, origin in (fields or {}).items():
        if target not in valid:
            raise TreasureError(
                f"--field {target}={origin}: unknown target {target!r}; valid: {', '.join(valid)}"
            )


# The input record's other fields (a conversation id, user metadata …), as one JSON object: carried through
# annotate untouched and written back as top-level fields of each JSONL row (kept as this column in
# Parquet / HF dirs, where a column's type must be the same in every row).
INPUT_COLUMNS = "input_columns"


def normalise(
    record: Any,
    preset: str,
    fields: Mapping[str, str] | None = None,
    taxonomy: Taxonomy | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """Turn one raw record into a schema row. `fields` maps schema/preset/marker name → input field.

    Raises `RowError` naming the input field (missing, wrong type, empty, invalid marker value).
    `source`, when given, sets the `source` marker of every row (a `source` column is then ignored).
    """
    if not isinstance(record, Mapping):
        raise RowError(None, f"expected a JSON object, got {type(record).__name__}")
    tax = taxonomy or Taxonomy.default()
    renamed = dict(record)
    origin_of = {}
    for target, origin in (fields or {}).items():
        if origin not in record:
            raise RowError(origin, f"missing (mapped to '{target}')")
        renamed[target] = record[origin]
        origin_of[target] = origin
    try:
        row = PRESETS[preset](renamed)
    except RowError as exc:
        raise RowError(origin_of.get(exc.field, exc.field), str(exc)) from None
    raw_id = renamed.get("id")
    row["id"] = str(raw_id) if raw_id not in (None, "") else row_id(row)
    carried = {k: v for k, v in record.items() if k not in row and k not in tax.names}
    if carried:
        row[INPUT_COLUMNS] = json.dumps(carried, ensure_ascii=False, default=str)
    row.setdefault("messages", None)
    row["source"] = None
    for name in tax.names:
        value = source if name == "source" and source is not None else renamed.get(name)
        if value is None or value == "":
            continue
        try:
            row[name] = tax.canonical(name, value)
        except MarkerError as exc:
            raise RowError(origin_of.get(name, name), str(exc)) from None
    return row
