"""A scripted OpenAI-compatible chat endpoint on loopback (owned by openai_client): the `stub` fixture.

Each POST is answered with the next status of `script` (200 once it is empty); `reject_format` answers 400
to any request carrying `response_format` (an endpoint without structured output); `reply` makes the
answer's text from the request body. Every request is recorded in `seen` as (headers, JSON body).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Stub(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.script: list[int] = []
        self.reject_format = False
        self.reply: Callable[[dict], str] = lambda body: f"hi #{len(self.seen)}"
        self.seen: list[tuple[Message, dict]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(BaseHTTPRequestHandler):
    server: Stub

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append((self.headers, body))
        status = self.server.script.pop(0) if self.server.script else 200
        if self.server.reject_format and "response_format" in body:
            status = 400
        reply = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.server.reply(body)},
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
