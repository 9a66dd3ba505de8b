"""Serving limits and a strict API: no request can starve the server, no input gives a 5xx.

Live servers run a random-init model that is slow enough to make long requests long (it rarely writes
an end-of-turn token, so it writes `max_tokens` tokens); each long request is sized from a measured
tokens/s, so the tests assert what happens, not how fast the machine is.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures_server import make_random_model_dir, start_server, stop_server
from treasure.generate import GenerationConfig, Generator
from treasure.serve import ServeConfig, create_app

CONTEXT = 16384  # room for 60 s of tokens of the test model on a fast CPU (6 ms/token measured)
USER = [{"role": "user", "content": "Tell me a story."}]


@pytest.fixture(scope="module")
def slow_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_random_model_dir(
        tmp_path_factory.mktemp("slow_model"),
        hidden_size=512,
        intermediate_size=1024,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=CONTEXT,
    )


@pytest.fixture(scope="module")
def limited_server(slow_model_dir: Path) -> Iterator[str]:
    extra = ["--max-queue", "2", "--max-body-bytes", "4096", "--request-timeout", "120"]
    process, base_url = start_server(slow_model_dir, None, extra=extra)
    try:
        yield base_url
    finally:
        stop_server(process)


def _chat(base_url: str, timeout: float, **body: object) -> httpx.Response:
    payload = {"messages": USER, "temperature": 0, **body}
    return httpx.post(f"{base_url}/chat/completions", json=payload, timeout=timeout)


def tokens_for(base_url: str, seconds: float, sample: int = 200) -> int:
    """max_tokens that keeps this server's model busy for at least `seconds` (measured on `sample` tokens;
    the model is sized so that this fits in its context, else the test using it would prove nothing)."""
    began = time.monotonic()
    response = _chat(base_url, 60, max_tokens=sample)
    assert response.status_code == 200, response.text
    per_token = (time.monotonic() - began) / max(1, response.json()["usage"]["completion_tokens"])
    tokens = int(seconds / per_token)
    assert tokens <= CONTEXT - 100, f"the test model is too fast here ({per_token * 1000:.2f} ms/token)"
    return tokens


@pytest.mark.slow
def test_prompt_plus_max_tokens_over_the_context_is_400_naming_both(limited_server: str) -> None:
    response = _chat(limited_server, 30, max_tokens=CONTEXT)
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert f"max_tokens is {CONTEXT}" in message and f"context of {CONTEXT} tokens" in message


@pytest.mark.slow
def test_body_over_the_limit_is_413(limited_server: str) -> None:
    big = [{"role": "user", "content": "word " * 2000}]
    response = httpx.post(f"{limited_server}/chat/completions", json={"messages": big}, timeout=30)
    assert response.status_code == 413
    chunks = (b"x" * 1024 for _ in range(8))  # no Content-Length: counted as it streams in
    response = httpx.post(f"{limited_server}/chat/completions", content=chunks, timeout=30)
    assert response.status_code == 413


@pytest.mark.slow
def test_an_abandoned_long_request_does_not_starve_the_next(limited_server: str) -> None:
    long_tokens = tokens_for(limited_server, 60)
    with pytest.raises(httpx.TimeoutException):
        _chat(limited_server, 1.0, max_tokens=long_tokens)  # the client gives up after 1 s
    began = time.monotonic()
    response = _chat(limited_server, 30, max_tokens=4)
    assert response.status_code == 200, response.text
    assert time.monotonic() - began < 30  # without cancelling, the first request held the model ~60 s


@pytest.mark.slow
def test_a_short_request_overtakes_a_long_one(limited_server: str) -> None:
    long_tokens = tokens_for(limited_server, 20)
    long_reply: list[httpx.Response] = []
    worker = threading.Thread(
        target=lambda: long_reply.append(_chat(limited_server, 180, max_tokens=long_tokens))
    )
    worker.start()
    time.sleep(2.0)  # the long one holds the model
    began = time.monotonic()
    short = _chat(limited_server, 30, max_tokens=4)
    assert short.status_code == 200 and time.monotonic() - began < 8  # first come first served: ~18 s
    assert worker.is_alive()  # it was overtaken, not finished
    worker.join()
    assert long_reply[0].status_code == 200
    assert long_reply[0].json()["usage"]["completion_tokens"] == long_tokens


@pytest.mark.slow
def test_a_stream_closed_early_stops_its_generation(limited_server: str) -> None:
    long_tokens = tokens_for(limited_server, 60)
    payload = {"messages": USER, "temperature": 0, "max_tokens": long_tokens, "stream": True}
    with httpx.stream("POST", f"{limited_server}/chat/completions", json=payload, timeout=30) as stream:
        lines = stream.iter_lines()
        assert next(lines).startswith("data:")
    response = _chat(limited_server, 30, max_tokens=4)
    assert response.status_code == 200, response.text


@pytest.mark.slow
def test_more_requests_than_the_queue_get_503_with_retry_after(limited_server: str) -> None:
    long_tokens = tokens_for(limited_server, 30)
    payload = {"messages": USER, "temperature": 0, "max_tokens": long_tokens, "stream": True}
    with (
        httpx.stream("POST", f"{limited_server}/chat/completions", json=payload, timeout=60) as first,
        httpx.stream("POST", f"{limited_server}/chat/completions", json=payload, timeout=60) as second,
    ):
        assert first.status_code == second.status_code == 200
        third = _chat(limited_server, 30, max_tokens=4)
        assert third.status_code == 503
        assert third.headers["retry-after"] == "1"
        assert third.json()["error"]["type"] == "server_busy"
    # the slots are given back once the server has seen the streams close (after their next token)
    deadline = time.monotonic() + 15
    while (
        status := _chat(limited_server, 60, max_tokens=4).status_code
    ) == 503 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status == 200


@pytest.mark.slow
def test_time_limit_gives_504_and_sigterm_drains_then_exits(slow_model_dir: Path) -> None:
    process, base_url = start_server(slow_model_dir, None, extra=["--request-timeout", "3", "--drain", "1"])
    try:
        long_tokens = tokens_for(base_url, 60, sample=20)  # a short sample: it must finish within 3 s
        began = time.monotonic()
        response = _chat(base_url, 60, max_tokens=long_tokens)
        assert response.status_code == 504, response.text
        assert "time limit of 3 s" in response.json()["error"]["message"]
        assert time.monotonic() - began < 30
        payload = {"messages": USER, "temperature": 0, "max_tokens": long_tokens, "stream": True}
        with httpx.stream("POST", f"{base_url}/chat/completions", json=payload, timeout=60) as stream:
            events = [line for line in stream.iter_lines() if line.startswith("data:")]
        errors = [json.loads(e[5:])["error"] for e in events if '"error"' in e]
        assert errors and errors[0]["code"] == 504
        assert events[-1] == "data: [DONE]"
        # SIGTERM while a long request runs: it gets drain_s (1 s), is stopped, and the server exits
        worker = threading.Thread(target=lambda: _chat(base_url, 120, max_tokens=long_tokens), daemon=True)
        worker.start()
        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) is not None
    finally:
        if process.poll() is None:
            process.kill()


# ---------------------------------------------------------------- strict API (in process)


@pytest.fixture(scope="module")
def client(random_model_dir: Path) -> TestClient:
    generator = Generator.from_model_dir(random_model_dir)
    config = ServeConfig(generation=GenerationConfig(max_new_tokens=8))
    return TestClient(create_app(generator, config))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user", "assistant", "tool"]) | st.text(max_size=4)},
        optional={"content": st.text(max_size=20) | json_values},
    ),
    max_size=3,
)
bodies = st.fixed_dictionaries(
    {"messages": st.just(USER) | messages | json_values},
    optional={
        "temperature": json_values,
        "top_p": json_values,
        "max_tokens": st.integers(-2, 6) | json_values,
        "seed": json_values,
        "n": json_values,
        "stream": st.booleans() | json_values,
        "markers": st.dictionaries(
            st.sampled_from(["language", "length_bucket", "task", "quality", "x"]) | st.text(max_size=4),
            st.sampled_from(["English", "concise", "QuestionAnswering", 3]) | json_values,
            max_size=3,
        )
        | json_values,
        "treasure_mode": st.sampled_from(["conditioning", "controlling", "fixed"]) | json_values,
        "treasure_strict": st.booleans() | json_values,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_no_request_body_gives_a_5xx(client: TestClient, body: dict) -> None:
    response = _post_raw(client, json.dumps(body))  # lone surrogates travel as \\ud800 escapes
    assert response.status_code < 500, (body, response.text)
    if response.status_code == 200 and body.get("stream") is True:
        assert response.text.rstrip().endswith("data: [DONE]")
    elif response.status_code != 200:
        assert response.json()["error"]["message"]


def _post_raw(client: TestClient, raw: str) -> httpx.Response:
    return client.post(
        "/v1/chat/completions", content=raw.encode(), headers={"content-type": "application/json"}
    )


@pytest.mark.parametrize(
    "raw",
    [
        '{"messages": [{"role": "user", "content": "\\ud800 hi"}]}',
        '{"messages": [{"role": "system", "content": "\\udfff"}, {"role": "user", "content": "hi"}]}',
        '{"messages": [{"role": "user", "content": "hi"}], "markers": {"\\ud800": "x"}}',
        '{"messages": [{"role": "user", "content": "hi"}], "markers": {"language": "\\ud800"}}',
        '{"messages": [{"role": "user", "content": "\\ud800"}], "stream": true}',
    ],
)
def test_lone_surrogates_are_400_not_500(client: TestClient, raw: str) -> None:
    response = _post_raw(client, raw)
    assert response.status_code == 400, response.text
    assert "surrogate" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "extra",
    [{"treasure_strict": 0}, {"stream": 0}, {"seed": False}, {"temperature": False}, {"max_tokens": "8"}],
)
def test_types_are_strict(client: TestClient, extra: dict) -> None:
    response = client.post("/v1/chat/completions", json={"messages": USER, **extra})
    assert response.status_code == 422, response.text


def test_content_as_a_list_of_text_parts_is_accepted(client: TestClient) -> None:
    parts = [{"type": "text", "text": "Tell me "}, {"type": "text", "text": "a story."}]
    body = {"messages": [{"role": "user", "content": parts}], "max_tokens": 4, "temperature": 0}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    images = [{"type": "image_url", "image_url": {"url": "http://x"}}]
    response = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": images}]})
    assert response.status_code == 422


def test_wrong_method_is_405_with_allow(client: TestClient) -> None:
    response = client.get("/v1/chat/completions")
    assert response.status_code == 405
    assert "POST" in response.headers["allow"]


def test_schema_declares_sse_and_marker_names(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/v1/chat/completions"]["post"]
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert {"400", "413", "422", "503", "504"} <= set(operation["responses"])
    body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    markers = schema["components"]["schemas"][body]["properties"]["markers"]["anyOf"][0]["properties"]
    assert markers["length_bucket"]["enum"] == ["concise", "medium", "long"]
    assert markers["length_tokens"] == {
        "type": "integer",
        "minimum": 0,
        "description": markers["length_tokens"]["description"],
    }
    assert "quality" not in markers  # set by the reward model, never by a user


def test_a_vanishing_temperature_decodes_greedily_instead_of_failing(client: TestClient) -> None:
    # found by schemathesis: logits / 4.9e-283 overflow to inf and sampling failed with a 500
    body = {"messages": USER, "max_tokens": 4, "temperature": 4.892633653712843e-283, "top_p": 5e-324}
    assert client.post("/v1/chat/completions", json=body).status_code == 200


def test_completions_refuse_prompts_without_tokens(client: TestClient) -> None:
    # found by schemathesis: an empty prompt, or characters this test tokenizer has no token for, gave a 500
    assert client.post("/v1/completions", json={"prompt": ""}).status_code == 422
    response = client.post("/v1/completions", json={"prompt": "\x1b\U0010de01\x0e"})
    assert response.status_code == 400 and "empty under this model's tokenizer" in response.text


def test_seeds_beyond_64_bits_are_422_not_500(client: TestClient) -> None:
    # found by schemathesis: torch.manual_seed(32589158477190044729) raised and gave a 500
    body = {"messages": USER, "max_tokens": 4, "seed": 32589158477190044729}
    assert client.post("/v1/chat/completions", json=body).status_code == 422
    assert client.post("/v1/completions", json={"prompt": "Hi", "seed": 2**64}).status_code == 422
