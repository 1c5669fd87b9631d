"""OpenAI-compatible routes of ``gen-emotion serve`` for a generation run: ``GET /v1/models``, ``POST
/v1/chat/completions`` and ``POST /v1/completions`` (no streaming yet), so that clients built for the OpenAI API
(the ``openai`` SDK, LangChain, evaluation harnesses) can call it.

The text to label is a completion's ``prompt`` (a string, or a list: one choice each) or a chat's last user
message; the run wraps it in its own chat template and system prompt and answers in its grammar (the emotion
list), decoding as it was evaluated (greedy): sampling parameters are accepted and ignored. Requests share the
model calls of ``/predict`` (the same queue). Other folders (classifiers, TF-IDF, cv, ensembles) are listed by
``/v1/models`` and refuse the completion routes, naming ``/predict``."""

import secrets
import time
from typing import Any

from gen_emotion.serving.schemas import lone_surrogate

PREFIX = "/v1/"


def openai_error(status: int, message: str, kind: str = "invalid_request_error") -> Any:
    """An error in the OpenAI API's shape: ``{"error": {"message", "type", "param", "code"}}``."""
    from starlette.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": None}}, status)


def model_id(state: Any) -> str:
    """The served folder's model id: its folder name."""
    return state.folder.name


def request_models() -> tuple[type, type]:
    """``ChatRequest`` and ``CompletionRequest``: the fields this server reads; others (temperature, top_p,
    max_tokens...) are accepted and ignored."""
    from pydantic import BaseModel, ConfigDict, Field

    class Message(BaseModel):
        model_config = ConfigDict(extra="allow")
        role: str
        content: str | list[dict[str, Any]] | None = None

    class ChatRequest(BaseModel):
        model_config = ConfigDict(extra="allow")
        model: str
        messages: list[Message] = Field(min_length=1)
        stream: bool = False
        n: int = 1

    class CompletionRequest(BaseModel):
        model_config = ConfigDict(extra="allow")
        model: str
        prompt: str | list[str]
        stream: bool = False
        n: int = 1

    return ChatRequest, CompletionRequest


def chat_text(messages: list[Any]) -> str:
    """The last user message's text (its text parts joined)."""
    users = [m for m in messages if m.role == "user"]
    if not users:
        raise ValueError("messages: no user message; the last user message is the text to label")
    content = users[-1].content
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content if part.get("type") == "text")
    if not content:
        raise ValueError("messages: the last user message has no text")
    return content


def add_openai_routes(app: Any, state: Any) -> None:
    """The /v1 routes on ``app`` (``state``: the server's ``ServerState``; the key, hosts and body limits apply as
    to every route)."""
    from fastapi import HTTPException

    options = state.options
    ChatRequest, CompletionRequest = request_models()  # noqa: N806 (classes)

    @app.get("/v1/models")
    async def models() -> Any:
        """The served folder, as the one model (its id: the folder's name)."""
        entry = {"id": model_id(state), "object": "model", "created": int(state.created), "owned_by": "gen-emotion"}
        return {"object": "list", "data": [entry]}

    async def answer(model: str, texts: list[str], stream: bool, n: int) -> Any:
        predictor = state.predictor
        if model != model_id(state):
            raise HTTPException(404, f"model {model!r}: not served here; GET /v1/models lists {model_id(state)!r}")
        if stream:
            raise HTTPException(400, "stream: true is not supported yet; send stream: false")
        if n != 1:
            raise HTTPException(400, f"n: {n}; this server gives one answer per text (greedy decoding)")
        if predictor is not None and not (predictor.kind == "run" and predictor.generates):
            raise HTTPException(
                400,
                f"{model_id(state)} is a {predictor.kind} folder that labels texts without generating any: "
                'POST /predict {"texts": [...]} instead',
            )
        for i, text in enumerate(texts):
            if (at := lone_surrogate(text)) is not None:
                raise HTTPException(400, f"text {i}: not valid Unicode: a lone surrogate at character {at}")
            if len(text) > options.max_text_chars:
                raise HTTPException(400, f"text {i}: {len(text)} characters; at most {options.max_text_chars}")
        if len(texts) > options.max_texts:
            raise HTTPException(400, f"{len(texts)} prompts; at most {options.max_texts} (--max-texts)")
        return await state.predict_texts(texts)

    def reply(kind: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        prefix = "chatcmpl" if kind == "chat.completion" else "cmpl"
        return {
            "id": f"{prefix}-{secrets.token_hex(12)}",
            "object": kind,
            "created": int(time.time()),
            "model": model_id(state),
            "choices": choices,
        }

    @app.post("/v1/chat/completions")
    async def chat(request: ChatRequest) -> Any:
        """The run's answer (its grammar: the emotion list) for the last user message's text."""
        try:
            text = chat_text(request.messages)
        except ValueError as err:
            raise HTTPException(400, str(err)) from None
        found = await answer(request.model, [text], request.stream, request.n)
        message = {"role": "assistant", "content": found.outputs[0]}
        return reply("chat.completion", [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}])

    @app.post("/v1/completions")
    async def completions(request: CompletionRequest) -> Any:
        """The run's answer for each prompt (a string, or a list: one choice each, in order)."""
        texts = [request.prompt] if isinstance(request.prompt, str) else list(request.prompt)
        if not texts:
            raise HTTPException(400, "prompt: an empty list")
        found = await answer(request.model, texts, request.stream, request.n)
        choices = [
            {"index": i, "text": output, "finish_reason": "stop", "logprobs": None}
            for i, output in enumerate(found.outputs)
        ]
        return reply("text_completion", choices)
