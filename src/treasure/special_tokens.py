"""Keep a tokenizer's special tokens in user text as plain text, so no prompt can forge a chat turn.

A chat prompt is rendered to one string and tokenized with special tokens parsed (that is how the chat
template's own `<|im_start|>`-style boundaries become single tokens). Text the user wrote goes through
`defuse` first: a zero-width space after the first character of every special or added token in it makes
the tokenizer read it as ordinary characters, in every backend and in the raw prompt sent upstream.
"""

from __future__ import annotations

import re
from typing import Any

ZERO_WIDTH_SPACE = "\u200b"


def token_texts(tokenizer: Any) -> tuple[str, ...]:
    """Texts of every special and added token of `tokenizer` (more than one character), longest first."""
    texts = {token.content for token in getattr(tokenizer, "added_tokens_decoder", {}).values()}
    texts |= set(getattr(tokenizer, "all_special_tokens", []))
    return tuple(sorted((t for t in texts if len(t) > 1), key=lambda t: (-len(t), t)))


class Defuser:
    """`defuse(text)`: `text` with every occurrence of the given token texts broken by a zero-width space."""

    def __init__(self, tokens: tuple[str, ...]) -> None:
        self.tokens = tokens
        self._pattern = re.compile("|".join(map(re.escape, tokens))) if tokens else None

    @classmethod
    def for_tokenizer(cls, tokenizer: Any) -> Defuser:
        return cls(token_texts(tokenizer))

    def defuse(self, text: str) -> str:
        if self._pattern is None:
            return text
        # Overlapping occurrences survive one pass (the leftmost wins); repeat until none is left. Each
        # pass breaks at least one occurrence and adds none (no token holds a zero-width space).
        while self._pattern.search(text):
            text = self._pattern.sub(lambda m: m.group(0)[0] + ZERO_WIDTH_SPACE + m.group(0)[1:], text)
        return text
