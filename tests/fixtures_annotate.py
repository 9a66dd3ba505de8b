"""Session fixtures for annotate tests: a small real sample, a tiny reward model, an LLM endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import datasets
import pytest

from treasure import io
from treasure.bundled import load_bundled


@pytest.fixture(scope="session")
def bundled_sample() -> datasets.Dataset:
    """60 real bundled rows, 10 from each training file (varied lengths, code, one given quality set)."""
    ds, _ = load_bundled(limit_per_file=10)
    return ds


@pytest.fixture(scope="session")
def sample_jsonl(bundled_sample: datasets.Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample as plain prompt/response JSONL (what a user would pass to `treasure annotate`)."""
    path = tmp_path_factory.mktemp("annotate_in") / "sample.jsonl"
    keep = ["id", "prompt", "response", "quality"]
    return io.write_jsonl(bundled_sample.select_columns(keep), path)


@pytest.fixture(scope="session")
def tiny_reward_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init tiny `LlamaForSequenceClassification` (1 label) with a byte-level BPE tokenizer."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForSequenceClassification, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("reward_model")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    texts = ["the quick brown fox jumps over the lazy dog", "hello world, how are you today?"] * 20
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "</s>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="</s>")
    tokenizer.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</s>{% endfor %}"
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def llm_endpoint(random_model_dir: Path) -> Iterator[tuple[str, str]]:
    """(base URL, API key) of a real OpenAI-compatible server on loopback: `treasure serve` on a random-init
    tiny model, which answers nonsense. To use the trained session model instead, yield from
    `openai_server` (fixtures_server)."""
    from fixtures_server import OPENAI_SERVER_KEY, start_server, stop_server

    process, base_url = start_server(random_model_dir, OPENAI_SERVER_KEY)
    try:
        yield base_url, OPENAI_SERVER_KEY
    finally:
        stop_server(process, timeout_s=10)
