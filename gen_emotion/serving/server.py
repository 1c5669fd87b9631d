"""``gen-emotion serve``: one trained folder (a run, cv or ensemble folder) behind HTTP, on FastAPI and uvicorn.

    gen-emotion serve runs/minilm                # http://127.0.0.1:8000, interactive docs at /docs
    curl -s localhost:8000/predict -H 'content-type: application/json' -d '{"texts": ["What a day!"]}'

The model loads in the background (``GET /health``: 503, then 200). The texts of the requests that arrive while
a model call runs go into the next call together (up to ``max_batch``), made in one thread (``Predictor`` is not
thread-safe). A generation folder too: each gathered batch is one call to its backend, which vLLM schedules
continuously (its async engine is not used request by request). Errors are JSON ``{"error": "..."}``; a failing
model call is a 500, logged. SIGTERM: requests in flight get ``shutdown_timeout`` seconds to finish.

No ``from __future__ import annotations``: FastAPI reads the handlers' annotations as objects, and they are made
inside ``build_app`` so that only ``serve`` imports fastapi and pydantic, not every command.
"""

import asyncio
import concurrent.futures
import hmac
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any

from gen_emotion.config.fields import arg
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.redaction import redact
from gen_emotion.serving.batching import Batcher, ModelThread, to_predictions

log = logging.getLogger(__name__)

API_KEY_ENV = "GEN_EMOTION_API_KEY"
"""The environment variable that holds the bearer token, when ``--api-key`` is not given."""
CLOSE_SECONDS = 2.0
"""How long the shutdown waits for the model to close (a generation model's process to end)."""


@dataclass
class ServeOptions:
    """Where ``gen-emotion serve`` listens and what it accepts."""

    host: str = arg(
        "127.0.0.1",
        "address to listen on. 127.0.0.1 (the default) serves this machine only; 0.0.0.0 serves every machine that "
        "can reach this one: anyone there can use the model, so set --api-key and put a TLS proxy in front",
    )
    port: int = arg(8000, "TCP port (0: any free port; the address is printed)", low=0, high=65535)
    backend: str | None = arg(
        None, "a generation folder's backend (default: its recipe's)", choices=("transformers", "vllm")
    )
    max_texts: int = arg(256, "most texts in one request (more: 422)", low=1)
    max_text_chars: int = arg(5000, "most characters in one text (more: 422)", low=1)
    max_body_bytes: int = arg(1_048_576, "largest request body in bytes (more: 413)", low=1)
    max_batch: int = arg(
        256, "most texts in one model call: requests that wait while a call runs are gathered up to this", low=1
    )
    shutdown_timeout: float = arg(
        5.0, "on SIGTERM, seconds that requests in flight get to finish before they are cancelled", low=0, high=7
    )
    api_key: str | None = field(
        default=None,
        repr=False,  # a secret: never printed with the options
        metadata={"help": f"bearer token POST /predict then requires (default: ${API_KEY_ENV}, which ps cannot show)"},
    )


def check_options(options: ServeOptions) -> None:
    """Each option within its range (``arg``'s ``low``/``high``), as one line naming the flag."""
    for item in fields(options):
        value, low, high = getattr(options, item.name), item.metadata.get("low"), item.metadata.get("high")
        flag = f"--{item.name.replace('_', '-')}"
        if low is not None and value < low:
            raise GenEmotionError(f"{flag} must be at least {low}, got {value}")
        if high is not None and value > high:
            raise GenEmotionError(f"{flag} must be at most {high}, got {value}")


# --- The request and response bodies (the OpenAPI schema at /docs) ---------------------------------------------


def schemas() -> tuple[type, type, type, type]:
    """``PredictRequest``, ``PredictResponse``, ``Health`` and ``ErrorBody``, made here so that pydantic is
    imported by ``serve`` only."""
    from pydantic import BaseModel, ConfigDict, Field

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"texts": ["What a day!"]}]})

        texts: list[str] = Field(min_length=1, description="the texts to label (at most --max-texts of them)")

    class Prediction(BaseModel):
        labels: list[str] = Field(description="the labels the folder decides, in the folder's label order")
        probabilities: dict[str, float] | None = Field(
            None, description="each label's probability, where the folder has them (else null)"
        )
        output: str | None = Field(None, description="the generated text, for a generation run (else null)")

    class PredictResponse(BaseModel):
        predictions: list[Prediction] = Field(description="one per text, in the request's order")

    class Health(BaseModel):
        status: str = Field(description="ok, loading or failed")
        folder: str
        kind: str | None = Field(None, description="run, cv or ensemble, once loaded")
        labels: list[str] | None = None
        has_probabilities: bool | None = None
        generates: bool | None = None
        model_calls: int | None = Field(None, description="model calls made so far (requests share them)")
        error: str | None = None

    class ErrorBody(BaseModel):
        error: str = Field(description="what was wrong, in one line")

    return PredictRequest, PredictResponse, Health, ErrorBody


