"""`treasure serve --upstream A,B`: least outstanding requests, failover, and admission sized for engines.

The engines are echo engines in this process: a streamed `/v1/completions` answer "NAME answers request N"
for the "request N" in the prompt, after `delay` seconds. Killing one closes its port and drops the
connections it holds, as a crashed engine would; it starts again on the same port. One `treasure serve` in
front of two of them, with default settings, serves every test of the module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from fixtures_server import _free_port, start_server, stop_server
from treasure.backends import Stop
from treasure.errors import TreasureError
from treasure.serve import Admission, ServeConfig


class EchoEngine(ThreadingHTTPServer):
    """Answers each request after `delay` seconds; `seen`: the "request N" of each request it got."""

    request_queue_size = 256  # 100 connections at once
    daemon_threads = True

    def __init__(self, name: str, port: int, delay: float) -> None:
        super().__init__(("127.0.0.1", port), Echo)
        self.name, self.delay = name, delay
        self.seen: list[str] = []
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()

    def process_request(self, request: socket.socket, client_address: object) -> None:
        with self.lock:
            self.open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        with self.lock:
            self.open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # after a kill, the handlers still sleeping fail on their closed connections

    def kill(self) -> None:
        """Stop listening and drop every connection held, without an answer."""
        self.shutdown()
        self.server_close()
        with self.lock:
            for connection in self.open:
                with contextlib.suppress(OSError):  # closed already
                    connection.shutdown(socket.SHUT_RDWR)


class Echo(BaseHTTPRequestHandler):
    server: EchoEngine

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        asked = re.search(r"request \d+", body["prompt"])
        self.server.seen.append(asked[0] if asked else "?")
        time.sleep(self.server.delay)
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        text = f"{self.server.name} answers {asked[0] if asked else 'nothing'}"
        for piece in re.findall(r"\S+\s*", text):
            self.wfile.write(f"data: {json.dumps({'choices': [{'index': 0, 'text': piece}]})}\n\n".encode())
        last = {"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}
        self.wfile.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())

    def log_message(self, *args: object) -> None:
        pass


class Engine:
    """An echo engine on a fixed port, to kill and start again."""

    def __init__(self, name: str) -> None:
        self.name, self.port = name, _free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.server: EchoEngine | None = None

    def start(self, delay: float) -> None:
        self.kill()
        self.server = EchoEngine(self.name, self.port, delay)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def kill(self) -> None:
        if self.server is not None:
            self.server.kill()
            self.server = None


@pytest.fixture(scope="module")
def engines() -> Iterator[tuple[Engine, Engine]]:
    a, b = Engine("A"), Engine("B")
    try:
        yield a, b
    finally:
        a.kill()
        b.kill()


@pytest.fixture(scope="module")
def front(random_model_dir: Path, engines: tuple[Engine, Engine]) -> Iterator[str]:
    """`treasure serve --upstream A,B` with every other setting at its default."""
    upstream = ",".join(engine.url for engine in engines)
    process, url = start_server(random_model_dir, None, extra=["--upstream", upstream])
    try:
        yield url
    finally:
        stop_server(process)


async def _ask(client: httpx.AsyncClient, front: str, n: int, stream: bool = False) -> tuple[int, str]:
    """Status and answer of the chat "Please handle request N." (streamed: the joined deltas)."""
    body = {"messages": [{"role": "user", "content": f"Please handle request {n}."}], "stream": stream}
    if not stream:
        reply = await client.post(f"{front}/chat/completions", json=body)
        return reply.status_code, reply.json()["choices"][0]["message"]["content"] if reply.is_success else ""
    text = ""
    async with client.stream("POST", f"{front}/chat/completions", json=body) as reply:
        async for line in reply.aiter_lines():
            if line.startswith("data: {"):
                event = json.loads(line[6:])
                assert "error" not in event, event
                text += event["choices"][0]["delta"].get("content") or ""
    return reply.status_code, text


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200))


def _answerer(n: int, status: int, answer: str) -> str:
    """The engine that answered request `n`, checking that the answer is that request's."""
    assert status == 200, (n, status, answer)
    name, _, rest = answer.strip().partition(" ")
    assert rest == f"answers request {n}", (n, answer)
    return name


def _ask_one(front: str, n: int) -> str:
    async def one() -> str:
        async with _client() as client:
            return _answerer(n, *await _ask(client, front, n))

    return asyncio.run(one())


def _streamed_and_not(seen: list[str]) -> bool:
    """Whether `seen` holds at least 5 requests, streamed ones (odd N) and others."""
    return len(seen) >= 5 and {int(asked.split()[-1]) % 2 for asked in seen} == {0, 1}


