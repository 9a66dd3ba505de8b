"""Marker guidance: classifier-free guidance over the markers a caller gives (docs/generate.md, "Marker
guidance").

Next-token logits = negative + G x (positive - negative). The positive branch is the normal input. The
negative branch is exactly the same text without the *given* markers: no marker block in the user turn
(every marker there is given) and none of their lines in the `<TEMPLATE>` block the completion opens with,
whether prefilled (strict) or written by the model. Markers the model inferred itself stay in both
branches, so the difference between them is the effect of the given markers alone.

Generation runs in two phases (transformers backend): the block first, unguided, exactly as without
guidance; then the answer, guided, from `branch_texts(...)`. These are the pure text functions; the backend
runs the model.
"""

from __future__ import annotations

from collections.abc import Collection

from treasure import template


def without_marker_lines(block: str, names: Collection[str]) -> str:
    """`block` without its marker lines (`<name>value</name>`) whose name is in `names`; every other line,
    and the line breaks between them, kept as they are."""
    names = set(names)

    def given(line: str) -> bool:
        match = template.LINE_RE.match(line)
        return match is not None and match[1] == match[3] and match[1] in names

    return "\n".join(line for line in block.split("\n") if not given(line))


def branch_texts(
    text: str, prefill: str, negative_prompt: str, written: str, given: Collection[str]
) -> tuple[str, str]:
    """The (positive, negative) model inputs after a completion has `written` text.

    `text` is the prompt text fed to the model (chat template applied, ending with `prefill`, the part of
    the block prefilled in strict mode); `negative_prompt` is the same chat without the given markers'
    block in the user turn and without the prefill. The completion's leading block (prefill + written, up
    to `</TEMPLATE>`; all of it while the block is open) loses the lines of the `given` marker names in the
    negative branch; the text after the block is the same in both.
    """
    assistant = prefill + written
    end = template.block_end(assistant)
    end = len(assistant) if end is None else end
    block, rest = assistant[:end], assistant[end:]
    return text + written, negative_prompt + without_marker_lines(block, given) + rest