# --- The server ---------------------------------------------------------------------------------------------------


class ServerState:
    """What the handlers share: the options, the loaded predictor (None while loading), the batcher."""

    def __init__(self, folder: Path, options: ServeOptions) -> None:
        self.folder, self.options = folder, options
        self.predictor: Any = None
        self.error: str | None = None
        self.thread: ModelThread | None = None
        self.batcher: Batcher | None = None
        self.server: Any = None  # the uvicorn server, told to exit when loading fails

    def load(self) -> Any:
        from gen_emotion.serving.predictor import PredictSettings, load_predictor

        started = time.perf_counter()
        log.info("loading %s", self.folder)
        predictor = load_predictor(self.folder, PredictSettings(backend=self.options.backend))
        log.info("loaded %s (%s folder) in %.1f s", self.folder, predictor.kind, time.perf_counter() - started)
        return predictor

    async def wait_for_model(self, loading: concurrent.futures.Future) -> None:
        try:
            predictor = await asyncio.wrap_future(loading)
        except Exception as err:
            self.error = redact(str(err)) if isinstance(err, GenEmotionError) else f"cannot load {self.folder}: {err!r}"
            log.error("%s", self.error, exc_info=not isinstance(err, GenEmotionError))
            if self.server is not None:
                self.server.should_exit = True
            return
        assert self.batcher is not None
        self.batcher.predict = predictor.predict
        self.predictor = predictor
        log.info("ready: POST /predict")

    async def close(self) -> None:
        assert self.thread is not None and self.batcher is not None
        self.batcher.fail_waiting("the server is shutting down")
        if self.predictor is not None:
            try:
                await asyncio.wait_for(self.thread.run(self.predictor.close), CLOSE_SECONDS)
            except Exception as err:  # the process exits anyway; a model that will not close is only logged
                log.warning("closing the model: %r", err)
        self.thread.stop()


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _where(loc: tuple[Any, ...]) -> str:
    """A validation error's location as a field path: ``("body", "texts", 3)`` -> ``texts[3]``."""
    path = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or "body"


def validation_message(errors: list[dict[str, Any]]) -> str:
    first = errors[0]
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "")
        return f"the body is not valid JSON ({reason} at character {first['loc'][-1]})"
    if tuple(first["loc"]) == ("body",):
        return 'the body must be a JSON object {"texts": [...]} sent as Content-Type: application/json'
    return "; ".join(f"{_where(tuple(e['loc']))}: {e['msg']}" for e in errors[:3]) + ("; ..." if errors[3:] else "")


