"""The embedded default model: a byte-level BPE tokenizer trained on the data and a small Llama.

The tokenizer keeps the template whole: `<TEMPLATE>`, `</TEMPLATE>`, `<name>` and `</name>` of every
taxonomy marker are added (not special) tokens, so `decode(..., skip_special_tokens=True)` keeps them.
With `marker_tokens="lines"` (the default) every categorical/ordinal marker line, e.g.
`<length_bucket>concise</length_bucket>` plus its newline, is also one added token: the template then
costs about one token per marker. The text is the same either way; only its tokenisation differs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import torch
import yaml
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from treasure.errors import TreasureError
from treasure.taxonomy import Taxonomy
from treasure.template import CLOSE, OPEN

END = "<|end|>"
PAD = "<|pad|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (PAD, END, *ROLE_TOKENS)
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
SIZE_FILES = {"tiny": "tiny_model.yaml", "tiny_test": "tiny_test_model.yaml"}
SIZE_KEYS = {
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "max_position_embeddings",
    "tie_word_embeddings",
}
MarkerTokens = Literal["none", "tags", "lines"]  # no added tokens, one per tag, one per whole marker line
MARKER_TOKENS: tuple[str, ...] = get_args(MarkerTokens)


@dataclass
class TokenizerConfig:
    """How the tiny tokenizer is trained: BPE vocabulary size and how template text is tokenised."""

    vocab_size: int = 8000
    min_frequency: int = 2
    marker_tokens: MarkerTokens = "lines"


def load_size(size: str | Path) -> dict[str, Any]:
    """A model size: a shipped name (`tiny`, `tiny_test`) or a YAML path; unknown keys are errors."""
    if str(size) in SIZE_FILES:
        text = (CONFIG_DIR / SIZE_FILES[str(size)]).read_text("utf-8")
        where = f"configs/{SIZE_FILES[str(size)]}"
    else:
        path = Path(size)
        if not path.is_file():
            raise TreasureError(f"{path}: model size file not found; shipped sizes: {', '.join(SIZE_FILES)}")
        text, where = path.read_text("utf-8"), str(path)
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise TreasureError(f"{where}: must be a mapping of Llama config keys")
    unknown = sorted(set(data) - SIZE_KEYS)
    if unknown:
        raise TreasureError(
            f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(SIZE_KEYS))}"
        )
    return data


def marker_token_strings(tax: Taxonomy, mode: MarkerTokens = "lines") -> list[str]:
    """The added tokens that keep template text whole (longest match wins when tokenising)."""
    if mode == "none":
        return []
    if mode not in MARKER_TOKENS:
        raise TreasureError(f"marker_tokens must be one of {', '.join(MARKER_TOKENS)}, got {mode!r}")
    tokens = [OPEN + "\n", OPEN, CLOSE + "\n", CLOSE]
    for name, marker in tax.markers.items():
        tokens += [f"<{name}>", f"</{name}>\n", f"</{name}>"]
        if mode == "lines":
            tokens += [f"<{name}>{value}</{name}>\n" for value in marker.values]
    return tokens


def train_tokenizer(texts: Iterable[str], tax: Taxonomy, config: TokenizerConfig) -> PreTrainedTokenizerFast:
    """Train byte-level BPE on `texts`, add the chat and template tokens, set the chat template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    extra = marker_token_strings(tax, config.marker_tokens)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in extra])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=END,
        pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS),
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_model(tokenizer: PreTrainedTokenizerFast, size: dict[str, Any], seed: int) -> LlamaForCausalLM:
    """A freshly initialised Llama sized by `size`, its vocabulary matching `tokenizer` (seeded)."""
    params = {k: v for k, v in size.items() if k != "vocab_size"}
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **params,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    return model
