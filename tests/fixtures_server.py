"""Session fixtures for generate/serve tests (owned by generate/serve).

- `random_model_dir`: an untrained, tiny `LlamaForCausalLM` with a real BPE tokenizer and chat
  template, in the model-dir format (no training: for plumbing tests that only need the prompt side).
- `openai_server`: `treasure serve` started on loopback on a free port with the session tiny model
  (`tiny_model_dir`); yields its base URL (`http://127.0.0.1:PORT/v1`). API key: `OPENAI_SERVER_KEY`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

OPENAI_SERVER_KEY = "test-key"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def make_random_model_dir(path: Path, seed: int = 0, **config: Any) -> Path:
    """Write a random-init tiny Llama model dir (tokenizer trained on bundled prompts, default taxonomy);
    `config` overrides `LlamaConfig` fields (a bigger, slower model for serving-limit tests)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from treasure.bundled import load_bundled
    from treasure.taxonomy import Taxonomy

    texts = load_bundled()[0].select(range(500))["prompt"]
    specials = ["<pad>", "<s>", "</s>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=1000, special_tokens=specials))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    llama = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,  # room for the tagger tests' long prompts
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    for name, value in config.items():
        setattr(llama, name, value)
    LlamaForCausalLM(llama).save_pretrained(path)
    tokenizer.save_pretrained(path)
    Taxonomy.default().save(path / "taxonomy.yaml")
    (path / "train.json").write_text(json.dumps({"marked": True, "random_init": True}), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_random_model_dir(tmp_path_factory.mktemp("random_model"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    model_dir: Path, api_key: str | None, timeout_s: float = 120, extra: Sequence[str] = ()
) -> tuple[subprocess.Popen, str]:
    """Start `treasure serve` in a child process and wait for /health; returns (process, base URL)."""
    port = _free_port()
    command = [sys.executable, "-c", "from treasure.cli import main; main()", "serve", str(model_dir)]
    command += ["--host", "127.0.0.1", "--port", str(port), *extra]
    if api_key:
        command += ["--api-key", api_key]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root = f"http://127.0.0.1:{port}"
    wait_until_healthy(process, f"{root}/health", timeout_s, "treasure serve")
    return process, f"{root}/v1"


def wait_until_healthy(process: subprocess.Popen, health_url: str, timeout_s: float, what: str) -> None:
    """Poll `health_url` until it answers 200; raise (with the server's output) if the process exits first
    or `timeout_s` passes (then the process is killed). The process's stdout must be a text pipe."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{process.stdout.read()}")
        try:
            if httpx.get(health_url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"{what} did not answer {health_url} within {timeout_s}s")


def stop_server(process: subprocess.Popen, timeout_s: float = 20) -> None:
    """SIGTERM a server started by `start_server`; SIGKILL it if it has not exited after `timeout_s`."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def openai_server(tiny_model_dir: Path) -> Iterator[str]:
    """Base URL of `treasure serve` on the session tiny model (API key `OPENAI_SERVER_KEY`)."""
    process, base_url = start_server(tiny_model_dir, OPENAI_SERVER_KEY)
    try:
        yield base_url
    finally:
        stop_server(process, timeout_s=10)
