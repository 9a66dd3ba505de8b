"""Answers a reader would not accept whatever their length or language: empty, one word over and over, or a
loop. Small models under length pressure (a `long` marker, marker guidance) often reach the requested
length by repeating themselves, so adherence also counts the answers that hit the value *and* read as text.

A loop is a word trigram that comes back `LOOP_REPEATS` times or more; a stutter is one word `RUN` times in a
row. Words are `\\w+` runs, lower-cased, so it works in any language that separates words with spaces or
punctuation.
"""

from __future__ import annotations

import re
from collections import Counter
from itertools import pairwise

WORD = re.compile(r"\w+")
RUN = 5  # the same word this many times in a row
LOOP_REPEATS = 4  # a word trigram this many times


def degenerate(text: str) -> str | None:
    """Why `text` is not a readable answer ("empty", "stutter", "loop"), or None when it is."""
    words = WORD.findall(text.lower())
    if not words:
        return "empty"
    run = 1
    for previous, word in pairwise(words):
        run = run + 1 if word == previous else 1
        if run >= RUN:
            return "stutter"
    trigrams = Counter(zip(words, words[1:], words[2:], strict=False))
    if trigrams and max(trigrams.values()) >= LOOP_REPEATS:
        return "loop"
    return None
