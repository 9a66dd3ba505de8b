"""The API's wire format: request models (the `markers` schema generated from the taxonomy), the
OpenAI-style error body, and the pieces of a response."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from treasure.backends import MAX_GUIDANCE
from treasure.errors import MarkerError
from treasure.generate import Generation, Mode
from treasure.taxonomy import Taxonomy


def _valid_text(text: str) -> str:
    """Refuse text that cannot be encoded as UTF-8 (a lone surrogate such as '\\ud800')."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("invalid_text", "text is not valid Unicode (lone surrogate)") from None
    return text


def _json_int(value: Any) -> Any:
    """JSON integers, including JSON Schema's integral numbers such as 8.0; never booleans or text."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise PydanticCustomError("int_from_float", "Input should be a valid integer")
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(_json_int)]
# (the constraint before the validator, so the schema says "minimum")
PositiveJsonInt = Annotated[int, Field(ge=1), BeforeValidator(_json_int)]
# Seeds up to 2**53 - 1: larger JSON integers compare inexactly in JSON Schema validators (as doubles)
SeedInt = Annotated[int, Field(ge=0, le=2**53 - 1), BeforeValidator(_json_int)]
MarkerValues = dict[str, StrictStr | StrictInt | StrictFloat]


class TextPart(BaseModel):
    """One part of an OpenAI content list; only text parts are accepted."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    @field_validator("content")
    @classmethod
    def _joined(cls, content: str | list[TextPart]) -> str:
        text = content if isinstance(content, str) else "".join(part.text for part in content)
        return _valid_text(text)


class ChatRequest(BaseModel):
    """The OpenAI chat request fields treasure understands, plus its extensions."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2, strict=True)
    top_p: float | None = Field(None, gt=0, le=1, strict=True)
    max_tokens: PositiveJsonInt | None = None
    max_completion_tokens: PositiveJsonInt | None = None
    seed: SeedInt | None = None
    n: JsonInt = Field(1, ge=1, le=1)
    stream: StrictBool = False
    markers: MarkerValues | None = None
    treasure_mode: Mode | None = None
    treasure_strict: StrictBool = False
    guidance: float | None = Field(
        None,
        ge=0,
        le=MAX_GUIDANCE,
        strict=True,
        allow_inf_nan=False,
        description="marker guidance scale G (1 = off; default: the server's); transformers backend only",
    )
    length_budget: StrictBool | None = Field(
        None, description="hold the answer to the given length_tokens words (default: the server's)"
    )

    @model_validator(mode="after")
    def _valid_unicode(self) -> ChatRequest:
        for text in [self.model or "", *(self.markers or {}), *(self.markers or {}).values()]:
            if isinstance(text, str):
                _valid_text(text)
        return self

    @field_validator("messages")
    @classmethod
    def _last_is_user(cls, messages: list[Message]) -> list[Message]:
        if messages[-1].role != "user":  # a rule no JSON schema can state: a 400, like bad text
            raise PydanticCustomError("invalid_conversation", "the last message must have role 'user'")
        return messages


class CompletionRequest(BaseModel):
    """OpenAI `/v1/completions`: raw prompt text continued as is (no chat template, no markers)."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    prompt: str = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2, strict=True)
    top_p: float | None = Field(None, gt=0, le=1, strict=True)
    max_tokens: PositiveJsonInt | None = None
    seed: SeedInt | None = None
    stream: StrictBool = False
    stop: str | list[str] | None = Field(
        None, description="cut the text before the first of these (not with stream)"
    )

    @model_validator(mode="after")
    def _valid_unicode(self) -> CompletionRequest:
        stops = [self.stop] if isinstance(self.stop, str) else self.stop or []
        for text in [self.model or "", self.prompt, *stops]:
            _valid_text(text)
        return self


