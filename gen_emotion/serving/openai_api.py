"""OpenAI-compatible routes of ``gen-emotion serve`` for generation runs: ``GET /v1/models``, ``POST
/v1/chat/completions`` and ``POST /v1/completions``, streamed as server-sent events with ``stream: true``, so that
clients built for the OpenAI API (the ``openai`` SDK, LangChain, evaluation harnesses) can call it.

The text to label is a completion's ``prompt`` (a string, or a list: one choice each) or a chat's last user
message; the run wraps it in its own chat template and system prompt and answers in its grammar (the emotion
list), decoding as it was evaluated (greedy): sampling parameters are accepted and ignored. ``model`` names the run
(``/v1/models`` lists one entry per served run). Under vLLM's async engine (``engine``) each text is its own engine
request, streamed token by token, with ``logprobs`` (each written token and the likeliest tokens at that step
under the grammar: the tokens it forbids are left out); under the gathered batches the requests share
``/predict``'s queue and a stream is the whole answer in one event. Other folders (classifiers, TF-IDF, cv,
ensembles) are listed by ``/v1/models`` and refuse the completion routes, naming ``/predict``."""

import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from gen_emotion.serving.schemas import lone_surrogate

PREFIX = "/v1/"
MAX_TOP_LOGPROBS = 20
"""The most alternatives per token a request may ask for (``top_logprobs``, a completion's ``logprobs``)."""


def openai_error(status: int, message: str, kind: str = "invalid_request_error") -> Any:
    """An error in the OpenAI API's shape: ``{"error": {"message", "type", "param", "code"}}``."""
    from starlette.responses import JSONResponse

    return JSONResponse(error_body(message, kind), status)


def error_body(message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def model_ids(state: Any) -> list[str]:
    """The served runs' model ids: each folder's name (the async engine's run names)."""
    if state.engine and state.predictor is not None:
        return [run.name for run in state.predictor.runs]
    return [folder.name for folder in state.folders]


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
        logprobs: bool = False
        top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)

    class CompletionRequest(BaseModel):
        model_config = ConfigDict(extra="allow")
        model: str
        prompt: str | list[str]
        stream: bool = False
        n: int = 1
        logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)

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


def _top(step: Any, k: int) -> list[tuple[str, float]]:
    return sorted(step.top, key=lambda pair: -pair[1])[:k]


def chat_logprobs(answer: Any, k: int) -> dict[str, Any]:
    """A chat choice's ``logprobs``: each written token, its log-probability and its ``k`` likeliest rivals."""

    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}

    content = [
        {**entry(step.chosen, chosen), "top_logprobs": [entry(t, lp) for t, lp in _top(step, k)]}
        for step, chosen in zip(answer.steps, answer.chosen)
    ]
    return {"content": content, "refusal": None}


def completion_logprobs(answer: Any, k: int) -> dict[str, Any]:
    """A completion choice's ``logprobs`` in the legacy shape: tokens, their log-probabilities, top ``k`` each."""
    offsets, at = [], 0
    for step in answer.steps:
        offsets.append(at)
        at += len(step.chosen)
    return {
        "tokens": [step.chosen for step in answer.steps],
        "token_logprobs": list(answer.chosen),
        "top_logprobs": [dict(_top(step, k)) for step in answer.steps],
        "text_offset": offsets,
    }


def sse(data: Any) -> str:
    """One server-sent event: ``data: JSON`` (or ``[DONE]``) and a blank line."""
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


