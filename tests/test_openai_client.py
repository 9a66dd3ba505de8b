"""ChatClient against a scripted loopback stub: cache, retries with backoff, counters, key from env."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import openai
import pytest

from treasure.openai_client import ChatClient, ClientConfig

MESSAGES = [{"role": "user", "content": "Say hi."}]


class Stub(ThreadingHTTPServer):
    """Answers each POST with the next status of `script` (200 once it is empty) and records the requests."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.script: list[int] = []
        self.seen: list[tuple[Message, dict]] = []  # (headers, JSON body)


class Handler(BaseHTTPRequestHandler):
    server: Stub

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append((self.headers, body))
        status = self.server.script.pop(0) if self.server.script else 200
        reply = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"hi #{len(self.server.seen)}"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        }
        data = json.dumps(reply if status == 200 else {"error": {"message": "boom"}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = Stub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def client(stub: Stub, **kwargs) -> ChatClient:
    url = f"http://127.0.0.1:{stub.server_address[1]}/v1"
    return ChatClient(ClientConfig(base_url=url, model="stub", backoff_s=0.0, **kwargs))


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
    chat = client(stub, max_retries=2, cache_dir=tmp_path)
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
    }
    assert not list(tmp_path.glob("*.json"))  # nothing cached


def test_client_error_is_not_retried(stub: Stub):
    stub.script = [400]
    chat = client(stub, max_retries=3)
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
