"""Request and response shapes in the API document (OpenAPI).

The chat and embeddings bodies are declared once as tables (`api/body_schema.py`:
`CHAT_COMPLETION_REQUEST`, `MESSAGES_REQUEST`, `MESSAGES_COUNT_REQUEST`,
`EMBEDDING_REQUEST`) that both check each request and are written here into the document.
The other shapes below are pydantic models for the document only, never instantiated per
request: their endpoints read bodies with `api/validation.py`. Routes reference either with
`openapi_extra=request_body(shape)`, and answers with `response_model=Model` (a route that
returns a `Response` skips response validation, so documenting costs nothing at run time);
`install_schemas(app)` puts the request shapes into the document's components and declares
how callers authenticate (`Authorization: Bearer` or `x-api-key`), on every operation but the
public ones, so the docs page's Authorize button sends the key.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from oneflow_ai.api.anthropic_request import MESSAGES_COUNT_REQUEST, MESSAGES_REQUEST
from oneflow_ai.api.body_schema import Obj
from oneflow_ai.api.openai_chat_request import CHAT_COMPLETION_REQUEST
from oneflow_ai.api.openai_embeddings import EMBEDDING_REQUEST
from oneflow_ai.api.openapi_doc import complete_document

__all__ = [
    "PUBLIC_OPERATIONS",
    "SECURITY_SCHEMES",
    "ChatCompletionResponse",
    "EstimateRequest",
    "EstimateResponse",
    "GatewayRequest",
    "GatewayResponse",
    "ImageGenerationRequest",
    "ImagesResponse",
    "MessagesResponse",
    "ModelList",
    "ResponsesRequestBody",
    "SpeechRequestBody",
    "install_schemas",
    "request_body",
]

_REF = "#/components/schemas/{model}"

#: How a caller presents its credential (an API key, the master key or a JWT access token):
#: either header is accepted on every operation that needs one (`api/deps.py`).
SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "Authorization: Bearer <key>: an API key, the master key or a JWT "
        "access token (POST /api/v1/auth/token)",
    },
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": "x-api-key (or X-API-Key): an API key or the master key",
    },
}
_SECURITY: list[dict[str, list[str]]] = [{name: []} for name in SECURITY_SCHEMES]  # either one

#: (method, path) of the operations that take no credential: probes, metrics (guarded by its
#: own METRICS_TOKEN when set) and signing in.
PUBLIC_OPERATIONS = frozenset(
    {
        ("get", "/health"),
        ("get", "/ready"),
        ("get", "/metrics"),
        ("post", "/api/v1/auth/token"),
        ("post", "/api/v1/auth/refresh"),
        ("post", "/api/v1/auth/logout"),
    }
)


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow")


# ---- OpenAI dialect --------------------------------------------------------------------


class ResponsesRequestBody(_Doc):
    """OpenAI's Responses API request (docs/responses.md)."""

    model: str = Field(
        description="A catalog model id or alias, `auto`, or a strategy",
        examples=["gpt-4o", "claude-3-haiku-20240307"],
    )
    input: str | list[dict[str, Any]] = Field(
        description="Text, or input items: messages, function_call, function_call_output"
    )
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = Field(
        default=None, description="{format: {type: json_schema, name, schema}}"
    )
    reasoning: dict[str, Any] | None = Field(default=None, description="{effort, summary}")
    previous_response_id: str | None = None
    store: bool = True
    stream: bool = False
    metadata: dict[str, str] | None = None


class ChatCompletionResponse(_Doc):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: dict[str, Any] = Field(
        description="prompt_tokens, completion_tokens, total_tokens and their details"
    )


class ImageGenerationRequest(_Doc):
    model: str = Field(
        default="auto",
        examples=["dall-e-3", "dall-e-2", "sd3.5-large", "stable-diffusion-xl-1024-v1-0"],
    )
    prompt: str
    n: int = Field(default=1, ge=1, le=10)
    size: str | None = Field(default=None, examples=["1024x1024"])
    quality: str | None = Field(default=None, examples=["standard", "hd"])
    style: str | None = None
    response_format: Literal["url", "b64_json"] = "url"
    user: str | None = None


class ImagesResponse(_Doc):
    created: int
    data: list[dict[str, Any]]


class SpeechRequestBody(_Doc):
    model: str = Field(default="eleven_multilingual_v2")
    input: str = Field(max_length=4096)
    voice: str = Field(description="alloy, echo, fable, onyx, nova, shimmer, ... or a voice id")
    response_format: Literal["mp3", "opus", "wav", "pcm"] = "mp3"
    speed: float | None = Field(default=None, ge=0.25, le=4.0)


class TranscriptionForm(_Doc):
    file: bytes = Field(
        json_schema_extra={"format": "binary"},
        description="The recording: flac, m4a, mp3, mp4, mpeg, mpga, ogg, wav or webm",
    )
    model: str = Field(examples=["whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"])
    response_format: Literal["json", "text", "srt", "verbose_json", "vtt"] = "json"
    language: str | None = Field(default=None, description="ISO-639-1, e.g. en")
    prompt: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)


class ModelList(_Doc):
    object: Literal["list"] = "list"
    data: list[dict[str, Any]]


# ---- Anthropic dialect -----------------------------------------------------------------


