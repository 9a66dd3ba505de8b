"""`treasure serve` through the official openai client on loopback (the session tiny model)."""

from __future__ import annotations

import httpx
import openai
import pytest

from fixtures_server import OPENAI_SERVER_KEY
from treasure import template

pytestmark = pytest.mark.slow
USER = [{"role": "user", "content": "Give me a tip for learning to cook."}]


@pytest.fixture(scope="module")
def client(openai_server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=openai_server, api_key=OPENAI_SERVER_KEY, max_retries=0)


def test_chat_returns_the_answer_and_the_markers_apart(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="tiny", messages=USER, max_tokens=120, temperature=0, seed=1)
    extra = reply.model_extra["treasure"]
    assert template.OPEN not in reply.choices[0].message.content
    assert extra["mode"] == "conditioning" and extra["markers"], extra
    assert reply.usage.completion_tokens > 0 and reply.choices[0].finish_reason in ("stop", "length")


def test_markers_are_honoured_in_strict_mode(client: openai.OpenAI) -> None:
    body = {"markers": {"length_bucket": "concise", "task": "Explanation"}, "treasure_strict": True}
    reply = client.chat.completions.create(model="tiny", messages=USER, max_tokens=120, extra_body=body)
    extra = reply.model_extra["treasure"]
    assert extra["mode"] == "controlling"
    assert extra["given_markers"] == {"length_bucket": "concise", "task": "Explanation"}
    assert extra["markers"]["length_bucket"] == "concise" and extra["markers"]["task"] == "Explanation"


def test_streaming_sends_only_the_answer(client: openai.OpenAI) -> None:
    kwargs = {"model": "tiny", "messages": USER, "max_tokens": 120, "temperature": 0, "seed": 1}
    whole = client.chat.completions.create(**kwargs)
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert template.OPEN not in streamed and template.CLOSE not in streamed
    assert streamed == whole.choices[0].message.content
    assert chunks[-1].model_extra["treasure"]["markers"] == whole.model_extra["treasure"]["markers"]


def test_bad_api_key_is_401(openai_server: str) -> None:
    bad = openai.OpenAI(base_url=openai_server, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="tiny", messages=USER)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"markers": {"colour": "red"}}, "unknown marker 'colour'"),
        ({"markers": {"length_bucket": "huge"}}, "valid: concise, medium, long"),
        ({"markers": {"quality": 1.0}}, "cannot be set at inference"),
        ({"treasure_mode": "steering"}, "treasure_mode"),
    ],
)
def test_bad_markers_are_422_with_a_message(client: openai.OpenAI, body: dict, message: str) -> None:
    with pytest.raises(openai.UnprocessableEntityError, match=message):
        client.chat.completions.create(model="tiny", messages=USER, extra_body=body)


def test_invalid_requests_are_4xx_never_5xx(openai_server: str) -> None:
    headers = {"Authorization": f"Bearer {OPENAI_SERVER_KEY}"}
    url = f"{openai_server}/chat/completions"
    bad_bodies = [
        {"messages": []},
        {"messages": USER, "temperature": -1},
        {"messages": USER, "n": 3},
        {"messages": "hello"},
    ]
    for body in bad_bodies:
        response = httpx.post(url, json=body, headers=headers, timeout=30)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["message"]
    last_not_user = {"messages": [{"role": "assistant", "content": "hi"}]}
    response = httpx.post(url, json=last_not_user, headers=headers, timeout=30)
    assert response.status_code == 400 and "must have role 'user'" in response.json()["error"]["message"]
    markers_unasked = {
        "messages": USER,
        "markers": {"length_bucket": "long"},
        "treasure_mode": "conditioning",
    }
    response = httpx.post(url, json=markers_unasked, headers=headers, timeout=30)
    assert response.status_code == 400 and "takes no markers" in response.json()["error"]["message"]
    response = httpx.post(url, content=b"{not json", headers=headers, timeout=30)
    assert 400 <= response.status_code < 500


def test_models_and_health(client: openai.OpenAI, openai_server: str) -> None:
    assert len(client.models.list().data) == 1
    health = httpx.get(openai_server.removesuffix("/v1") + "/health", timeout=10).json()
    assert health["status"] == "ok" and health["marked"] is True
