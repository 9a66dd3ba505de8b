"""Decision-weighted loss: which positions decide where an answer stops, and the loss that weighs them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from test_train import quick
from treasure import template
from treasure.decision_loss import SENTENCE_ENDS, DecisionTokens, decision_mask, weighted_loss
from treasure.errors import TreasureError
from treasure.train import DecisionWeightedTrainer, TrainConfig, make_trainer, train

# every test trains (a 20-step module fixture, a 4-step run)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def weighted_trainer(tiny_train_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A trainer with decision weight 4, trained 20 steps (so per-token losses differ)."""
    trainer, _ = make_trainer(quick(tiny_train_dir, tmp_path_factory.mktemp("w"), decision_weight=4.0))
    trainer.train()
    return trainer


def ends_sentence(text: str) -> bool:
    return text.rstrip(" ").endswith(SENTENCE_ENDS)


def test_decisions_are_the_ends_of_sentences_and_lines_after_the_block(weighted_trainer) -> None:
    """Checked against a plain loop that decodes each token: a position is a decision exactly when it is
    in the answer (after the block's closing line and its first token) and either follows a token whose text
    ends a sentence or a line, or holds the end of turn."""
    assert isinstance(weighted_trainer, DecisionWeightedTrainer)
    tok = weighted_trainer.processing_class
    tokens = DecisionTokens.for_tokenizer(tok)
    close = tok(template.CLOSE + "\n", add_special_tokens=False)["input_ids"]
    rows_with_continues = ended = 0
    for row in weighted_trainer.train_dataset.select(range(60)):
        ids, labels = row["input_ids"], row["labels"]
        mask = decision_mask(torch.tensor([labels]), tokens)[0].tolist()
        start = next(i for i in range(len(ids)) if ids[i : i + len(close)] == close and labels[i] != -100)
        answer_start = start + len(close) + 1  # the answer's first token follows the block: no decision
        expected = [
            j >= answer_start
            and labels[j] != -100
            and ids[j - 1] != tok.eos_token_id
            and (labels[j] == tok.eos_token_id or ends_sentence(tok.decode([ids[j - 1]])))
            for j in range(len(ids))
        ]
        assert mask == expected, tok.decode(ids)
        if tok.eos_token_id in labels:  # rows cut at max_length have none
            assert mask[labels.index(tok.eos_token_id)], "the end of turn is always a decision"
            ended += 1
        rows_with_continues += sum(mask) >= 2
    assert ended >= 20 and rows_with_continues >= 10  # several sentences: "go on" decisions too


def test_weight_one_is_the_models_own_loss_and_a_higher_weight_moves_it_to_the_decisions(
    weighted_trainer,
) -> None:
    tokens = weighted_trainer.decision_tokens
    batch = weighted_trainer.data_collator([weighted_trainer.train_dataset[i] for i in range(8)])
    model = weighted_trainer.model.eval()
    with torch.no_grad():
        outputs = model(**batch)  # the model's own loss (transformers' causal-LM loss) as the reference
        logits, labels = outputs.logits, batch["labels"]
        plain = weighted_loss(logits, labels, tokens, 1.0)
        heavy = weighted_loss(logits, labels, tokens, 4.0)
        only_decisions = weighted_loss(logits, labels, tokens, 1e6)
        trainer_loss = weighted_trainer.compute_loss(model, dict(batch))
    assert plain.item() == pytest.approx(outputs.loss.item(), rel=1e-5)
    assert trainer_loss.item() == pytest.approx(heavy.item(), rel=1e-6)
    assert heavy.item() != pytest.approx(plain.item(), rel=1e-3)
    low, high = sorted((plain.item(), only_decisions.item()))
    assert low < heavy.item() < high  # pulled from the plain mean towards the decisions' mean


def test_a_weighted_run_trains_and_records_its_weight(tiny_train_dir: Path, tmp_path: Path) -> None:
    model_dir = train(quick(tiny_train_dir, tmp_path / "m", max_steps=4, decision_weight=3.0)).path
    report = json.loads((model_dir / "train.json").read_text())
    assert report["config"]["decision_weight"] == 3.0
    assert all(math.isfinite(v) for v in report["losses"].values() if isinstance(v, float))
    with pytest.raises(TreasureError, match="decision_weight must be above 0"):
        TrainConfig(decision_weight=0)