def add_openai_routes(app: Any, state: Any) -> None:
    """The /v1 routes on ``app`` (``state``: the server's ``ServerState``; the key, hosts and body limits apply as
    to every route)."""
    from fastapi import HTTPException
    from fastapi.responses import StreamingResponse

    options = state.options
    ChatRequest, CompletionRequest = request_models()  # noqa: N806 (classes)

    @app.get("/v1/models")
    async def models() -> Any:
        """The served runs, one model each (its id: the folder's name)."""
        entry = {"object": "model", "created": int(state.created), "owned_by": "gen-emotion"}
        entries = [{"id": name, **entry} for name in model_ids(state)]
        return {"object": "list", "data": entries}

    def check(model: str, texts: list[str], stream: bool, n: int, top_k: int | None) -> str:
        """The run ``model`` names, once the request is one it can answer; an HTTP error otherwise."""
        predictor = state.predictor
        try:
            run = state.served(model)
        except LookupError:
            served = ", ".join(map(repr, model_ids(state)))
            raise HTTPException(404, f"model {model!r}: not served here; GET /v1/models lists {served}") from None
        if n != 1:
            raise HTTPException(400, f"n: {n}; this server gives one answer per text (greedy decoding)")
        if predictor is not None and not predictor.generates:
            raise HTTPException(
                400,
                f"{run} is a {predictor.kind} folder that labels texts without generating any: "
                'POST /predict {"texts": [...]} instead',
            )
        if top_k is not None and not state.engine:
            raise HTTPException(400, "logprobs: only under vLLM's async engine (serve with --backend vllm)")
        if top_k is not None and stream:
            raise HTTPException(400, "logprobs with stream: true: not supported; send stream: false for logprobs")
        for i, text in enumerate(texts):
            if (at := lone_surrogate(text)) is not None:
                raise HTTPException(400, f"text {i}: not valid Unicode: a lone surrogate at character {at}")
            if len(text) > options.max_text_chars:
                raise HTTPException(400, f"text {i}: {len(text)} characters; at most {options.max_text_chars}")
        if len(texts) > options.max_texts:
            raise HTTPException(400, f"{len(texts)} prompts; at most {options.max_texts} (--max-texts)")
        if predictor is None:
            not_ready()
        return run

    def not_ready() -> None:
        reason = state.dead or "the model is still loading"
        raise HTTPException(503, f"{reason}; GET /health says when it is ready", {"Retry-After": "2"})

    async def answers(run: str, texts: list[str], top_k: int | None) -> list[Any]:
        """Each text's answer: the engine's ``Answer`` (with its steps where ``top_k`` asks), or the gathered
        output."""
        import asyncio

        if not state.engine:
            return list((await state.predict_texts(texts, run)).outputs)
        engine = state.predictor
        served = engine.run(run)
        try:
            found = await asyncio.gather(*(engine.answer(served, text, top_k or 0) for text in texts))
        except Exception as err:
            raise state.failed(err, len(texts)) from None
        if state.metrics is not None:
            state.metrics.served(run, len(texts))
        return list(found)

    async def pieces(run: str, texts: list[str]) -> AsyncIterator[tuple[int, str]]:
        """``(choice, new text)`` as each answer is written (the async engine), or each whole answer."""
        if not state.engine:
            for i, output in enumerate(await answers(run, texts, None)):
                yield i, output
            return
        engine = state.predictor
        served = engine.run(run)
        for i, text in enumerate(texts):
            async for piece, _ in engine.stream(served, text):
                if piece:
                    yield i, piece
        if state.metrics is not None:
            state.metrics.served(run, len(texts))

    def head(kind: str, run: str) -> dict[str, Any]:
        prefix = "chatcmpl" if kind.startswith("chat") else "cmpl"
        return {"id": f"{prefix}-{secrets.token_hex(12)}", "object": kind, "created": int(time.time()), "model": run}

    def streamed(kind: str, run: str, texts: list[str]) -> Any:
        """The answer as server-sent events, ending with ``[DONE]``; an error after the first event is one
        ``{"error": ...}`` event."""
        top = head(kind, run)
        chat = kind.startswith("chat")

        def chunk(i: int, text: str | None, finish: str | None = None) -> str:
            if chat:
                delta = {} if text is None else {"content": text}
                choice = {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}
            else:
                choice = {"index": i, "text": text or "", "logprobs": None, "finish_reason": finish}
            return sse({**top, "choices": [choice]})

        async def events() -> AsyncIterator[str]:
            if chat:
                yield sse({**top, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
            try:
                async for i, piece in pieces(run, texts):
                    yield chunk(i, piece)
            except HTTPException as err:
                yield sse(error_body(str(err.detail)))
                return
            except Exception as err:
                yield sse(error_body(f"prediction failed: {type(err).__name__}", "server_error"))
                return
            for i in range(len(texts)):
                yield chunk(i, None, "stop")
            yield sse("[DONE]")

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    def text_of(found: Any) -> str:
        return found if isinstance(found, str) else found.text

    @app.post("/v1/chat/completions")
    async def chat(request: ChatRequest) -> Any:
        """The run's answer (its grammar: the emotion list) for the last user message's text."""
        try:
            text = chat_text(request.messages)
        except ValueError as err:
            raise HTTPException(400, str(err)) from None
        top_k = (request.top_logprobs or 0) if request.logprobs else None
        run = check(request.model, [text], request.stream, request.n, top_k)
        if request.stream:
            return streamed("chat.completion.chunk", run, [text])
        (found,) = await answers(run, [text], top_k)
        message = {"role": "assistant", "content": text_of(found)}
        logprobs = chat_logprobs(found, top_k) if top_k is not None else None
        choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": logprobs}
        return {**head("chat.completion", run), "choices": [choice]}

    @app.post("/v1/completions")
    async def completions(request: CompletionRequest) -> Any:
        """The run's answer for each prompt (a string, or a list: one choice each, in order)."""
        texts = [request.prompt] if isinstance(request.prompt, str) else list(request.prompt)
        if not texts:
            raise HTTPException(400, "prompt: an empty list")
        run = check(request.model, texts, request.stream, request.n, request.logprobs)
        if request.stream:
            return streamed("text_completion", run, texts)
        found = await answers(run, texts, request.logprobs)
        choices = [
            {
                "index": i,
                "text": text_of(one),
                "finish_reason": "stop",
                "logprobs": None if request.logprobs is None else completion_logprobs(one, request.logprobs),
            }
            for i, one in enumerate(found)
        ]
        return {**head("text_completion", run), "choices": choices}
