"""Fair turns on one model: handing the model over and continuing from the KV cache changes no output."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from treasure.backends import GenerationConfig
from treasure.backends.transformers_backend import TransformersBackend
from treasure.backends.turns import TurnLock
from treasure.generate import Generator


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_turns_give_the_same_tokens_as_one_generate_call(random_model_dir: Path, temperature: float) -> None:
    text = Generator.from_model_dir(random_model_dir).prepare("Tell me a story.").text
    config = GenerationConfig(max_new_tokens=40, temperature=temperature, seed=3)
    whole = TransformersBackend(random_model_dir, turn_tokens=0)
    turned = TransformersBackend(random_model_dir, turn_tokens=4)
    turned._turns.waiting = lambda: True  # someone always waits: a hand-over every 4 tokens
    expected = whole.complete([text], config)[0]
    assert expected.n_tokens == 40  # long enough for ten turns
    assert turned.complete([text], config)[0] == expected
    assert "".join(turned.stream(text, config)) == expected.text


def test_turn_lock_is_first_come_first_served() -> None:
    lock, order = TurnLock(), []

    def take(name: str) -> None:
        with lock:
            order.append(name)

    with lock:
        threads = []
        for name in "abc":
            threads.append(threading.Thread(target=take, args=(name,)))
            threads[-1].start()
            while sum(1 for _ in lock._queue) < len(threads):  # each is queued before the next starts
                time.sleep(0.01)
        assert lock.waiting()
    for thread in threads:
        thread.join()
    assert order == ["a", "b", "c"] and not lock.waiting()