def markers_schema(taxonomy: Taxonomy) -> dict[str, Any]:
    """JSON schema of the `markers` field: every marker a user may set, with exactly the values accepted."""
    properties: dict[str, Any] = {}
    for name, marker in taxonomy.markers.items():
        if not marker.user_settable:
            continue
        prop: dict[str, Any]
        if marker.values:
            prop = {"type": "string", "enum": list(marker.values)}
            if all(v.isdigit() for v in marker.values):  # ordinal "1".."4" may also be sent as numbers
                prop = {"anyOf": [prop, {"type": "integer", "enum": [int(v) for v in marker.values]}]}
        else:
            prop = {"type": "number" if marker.kind == "float" else "integer"}
            bounds = (("minimum", marker.minimum), ("maximum", marker.maximum))
            prop.update({k: v for k, v in bounds if v is not None})
        properties[name] = {**prop, "description": marker.description or name}
    return {"type": "object", "properties": properties, "additionalProperties": False}


def check_markers(markers: Mapping[str, Any], taxonomy: Taxonomy) -> None:
    """Markers of a request must match `markers_schema` exactly (the CLI is lenient: case, numbers as
    text); unknown or not user-settable names are left to `Taxonomy.user_markers`, which names them."""
    for name, value in markers.items():
        if name not in taxonomy or not taxonomy[name].user_settable:
            continue
        marker = taxonomy[name]
        if isinstance(value, bool):
            ok = False
        elif marker.values:
            ok = (isinstance(value, str) and value in marker.values) or (
                isinstance(value, int) and str(value) in marker.values
            )
        elif marker.kind == "integer":
            ok = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        else:
            ok = isinstance(value, int | float)
        if not ok:
            valid = ", ".join(marker.values) if marker.values else f"a JSON {marker.kind}"
            raise MarkerError(f"invalid value {value!r} for marker '{name}'; valid: {valid}")
    taxonomy.user_markers(markers)  # unknown names, settable, ranges


def request_model(taxonomy: Taxonomy) -> type[ChatRequest]:
    """`ChatRequest` whose schema lists the taxonomy's settable markers (values: `check_markers`)."""
    described = {"anyOf": [markers_schema(taxonomy), {"type": "null"}], "default": None, "title": "Markers"}

    def describe(schema: dict[str, Any]) -> None:
        schema.clear()
        schema.update(described)

    markers_field = (MarkerValues | None, Field(None, json_schema_extra=describe))
    return create_model("ChatRequest", __base__=ChatRequest, markers=markers_field)


def error_response(
    status: int, message: str, kind: str = "invalid_request_error", headers: dict[str, str] | None = None
) -> JSONResponse:
    """An OpenAI-style error body: `{"error": {"message", "type", "code"}}`."""
    body = {"error": {"message": message, "type": kind, "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {}}}
    for code, text in (
        (400, "malformed request, text that is not Unicode, or prompt + max_tokens over the context"),
        (401, "missing or wrong API key"),
        (413, "request body too large"),
        (422, "invalid field or marker"),
        (503, "too many requests in flight (see Retry-After)"),
        (502, "the upstream engine failed or answered garbage (--upstream)"),
        (504, "request time limit exceeded, or the upstream engine too slow"),
    )
}
RESPONSES = {
    200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE if stream"},
    **ERROR_RESPONSES,
}


def envelope(
    completion_id: str, kind: str, model: str, choice: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """A completion (or one streamed chunk of it) around its one choice; `extra` follows the choices."""
    return {
        "id": completion_id,
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, **choice}],
        **extra,
    }


def finish_reason(result: Generation) -> str:
    return "stop" if result.finished else "length"


def treasure_fields(result: Generation) -> dict[str, Any]:
    """The `treasure` object of a chat answer: its mode and the markers given and written."""
    return {
        "mode": result.mode,
        "markers": result.markers,
        "markers_error": result.markers_error,
        "given_markers": result.given_markers,
    }


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    total = prompt_tokens + completion_tokens
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": total}
