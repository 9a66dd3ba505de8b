"""Optional vLLM backend (GPU): batched offline generation through `vllm.LLM` and `SamplingParams`.

vLLM is not a dependency of treasure; install it with `pip install 'treasure[vllm]'` on a CUDA machine.
The offline `LLM` API has no token streaming, so `stream` yields the whole completion as one piece.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from treasure.backends import Completion, GenerationConfig, Stop
from treasure.errors import TreasureError

INSTALL_HINT = (
    "the vLLM backend needs the `vllm` package and a CUDA GPU: install it with "
    "`pip install 'treasure[vllm]'` (or `pip install vllm`), or use `--backend transformers`"
)


def import_vllm() -> Any:
    """Import vllm, or raise a `TreasureError` that says how to install it."""
    try:
        import vllm
    except ImportError as exc:
        raise TreasureError(f"{INSTALL_HINT} (import failed: {exc})") from None
    return vllm


class VLLMBackend:
    """Batched offline generation with vLLM; vLLM schedules the batch itself (continuous batching)."""

    def __init__(self, model_dir: str | Path, **engine_options: Any) -> None:
        vllm = import_vllm()
        self._sampling_params = vllm.SamplingParams
        self.llm = vllm.LLM(model=str(model_dir), **engine_options)
        self.tokenizer = self.llm.get_tokenizer()
        self.context_length: int | None = self.llm.llm_engine.model_config.max_model_len

    def _params(self, config: GenerationConfig) -> Any:
        options: dict[str, Any] = {
            "max_tokens": config.max_new_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p if config.temperature > 0 else 1.0,
            "repetition_penalty": config.repetition_penalty,
            "seed": config.seed,
            "skip_special_tokens": True,
        }
        if config.top_k > 0:
            options["top_k"] = config.top_k
        return self._sampling_params(**options)

    def complete(
        self, texts: list[str], config: GenerationConfig, stop: Stop | None = None
    ) -> list[Completion]:
        """Complete every prompt text in one `LLM.generate` call (the offline call cannot be stopped
        early: `stop` is not checked; serving limits apply before and after it)."""
        outputs = self.llm.generate(texts, self._params(config), use_tqdm=False)
        completions = []
        for request in outputs:
            best = request.outputs[0]
            completions.append(
                Completion(
                    text=best.text, n_tokens=len(best.token_ids), finished=best.finish_reason == "stop"
                )
            )
        return completions

    def stream(self, text: str, config: GenerationConfig, stop: Stop | None = None) -> Iterator[str]:
        """The offline API cannot stream: yield the finished completion as one piece."""
        yield self.complete([text], config, stop)[0].text

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` under this model's tokenizer."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
