"""`treasure serve`: an OpenAI-compatible HTTP API over a `Generator` (FastAPI app factory + uvicorn runner).

Endpoints: `POST /v1/chat/completions` (with the `markers`, `treasure_mode`, `treasure_strict`, `guidance`
and `length_budget` extension fields; the answer is in `message.content`, the markers in a `treasure`
object), `POST /v1/completions` (raw text), `GET /v1/models`, `GET /health`. Streaming (SSE) sends answer
text only: the template block is held back until it is closed. Bad requests get a 4xx with an OpenAI-style
error body, never a 5xx.

Limits (`ServeConfig`): request bodies over `max_body_bytes` get 413; prompt tokens + `max_tokens`
over the model's context get 400; beyond `max_queue` requests in flight, up to `max_waiting` more wait
`queue_timeout_s` seconds for a slot, the rest get 503 with `Retry-After` (the defaults follow the
backend: `ServeConfig.in_flight_limit`); a request still generating after `request_timeout_s` is stopped
(504, or an error event when streaming); a client that disconnects stops its generation; on SIGTERM
in-flight requests get `drain_s` seconds, then are stopped.

In vLLM's entrypoints shape: `protocol` (request models, the markers schema, error and response bodies),
`limits` (body size, admission, context and time limits), `handlers` (chat and completions on one path),
`streaming` (SSE) and `server` (`ServeConfig`, `create_app`, `serve`).
"""

from treasure.serve.limits import ENGINE_IN_FLIGHT, TRANSFORMERS_IN_FLIGHT, Admission, BodyLimit
from treasure.serve.protocol import (
    ChatRequest,
    CompletionRequest,
    check_markers,
    markers_schema,
    request_model,
)
from treasure.serve.server import ServeConfig, create_app, serve

__all__ = [
    "ENGINE_IN_FLIGHT",
    "TRANSFORMERS_IN_FLIGHT",
    "Admission",
    "BodyLimit",
    "ChatRequest",
    "CompletionRequest",
    "ServeConfig",
    "check_markers",
    "create_app",
    "markers_schema",
    "request_model",
    "serve",
]