class BodyLimit:
    """413 for a body over ``limit`` bytes: at once from its Content-Length, or while it streams in without one."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from fastapi import HTTPException

        too_large = f"the body is over {self.limit} bytes (--max-body-bytes)"
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            return await _error(413, too_large, {"Connection": "close"})(scope, receive, send)
        received = 0

        async def limited() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:  # raised inside the app's body read: its handler answers with JSON
                raise HTTPException(413, too_large)
            return message

        await self.app(scope, limited, send)


def build_app(state: ServerState) -> Any:
    from fastapi import Depends, FastAPI, HTTPException, Security
    from fastapi.exceptions import RequestValidationError
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from gen_emotion import __version__

    options = state.options
    PredictRequest, PredictResponse, Health, ErrorBody = schemas()  # noqa: N806 (classes)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.thread = ModelThread()
        state.batcher = Batcher(state.thread, options.max_batch)
        tasks = [
            asyncio.create_task(state.wait_for_model(state.thread.submit(state.load))),
            asyncio.create_task(state.batcher.run()),
        ]
        yield
        for task in tasks:
            task.cancel()
        await state.close()

    summary = f"Emotion labels for texts, from {state.folder.name}"
    app = FastAPI(title="gen-emotion", summary=summary, version=__version__, lifespan=lifespan)
    app.add_middleware(BodyLimit, limit=options.max_body_bytes)
    errors = {status: {"model": ErrorBody} for status in (401, 413, 422, 500, 503)}

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Any, exc: StarletteHTTPException) -> Any:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Any, exc: RequestValidationError) -> Any:
        return _error(422, validation_message(list(exc.errors())))

    @app.exception_handler(Exception)
    async def failed(request: Any, exc: Exception) -> Any:  # uvicorn logs the traceback
        return _error(500, f"internal error ({type(exc).__name__}); see the server's log")

    bearer = HTTPBearer(auto_error=False, description=f"the server's --api-key (or ${API_KEY_ENV})")
    key = options.api_key.encode() if options.api_key else None

    def check_key(credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> None:
        given = credentials.credentials.encode() if credentials is not None else b""
        if key is not None and not hmac.compare_digest(given, key):
            raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/health", response_model=Health, responses={503: {"model": Health}})
    async def health() -> Any:
        """200 once the model is loaded; 503 while it loads (or if loading failed)."""
        from fastapi.responses import JSONResponse

        body: dict[str, Any] = {"status": "loading", "folder": str(state.folder)}
        predictor = state.predictor
        if predictor is not None:
            body.update(status="ok", kind=predictor.kind, labels=list(predictor.names))
            body.update(has_probabilities=predictor.has_probs, generates=predictor.generates)
            body.update(model_calls=state.batcher.calls if state.batcher else 0)
        elif state.error is not None:
            body.update(status="failed", error=state.error)
        return JSONResponse(body, status_code=200 if predictor is not None else 503)

    @app.post(
        "/predict", response_model=PredictResponse, responses=errors, dependencies=[Depends(check_key)] if key else []
    )
    async def predict(request: PredictRequest) -> Any:
        """The folder's labels for each text (its own decision: thresholds where it tuned them), with the
        probabilities where it has them. Requests that arrive together share model calls."""
        texts = request.texts
        if len(texts) > options.max_texts:
            raise HTTPException(422, f"texts: {len(texts)} texts; at most {options.max_texts} (--max-texts)")
        for i, text in enumerate(texts):
            if len(text) > options.max_text_chars:
                raise HTTPException(
                    422, f"texts[{i}]: {len(text)} characters; at most {options.max_text_chars} (--max-text-chars)"
                )
        if state.predictor is None:
            loading = "the model is still loading; GET /health says when it is ready"
            raise HTTPException(503, loading, {"Retry-After": "2"})
        assert state.batcher is not None
        try:
            found = await state.batcher.submit(texts)
        except Exception as err:
            message = redact(str(err)) if isinstance(err, GenEmotionError) else f"{type(err).__name__}"
            log.error("prediction of %d text(s) failed: %s", len(texts), message, exc_info=err)
            raise HTTPException(500, f"prediction failed: {message}") from None
        return {"predictions": to_predictions(found)}

    return app


def is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or one line saying why not (an address in use, a bad host)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)  # early clients wait in the backlog until the server runs
    except OSError as err:
        raise GenEmotionError(f"--host {host} --port {port}: cannot listen there ({err.strerror or err})") from None
    return sock


def serve(folder: Path, options: ServeOptions) -> None:
    """Serve ``folder`` until SIGTERM or Ctrl-C; a folder that cannot be loaded is one line (GenEmotionError)."""
    import uvicorn

    check_options(options)
    if not folder.is_dir():
        raise GenEmotionError(f"{folder}: no such folder (give a run, cv or ensemble folder)")
    sock = listen(options.host, options.port)
    state = ServerState(folder, options)
    config = uvicorn.Config(
        build_app(state),
        timeout_graceful_shutdown=options.shutdown_timeout,
        server_header=False,
        log_level="info",
    )
    state.server = uvicorn.Server(config)
    host, port = sock.getsockname()[:2]
    if not is_loopback(options.host) and not options.api_key:
        log.warning("serving on %s without --api-key: anyone who can reach port %d can use the model", host, port)
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {folder} on http://{shown}:{port} (API docs at /docs); loading the model", flush=True)
    state.server.run(sockets=[sock])
    if state.error is not None:
        raise GenEmotionError(state.error)
