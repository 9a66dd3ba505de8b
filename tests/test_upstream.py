"""`treasure serve --upstream`: the marker layer in front of an OpenAI-compatible completion engine.

The engine here is another `treasure serve` (its `/v1/completions`), on the same random-init model, so the
marker layer's answers can be compared token for token with the engine's own chat answers. Broken engines
(nothing listening, never answering, answering garbage) are tiny sockets and HTTP handlers in the test.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from fixtures_server import _free_port, start_server, stop_server

# `treasure serve` subprocesses: the engine and the marker layer in front of it
pytestmark = pytest.mark.slow

USER = [{"role": "user", "content": "Tell me about the sea."}]


@pytest.fixture(scope="module")
def engine(random_model_dir: Path) -> Iterator[str]:
    process, url = start_server(random_model_dir, None)
    try:
        yield url
    finally:
        stop_server(process)


@pytest.fixture(scope="module")
def front(random_model_dir: Path, engine: str) -> Iterator[str]:
    process, url = start_server(random_model_dir, None, extra=["--upstream", engine])
    try:
        yield url
    finally:
        stop_server(process)


def _chat(url: str, **body: object) -> httpx.Response:
    payload = {"messages": USER, "temperature": 0, "max_tokens": 24, **body}
    return httpx.post(f"{url}/chat/completions", json=payload, timeout=60)


def test_completions_continue_raw_text_with_stop_and_stream(engine: str) -> None:
    body = {"prompt": "Once upon a time", "max_tokens": 12, "temperature": 0}
    whole = httpx.post(f"{engine}/completions", json=body, timeout=60).json()
    text = whole["choices"][0]["text"]
    assert whole["object"] == "text_completion" and whole["usage"]["completion_tokens"] == 12 and text
    cut = httpx.post(f"{engine}/completions", json={**body, "stop": text[3:6]}, timeout=60).json()
    assert cut["choices"][0] == {"index": 0, "text": text[: text.find(text[3:6])], "finish_reason": "stop"}
    with httpx.stream("POST", f"{engine}/completions", json={**body, "stream": True}, timeout=60) as reply:
        events = [line[6:] for line in reply.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == text
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    "extra",
    [{}, {"markers": {"length_bucket": "concise"}, "treasure_strict": True}, {"treasure_mode": "fixed"}],
)
def test_answers_through_the_marker_layer_equal_the_engines_own(front: str, engine: str, extra: dict) -> None:
    via_front, direct = _chat(front, **extra).json(), _chat(engine, **extra).json()
    assert via_front["choices"] == direct["choices"]
    assert via_front["treasure"] == direct["treasure"]
    assert via_front["usage"] == direct["usage"]


def test_streaming_through_the_marker_layer_hides_the_template(front: str, engine: str) -> None:
    payload = {"messages": USER, "temperature": 0, "max_tokens": 24, "stream": True}
    with httpx.stream("POST", f"{front}/chat/completions", json=payload, timeout=60) as reply:
        events = [json.loads(line[6:]) for line in reply.iter_lines() if line.startswith("data: {")]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
    assert "<TEMPLATE>" not in text
    assert text == _chat(engine).json()["choices"][0]["message"]["content"]


class _Garbage(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        self.wfile.write(b"data: this is not a completion\n\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def broken_engines() -> Iterator[dict[str, str]]:
    """URLs of engines that are down, silent (accepts, never answers) and answering garbage."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    garbage = ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    threading.Thread(target=garbage.serve_forever, daemon=True).start()
    try:
        yield {
            "down": f"http://127.0.0.1:{_free_port()}/v1",
            "silent": f"http://127.0.0.1:{silent.getsockname()[1]}/v1",
            "garbage": f"http://127.0.0.1:{garbage.server_address[1]}/v1",
        }
    finally:
        garbage.shutdown()
        silent.close()


@pytest.mark.parametrize(("engine_kind", "status"), [("down", 502), ("silent", 504), ("garbage", 502)])
def test_a_broken_engine_gives_a_clear_502_or_504(
    random_model_dir: Path, broken_engines: dict[str, str], engine_kind: str, status: int
) -> None:
    extra = ["--upstream", broken_engines[engine_kind], "--upstream-timeout", "2"]
    process, url = start_server(random_model_dir, None, extra=extra)
    try:
        response = _chat(url)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["type"] == "upstream_error" and broken_engines[engine_kind] in error["message"]
        payload = {"messages": USER, "max_tokens": 8, "stream": True}
        with httpx.stream("POST", f"{url}/chat/completions", json=payload, timeout=60) as reply:
            lines = [line for line in reply.iter_lines() if line.startswith("data: ")]
        assert json.loads(lines[-2][6:])["error"]["code"] == status and lines[-1] == "data: [DONE]"
    finally:
        stop_server(process)
