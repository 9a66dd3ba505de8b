"""ChatClient against a scripted loopback stub: cache, retries with backoff, counters, key from env."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from fixtures_stub import Stub
from treasure.errors import TreasureError
from treasure.openai_client import ChatClient, ClientConfig

MESSAGES = [{"role": "user", "content": "Say hi."}]


def client(stub: Stub, **kwargs) -> ChatClient:
    return ChatClient(ClientConfig(endpoint=stub.url, model="stub", backoff_s=0.0, **kwargs))


def test_cached_reply_makes_no_second_request_and_file_is_json(stub: Stub, tmp_path: Path):
    cache = tmp_path / "cache"
    first = client(stub, cache_dir=cache)
    assert first.chat(MESSAGES, max_tokens=4) == "hi #1"
    assert first.chat(MESSAGES, max_tokens=4) == "hi #1"  # from disk, not "hi #2"
    assert len(stub.seen) == 1
    assert stub.seen[0][1]["max_tokens"] == 4 and stub.seen[0][1]["messages"] == MESSAGES
    assert first.counters() == {
        "requests": 1,
        "cached": 1,
        "retries": 0,
        "failures": 0,
        "prompt_tokens": 5,
        "completion_tokens": 2,
        "structured_fallbacks": 0,
    }
    (path,) = cache.glob("*.json")
    assert json.loads(path.read_text(encoding="utf-8")) == {"model": "stub", "content": "hi #1"}

    again = client(stub, cache_dir=cache)  # a rerun reuses the reply
    assert again.chat(MESSAGES, max_tokens=4) == "hi #1" and len(stub.seen) == 1
    # another attempt or other params are other keys: a new request
    assert again.chat(MESSAGES, max_tokens=4, attempt=1) == "hi #2"
    assert again.chat(MESSAGES, max_tokens=5) == "hi #3"
    assert again.counters()["requests"] == 2 and again.counters()["cached"] == 1
    assert len(list(cache.glob("*.json"))) == 3


@pytest.mark.parametrize("status", [500, 429])
def test_retryable_error_is_retried_and_counted(stub: Stub, status: int):
    stub.script = [status]
    chat = client(stub)
    assert chat.chat(MESSAGES, max_tokens=4) == "hi #2"
    assert len(stub.seen) == 2
    counts = chat.counters()
    assert counts["requests"] == 2 and counts["retries"] == 1 and counts["failures"] == 0
    assert counts["prompt_tokens"] == 5  # only the reply that came back


def test_failure_counted_after_max_retries(stub: Stub, tmp_path: Path):
    stub.script = [503] * 10
    chat = client(stub, http_retries=2, cache_dir=tmp_path)
    with pytest.raises(openai.InternalServerError):
        chat.chat(MESSAGES, max_tokens=4)
    assert len(stub.seen) == 3
    assert chat.counters() == {
        "requests": 3,
        "cached": 0,
        "retries": 2,
        "failures": 1,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "structured_fallbacks": 0,
    }
    assert not list(tmp_path.glob("*.json"))  # nothing cached


def test_client_error_is_not_retried(stub: Stub):
    stub.script = [400]
    chat = client(stub, http_retries=3)
    with pytest.raises(openai.BadRequestError):
        chat.chat(MESSAGES, max_tokens=4)
    assert len(stub.seen) == 1
    assert chat.counters()["retries"] == 0 and chat.counters()["failures"] == 1


def test_key_is_read_from_the_named_env_var(stub: Stub, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STUB_KEY", "s3cret")
    monkeypatch.setenv("OPENAI_API_KEY", "other")
    client(stub, api_key_env="STUB_KEY").chat(MESSAGES, max_tokens=4)
    monkeypatch.delenv("STUB_KEY")
    client(stub, api_key_env="STUB_KEY").chat(MESSAGES, max_tokens=4)
    assert [headers["Authorization"] for headers, _ in stub.seen] == ["Bearer s3cret", "Bearer none"]


FORMAT = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True}}


def test_auto_falls_back_to_plain_once_when_response_format_is_rejected(stub: Stub):
    stub.reject_format = True
    chat = client(stub)
    assert chat.chat(MESSAGES, max_tokens=4, response_format=FORMAT) == "hi #2"
    assert chat.chat(MESSAGES, max_tokens=4, response_format=FORMAT) == "hi #3"
    assert ["response_format" in body for _, body in stub.seen] == [True, False, False]
    counts = chat.counters()
    assert counts["structured_fallbacks"] == 1 and counts["requests"] == 3 and counts["failures"] == 0


def test_a_bad_request_that_is_not_about_the_format_is_raised_not_a_fallback(stub: Stub):
    stub.script = [400, 400]  # the plain request is rejected too: the request itself is wrong
    chat = client(stub)
    with pytest.raises(openai.BadRequestError):
        chat.chat(MESSAGES, max_tokens=4, response_format=FORMAT)
    assert chat.counters()["structured_fallbacks"] == 0 and chat.counters()["failures"] == 1
    assert chat.chat(MESSAGES, max_tokens=4, response_format=FORMAT) == "hi #3"
    assert "response_format" in stub.seen[-1][1]  # still structured


def test_json_schema_never_falls_back_and_off_never_sends_the_format(stub: Stub):
    stub.reject_format = True
    with pytest.raises(openai.BadRequestError):
        client(stub, structured="json_schema").chat(MESSAGES, max_tokens=4, response_format=FORMAT)
    assert client(stub, structured="off").chat(MESSAGES, max_tokens=4, response_format=FORMAT) == "hi #2"
    assert ["response_format" in body for _, body in stub.seen] == [True, False]
    with pytest.raises(TreasureError, match="auto, json_schema, off"):
        client(stub, structured="guided")


def test_structured_and_plain_replies_are_cached_apart(stub: Stub, tmp_path: Path):
    chat = client(stub, cache_dir=tmp_path)
    assert chat.chat(MESSAGES, max_tokens=4, response_format=FORMAT) == "hi #1"
    assert chat.chat(MESSAGES, max_tokens=4) == "hi #2"  # not the structured reply
    assert chat.chat(MESSAGES, max_tokens=4, response_format=FORMAT) == "hi #1"
    assert stub.seen[0][1]["response_format"] == FORMAT and len(stub.seen) == 2


def test_the_same_request_from_many_threads_at_once_is_cached_once(stub: Stub, tmp_path: Path):
    chat = client(stub, cache_dir=tmp_path)
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda _: chat.chat(MESSAGES, max_tokens=4), range(16)))
    assert all(reply.startswith("hi #") for reply in replies)
    assert len(list(tmp_path.glob("*.json"))) == 1 and not list(tmp_path.glob(".*"))
