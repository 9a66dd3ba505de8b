"""The word budget (`GenerationConfig.length_budget`): a guarantee, not something the model learned.

When the markers a caller gives (or fixed mode detects) hold `length_tokens = N`, the answer ends at its
last sentence end within N words. Words are `len(text.split())`, as AlpacaEval-LI counts them. Two parts:

- while generating (transformers backend, `backends.steering.WordBudget`): end-of-turn is forced once the
  answer (the text after the template block) has started word N + 1, so no time goes on text that would
  be cut;
- after (every backend, `trim_to_budget`): an answer over N words is cut to its first N words, then back
  to the last sentence end among them (`.`, `!`, `?` before a space or the end, `。`, a line break) when
  there is one. vLLM and upstream engines cannot run our logits processor: there the answer is generated
  in full and trimmed.

`BudgetFilter` does the same to streamed answer text: it releases text only up to a sentence end that
stays within the budget, so the streamed pieces add up to the trimmed answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from treasure import template

# a sentence end: terminal punctuation (and closing quotes or brackets) before whitespace or the end of
# the text, an ideographic full stop, or a line break; `end()` is where the sentence's text stops
SENTENCE_END = re.compile(r"[.!?][\"'”’»)\]]*(?=\s|$)|。[」』”’)）]*|(?=\n)")
DECIDED_END = re.compile(r"[.!?][\"'”’»)\]]*(?=\s)|。[」』”’)）]*|(?=\n)")  # no text can still change it
WORD = re.compile(r"\S+")


def count_words(text: str) -> int:
    """Whitespace-separated words (AlpacaEval-LI's count)."""
    return len(text.split())


def word_limit(markers: Mapping[str, Any]) -> int | None:
    """The budget `markers` set: their `length_tokens` (None when absent)."""
    value = markers.get("length_tokens")
    return None if value is None else int(value)


def answer_text(raw: str) -> str:
    """The answer part of a completion written so far: the text after its leading template block
    ("" while the block is open or may still begin)."""
    end = template.block_end(raw)
    return "" if end is None else raw[end:]


def _budget_span(text: str, limit: int) -> str:
    """`text` up to where word `limit + 1` begins (all of it when there is no such word)."""
    words = list(WORD.finditer(text))
    return text if len(words) <= limit else text[: words[limit].start()]


def _last_end(text: str, pattern: re.Pattern[str]) -> int | None:
    """Where the text of the last sentence that ends in `text` stops (after non-blank text), or None."""
    ends = [m.end() for m in pattern.finditer(text) if text[: m.end()].strip()]
    return ends[-1] if ends else None


def trim_to_budget(text: str, limit: int) -> str:
    """`text` when it has at most `limit` words; else its first `limit` words, cut back to the last
    sentence end among them when there is one (trailing whitespace dropped). Always a prefix of `text`."""
    if count_words(text) <= limit:
        return text
    span = _budget_span(text, limit)
    end = _last_end(span, SENTENCE_END)
    return (span if end is None else span[:end]).rstrip()


class BudgetFilter:
    """Streamed answer text within a word budget: `feed` returns what can be released now, `finish` the
    rest; together they always equal `trim_to_budget(all the text fed, limit)`.

    Text is released up to a sentence end that no later text can move (followed by whitespace, or a line
    break) and that lies within the budget: such an end is kept by the trim whatever comes next.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.text = ""
        self.emitted = ""

    def feed(self, piece: str) -> str:
        self.text += piece
        end = _last_end(_budget_span(self.text, self.limit), DECIDED_END)
        return "" if end is None else self._release(self.text[:end].rstrip())

    def finish(self) -> str:
        return self._release(trim_to_budget(self.text, self.limit))

    def _release(self, answer: str) -> str:
        if len(answer) <= len(self.emitted):
            return ""
        if not answer.startswith(self.emitted):  # cannot happen: kept as a guard for safety
            raise RuntimeError("budget filter released text that is not part of the answer")
        new, self.emitted = answer[len(self.emitted) :], answer
        return new
