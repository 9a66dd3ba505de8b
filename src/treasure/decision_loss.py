"""Loss weights on the answer's stop/continue decisions, so length markers are learned in few steps.

Whether an answer is `concise` or `long` is decided at a handful of tokens: right after a sentence or a line
ends, the model either writes the end-of-turn token or goes on. Plain SFT averages those few tokens with
every other one, so a model trained for minutes learns *that* an answer may stop at a sentence end, not that
the `length_bucket` in its block decides it. `decision_mask` finds those positions from the labels alone
(after the template block, a label whose previous token ends a sentence or a line, and the end of turn);
`weighted_loss` gives them `weight` times the weight of other answer tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from treasure import template
from treasure.errors import TreasureError

IGNORE = -100  # label of a position outside the loss (the prompt, padding)
SENTENCE_ENDS = (".", "!", "?", "\n")


@dataclass(frozen=True)
class DecisionTokens:
    """The token ids `decision_mask` needs, read once from a tokenizer."""

    # bool over the vocabulary: the token's text ends a sentence or a line (never the end of turn: the answer
    # is over after it, so what follows decides nothing)
    boundary: torch.Tensor
    close: tuple[int, ...]  # ids of the template's closing line (tag and newline; the answer follows)
    end_of_turn: int

    @classmethod
    def for_tokenizer(cls, tokenizer: Any) -> DecisionTokens:
        if tokenizer.eos_token_id is None:
            raise TreasureError("decision weighting needs a tokenizer with an end-of-turn (eos) token")
        vocab = len(tokenizer)
        texts = tokenizer.convert_ids_to_tokens(list(range(vocab)))
        boundary = torch.zeros(vocab, dtype=torch.bool)
        for token_id, text in enumerate(texts):
            decoded = tokenizer.convert_tokens_to_string([text]) if text is not None else ""
            boundary[token_id] = decoded.rstrip(" ").endswith(SENTENCE_ENDS)
        boundary[tokenizer.eos_token_id] = False
        close = tuple(tokenizer(template.CLOSE + "\n", add_special_tokens=False)["input_ids"])
        return cls(boundary=boundary, close=close, end_of_turn=tokenizer.eos_token_id)


def decision_mask(labels: torch.Tensor, tokens: DecisionTokens) -> torch.Tensor:
    """Bool mask over `labels` (batch × length): positions that decide where the answer stops.

    A position counts when its label is in the loss, it lies after the template block's closing tag
    (rows without a block: anywhere in the answer), and the token before it ends a sentence or a line (the
    position then holds either the end of turn or the next sentence), or its label is the end of turn.
    """
    labelled = labels != IGNORE
    ids = labels.clamp(min=0)
    previous = torch.zeros_like(labelled)
    previous[:, 1:] = tokens.boundary.to(labels.device)[ids[:, :-1]] & labelled[:, :-1]
    mask = labelled & (previous | (labels == tokens.end_of_turn))
    return mask & _after_block(labels, tokens.close)


def _after_block(labels: torch.Tensor, close: tuple[int, ...]) -> torch.Tensor:
    """Bool mask: positions after the first answer token that follows the first closing line of each row
    (every position if a row has none). The first answer token decides nothing: it follows the block."""
    length = labels.size(1)
    after = torch.ones_like(labels, dtype=torch.bool)
    n = len(close)
    if n == 0 or length < n:
        return after
    pattern = torch.tensor(close, device=labels.device)
    windows = labels.unfold(1, n, 1)  # batch × (length - n + 1) × n
    hits = (windows == pattern).all(dim=-1)
    for row in range(labels.size(0)):
        found = hits[row].nonzero()
        if len(found):
            after[row, : int(found[0]) + n + 1] = False
    return after


def weighted_loss(
    logits: torch.Tensor, labels: torch.Tensor, tokens: DecisionTokens, weight: float
) -> torch.Tensor:
    """Next-token cross-entropy over the labelled positions, `weight` on decision positions, 1 elsewhere.

    `labels` are aligned with the inputs (as the model's own loss takes them); the shift happens here.
    The loss is the weighted mean, so `weight=1` gives the plain SFT loss.
    """
    shifted = labels[:, 1:]
    per_token = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), shifted.flatten(), ignore_index=IGNORE, reduction="none"
    ).view_as(shifted)
    weights = (shifted != IGNORE).float()
    weights = weights + (weight - 1.0) * decision_mask(shifted, tokens).float()
    return (per_token * weights).sum() / weights.sum().clamp(min=1.0)