@pytest.mark.slow
def test_a_killed_engine_loses_no_request_and_is_used_again_after_the_cool_down(
    front: str, engines: tuple[Engine, Engine]
) -> None:
    a, b = engines
    a.start(delay=10)  # holds its requests until it is killed: none of them sends a byte
    b.start(delay=0.2)

    async def load() -> tuple[list[tuple[int, str]], list[str], float]:
        async with _client() as client:
            asks = [asyncio.create_task(_ask(client, front, n, stream=n % 2 == 1)) for n in range(40)]
            deadline = time.monotonic() + 30
            while not _streamed_and_not(a.server.seen) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            on_a, killed = list(a.server.seen), time.monotonic()
            a.kill()
            return await asyncio.gather(*asks), on_a, killed

    answers, on_a, killed = asyncio.run(load())
    by = [_answerer(n, status, answer) for n, (status, answer) in enumerate(answers)]
    assert _streamed_and_not(on_a)
    assert by == ["B"] * 40  # those A held too, streamed or not: sent again to B
    a.start(delay=0)  # back at once, but out of rotation until the cool-down (5 s) has passed
    during = []
    while time.monotonic() < killed + 4:
        during.append(_ask_one(front, 100 + len(during)))
    assert len(during) >= 3 and set(during) == {"B"}
    time.sleep(max(0.0, killed + 6.5 - time.monotonic()))
    after = [_ask_one(front, 200 + n) for n in range(4)]
    assert "A" in after


@pytest.mark.slow
def test_the_engine_with_fewer_requests_in_flight_gets_the_next(
    front: str, engines: tuple[Engine, Engine]
) -> None:
    a, b = engines
    a.start(delay=1.0)  # slow: its requests stay in flight
    b.start(delay=0.0)

    async def worker(client: httpx.AsyncClient, first: int, until: float) -> list[str]:
        names = []
        while time.monotonic() < until:
            n = first + len(names)
            names.append(_answerer(n, *await _ask(client, front, n)))
        return names

    async def load() -> list[str]:
        async with _client() as client:
            until = time.monotonic() + 3
            runs = await asyncio.gather(*(worker(client, 1000 * w, until) for w in range(1, 5)))
        return [name for run in runs for name in run]

    names = asyncio.run(load())
    assert names.count("B") > 3 * names.count("A") > 0, names  # round robin would give them as many


@pytest.mark.slow
def test_100_concurrent_chats_with_default_settings_are_all_answered(
    front: str, engines: tuple[Engine, Engine]
) -> None:
    a, b = engines
    a.start(delay=0.3)
    b.start(delay=0.3)

    async def load() -> list[tuple[int, str]]:
        async with _client() as client:
            return await asyncio.gather(*(_ask(client, front, n, stream=n % 4 == 0) for n in range(100)))

    by = [_answerer(n, status, answer) for n, (status, answer) in enumerate(asyncio.run(load()))]
    assert set(by) == {"A", "B"}


def test_admission_defaults_follow_the_engine() -> None:
    two = ServeConfig(upstream="http://a:8000/v1, http://b:8000/v1/")
    assert (two.in_flight_limit(), two.waiting_limit()) == (512, 512)
    assert (ServeConfig(backend="vllm").in_flight_limit(), ServeConfig(backend="vllm").waiting_limit()) == (
        256,
        256,
    )
    assert (ServeConfig().in_flight_limit(), ServeConfig().waiting_limit()) == (16, 0)
    assert ServeConfig(upstream="http://a/v1", max_queue=8, max_waiting=2).waiting_limit() == 2
    for bad in ("http://a:8000/v1,a:8001", "http://a/v1,", "http://a/v1,http://a/v1/"):
        with pytest.raises(TreasureError, match="upstream: "):
            ServeConfig(upstream=bad)


def test_requests_beyond_the_limit_wait_in_a_bounded_line() -> None:
    async def scenario() -> None:
        admission = Admission(limit=1, waiting=1, wait_s=0.5)
        first, second, third, fourth = Stop(), Stop(), Stop(), Stop()
        assert await admission.enter(first)
        waiting = asyncio.create_task(admission.enter(second))
        await asyncio.sleep(0.05)
        assert not await admission.enter(third)  # the line (1) is full: refused at once
        admission.leave(first)
        assert await waiting  # the slot went to the one waiting
        began = time.monotonic()
        assert not await admission.enter(fourth)  # waited 0.5 s for a slot that did not come
        assert time.monotonic() - began >= 0.45
        admission.leave(second)
        assert await admission.enter(fourth) and admission.active == {fourth}

    asyncio.run(scenario())