class TokenTrust(_Doc):
    model: str
    tokenizer: str = Field(description="o200k_base, cl100k_base, or claude_approx (an estimate)")
    exact: bool


class MessagesTokenCount(_Doc):
    input_tokens: int
    oneflow: TokenTrust


class InputTokens(_Doc):
    object: Literal["chat.completion.input_tokens"] = "chat.completion.input_tokens"
    model: str
    input_tokens: int
    oneflow: TokenTrust


class MessagesResponse(_Doc):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    content: list[dict[str, Any]]
    model: str
    stop_reason: str | None
    stop_sequence: str | None = None
    usage: dict[str, Any] = Field(
        description="input_tokens, output_tokens and the cache counts (some of them objects)"
    )


# ---- the seed's gateway API -------------------------------------------------------------


class GatewayRequest(_Doc):
    model_config = ConfigDict(extra="forbid")  # unknown fields are refused

    prompt: str = Field(min_length=1)
    strategy: Literal["cost_optimized", "latency_optimized", "quality_optimized", "balanced"] = (
        "balanced"
    )
    modality: Literal["text", "image", "audio"] = "text"
    max_tokens: int | None = Field(default=None, ge=1)
    model: str | None = Field(default=None, description="A catalog model instead of a strategy")
    voice: str | None = Field(default=None, description="audio: a voice name or id")


class GatewayResponse(_Doc):
    request_id: str
    model: str
    provider: str
    modality: Literal["text", "image", "audio"]
    strategy: str | None
    output: str = Field(description="The text; or an image or audio URL (possibly a data: URL)")
    usage: dict[str, Any]
    credits: str = Field(description="Credits charged (1 USD = 100 credits), a decimal string")
    cost_usd: str
    route: dict[str, Any] = Field(
        description="How the model was chosen: reason (as the X-OneFlow-Route header says it), "
        "chain (the candidates, primary first), fallbacks (how many fell through) and attempts "
        "(each model called, with the kind of error it failed with, or null)"
    )


class EstimateRequest(_Doc):
    model_config = ConfigDict(extra="forbid")  # unknown fields are refused

    model: str | None = Field(default=None, description="one model instead of every eligible one")
    strategy: Literal["cost_optimized", "latency_optimized", "quality_optimized", "balanced"] = (
        "balanced"
    )
    modality: Literal["text", "image", "audio", "embedding", "transcription"] = "text"
    input_tokens: int | None = Field(default=None, ge=0, description="or give a prompt")
    output_tokens: int | None = Field(default=None, ge=0, description="default 256")
    max_tokens: int | None = Field(default=None, ge=0, description="same as output_tokens")
    prompt: str | None = Field(default=None, description="counted per model's tokenizer")
    messages: list[dict[str, Any]] | None = Field(
        default=None,
        description="a chat conversation (ChatMessage objects, as in ChatCompletionRequest), "
        "counted with each model's chat format",
    )
    images: int = Field(default=1, ge=1, le=10)
    size: str | None = None
    quality: str | None = None
    characters: int | None = Field(
        default=None, ge=0, description="audio: characters to speak (or the prompt's length)"
    )
    seconds: int | None = Field(
        default=None, ge=1, description="transcription: seconds of audio (billed by the second)"
    )


class EstimateResponse(_Doc):
    strategy: str
    modality: Literal["text", "image", "audio", "embedding", "transcription"]
    routing: dict[str, Any] | None = Field(
        description="The router's decision among the available models that fit: primary_model, "
        "estimated_credits, fallback_chain, the reason, and every candidate's cost, latency and "
        "quality scores (null if none fits)"
    )
    estimates: list[dict[str, Any]] = Field(description="Every eligible model, cheapest first")


_REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    ResponsesRequestBody,
    ImageGenerationRequest,
    SpeechRequestBody,
    GatewayRequest,
    EstimateRequest,
)
#: The request bodies declared as tables: the same objects check each request.
_REQUEST_TABLES: tuple[Obj, ...] = (
    CHAT_COMPLETION_REQUEST,
    MESSAGES_REQUEST,
    MESSAGES_COUNT_REQUEST,
    EMBEDDING_REQUEST,
)


def request_body(shape: type[BaseModel] | Obj) -> dict[str, Any]:
    """`openapi_extra` documenting a JSON request body of shape `shape` (a documented model
    or a named table)."""
    name = shape.name if isinstance(shape, Obj) else shape.__name__
    assert name is not None, "a request table needs a name"
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=name)}}},
        }
    }


def install_schemas(app: FastAPI) -> None:
    """Add the request models (and the models they use) to the OpenAPI components, and the
    security schemes to every operation that needs a credential."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = original()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for model in _REQUEST_MODELS:
            schema = model.model_json_schema(ref_template=_REF)
            for name, definition in schema.pop("$defs", {}).items():
                schemas.setdefault(name, definition)
            schemas[model.__name__] = schema
        for table in _REQUEST_TABLES:
            table.schema(schemas)  # the table and the named objects it uses
        complete_document(document)
        _declare_security(document)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _declare_security(document: dict[str, Any]) -> None:
    document["components"]["securitySchemes"] = SECURITY_SCHEMES
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if (method, path) not in PUBLIC_OPERATIONS:
                operation["security"] = _SECURITY
