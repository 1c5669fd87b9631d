"""``gen-emotion serve``: a trained folder (a run, cv or ensemble folder) behind HTTP, on FastAPI and uvicorn.

    gen-emotion serve runs/minilm                # http://127.0.0.1:8000, interactive docs at /docs
    curl -s localhost:8000/predict -H 'content-type: application/json' -d '{"texts": ["What a day!"]}'
    gen-emotion serve runs/llama-a runs/llama-b --backend vllm    # two runs on one base: one engine, two adapters

The model loads in the background (``GET /health``: 503, then 200). The texts of the requests that arrive while
a model call runs go into the next call together (up to ``max_batch``), made in one thread (``Predictor`` is not
thread-safe). A generation run on the vllm backend is served by vLLM's async engine instead (``engine``): each text
its own engine request, batched continuously; several such runs on one base share it, each request naming its run.
Errors are JSON ``{"error": "..."}``; a failing model call is a 500, logged. SIGTERM: requests in flight get
``shutdown_timeout`` seconds to finish.

No ``from __future__ import annotations``: FastAPI reads the handlers' annotations as objects, and they are made
inside ``build_app`` so that only ``serve`` imports fastapi and pydantic, not every command.
"""

import logging
import signal
import socket
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from gen_emotion.config.fields import arg
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.serving.batching import to_predictions
from gen_emotion.serving.openai_api import PREFIX, add_openai_routes, openai_error
from gen_emotion.serving.schemas import error, schemas, validation_message
from gen_emotion.serving.security import (
    AUTHORIZED,
    BodyLimit,
    KeyCheck,
    ShutdownGuard,
    allowed_hosts,
    http_protocol,
    is_loopback,
)
from gen_emotion.serving.supervisor import ServerState

log = logging.getLogger(__name__)

API_KEY_ENV = "GEN_EMOTION_API_KEY"
"""The environment variable that holds the bearer token, when ``--api-key`` is not given."""


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
    engine: str = arg(
        "async",
        "a generation run on the vllm backend: async, vLLM's async engine (each text its own engine request, "
        "streamed; several runs on one base share it), or gathered, the texts of waiting requests in one call",
        choices=("async", "gathered"),
    )
    max_texts: int = arg(256, "most texts in one request (more: 422)", low=1)
    max_text_chars: int = arg(5000, "most characters in one text (more: 422)", low=1)
    max_body_bytes: int = arg(1_048_576, "largest request body in bytes (more: 413)", low=1)
    max_batch: int = arg(
        256, "most texts in one model call: requests that wait while a call runs are gathered up to this", low=1
    )
    request_unit: int = arg(
        32,
        "most texts of one request in one model call: a larger request is cut into pieces of this many, so that "
        "small requests arriving meanwhile join the next call instead of waiting behind all of it",
        low=1,
    )
    shutdown_timeout: float = arg(
        5.0, "on SIGTERM, seconds that requests in flight get to finish (then: a JSON 503)", low=0, high=7
    )
    restart_window: float = arg(
        60.0, "a dead model worker is restarted at most once in this many seconds (/health is 503 meanwhile)", low=0
    )
    allowed_hosts: str | None = arg(
        None,
        "comma-separated Host headers served, others are a 400 (DNS rebinding); default: the --host address, plus "
        "localhost, 127.0.0.1 and ::1 on loopback; any host on 0.0.0.0 or ::",
    )
    header_timeout: float = arg(
        10.0, "seconds a connection gets to send a whole request head, from its opening or its last answer", above=0
    )
    keep_alive_timeout: int = arg(5, "seconds an idle connection stays open after an answer", low=1)
    body_timeout: float = arg(30.0, "seconds a request's body gets to arrive in full (then: 408)", above=0)
    max_header_bytes: int = arg(16384, "largest request head (request line and headers) in bytes", low=1024)
    max_connections: int = arg(512, "most connections and requests at once; beyond it uvicorn answers 503", low=1)
    api_key: str | None = field(
        default=None,
        repr=False,  # a secret: never printed with the options
        metadata={
            "help": f"bearer token that every route then requires but a bare GET /health (default: ${API_KEY_ENV}, "
            "which ps cannot show)"
        },
    )


def check_options(options: ServeOptions) -> None:
    """Each option within its range (``arg``'s ``low``/``high``), as one line naming the flag."""
    for item in fields(options):
        value, low, high = getattr(options, item.name), item.metadata.get("low"), item.metadata.get("high")
        above, flag = item.metadata.get("above"), f"--{item.name.replace('_', '-')}"
        if low is not None and value < low:
            raise GenEmotionError(f"{flag} must be at least {low}, got {value}")
        if high is not None and value > high:
            raise GenEmotionError(f"{flag} must be at most {high}, got {value}")
        if above is not None and value <= above:
            raise GenEmotionError(f"{flag} must be above {above}, got {value}")
    try:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        TrustedHostMiddleware(None, allowed_hosts(options.allowed_hosts, options.host))
    except AssertionError as err:
        raise GenEmotionError(f"--allowed-hosts {options.allowed_hosts}: {err}") from None


def build_app(state: ServerState) -> Any:
    """The FastAPI app: its routes, its JSON errors and, outermost first, the shutdown guard, the metrics, the
    ``Host`` check, the key check and the body limits."""
    from fastapi import FastAPI, HTTPException, Request, Security
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from fastapi.security import HTTPBearer
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    from gen_emotion import __version__

    options = state.options
    PredictRequest, PredictResponse, Health, ErrorBody = schemas()  # noqa: N806 (classes)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.start()
        yield
        await state.close()

    summary = f"Emotion labels for texts, from {', '.join(folder.name for folder in state.folders)}"
    app = FastAPI(title="gen-emotion", summary=summary, version=__version__, lifespan=lifespan)
    app.add_middleware(BodyLimit, limit=options.max_body_bytes, timeout=options.body_timeout)
    app.add_middleware(KeyCheck, key=options.api_key)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(options.allowed_hosts, options.host))
    if state.metrics is not None:
        from gen_emotion.serving.metrics import Counting

        app.add_middleware(Counting, metrics=state.metrics)
    app.add_middleware(ShutdownGuard)
    errors = {status: {"model": ErrorBody} for status in (401, 408, 413, 422, 500, 503)}

    def answer_error(request: Any, status: int, message: str, headers: dict[str, str] | None = None) -> Any:
        """``{"error": "..."}``, or the OpenAI API's error object on its routes."""
        if request.url.path.startswith(PREFIX):
            return openai_error(status, message)
        return error(status, message, headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Any, exc: StarletteHTTPException) -> Any:
        return answer_error(request, exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Any, exc: RequestValidationError) -> Any:
        return answer_error(request, 422, validation_message(list(exc.errors())))

    @app.exception_handler(Exception)
    async def failed(request: Any, exc: Exception) -> Any:  # uvicorn logs the traceback
        return answer_error(request, 500, f"internal error ({type(exc).__name__}); see the server's log")

    # The key is checked by KeyCheck before the body is read; the scheme here only documents it at /docs.
    bearer = HTTPBearer(auto_error=False, description=f"the server's --api-key (or ${API_KEY_ENV})")
    keyed = [Security(bearer)] if options.api_key else []

    @app.get("/health", response_model=Health, responses={503: {"model": Health}})
    async def health(request: Request) -> Any:
        """200 once the model is loaded; 503 while it loads, restarts after its worker died, or if loading failed.
        With a key set, a request without it gets the status only."""
        predictor, ready = state.predictor, state.predictor is not None
        body: dict[str, Any] = {"status": state.status}
        if not request.scope.get(AUTHORIZED, True):
            return JSONResponse(body, status_code=200 if ready else 503)
        body["folder"] = str(state.folder)
        if len(state.folders) > 1:
            body["runs"] = [folder.name for folder in state.folders]
        if predictor is not None:
            body.update(kind=predictor.kind, labels=list(predictor.names))
            body.update(has_probabilities=predictor.has_probs, generates=predictor.generates)
            body.update(model_calls=state.batcher.calls if state.batcher else 0)
        body.update(restarts=state.restarts)
        if state.error is not None or state.dead is not None:
            body.update(error=state.error or state.dead)
        return JSONResponse(body, status_code=200 if ready else 503)

    if state.metrics is not None:
        metrics = state.metrics

        @app.get("/metrics", dependencies=keyed, response_class=Response, responses={401: {"model": ErrorBody}})
        async def prometheus() -> Any:
            """The server's metrics in Prometheus' text format."""
            text, content_type = metrics.text()
            return Response(text, media_type=content_type)

    @app.post("/predict", response_model=PredictResponse, responses=errors, dependencies=keyed)
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
        try:
            run = state.served(request.run)
        except LookupError as err:
            raise HTTPException(422, f"run: {err}") from None
        found = await state.predict_texts(texts, run)
        return {"predictions": to_predictions(found)}

    add_openai_routes(app, state)
    return app


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


def quiet_server(config: Any) -> Any:
    """uvicorn's server, ending with exit status 0 after a clean SIGTERM or Ctrl-C (uvicorn raises the signal
    again once it has shut down, which ends the process as if killed by it)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Any:
            handlers = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in handlers.items():
                    signal.signal(sig, handler)

    return Server(config)


def uses_engine(folders: list[Path], options: ServeOptions) -> bool:
    """Whether vLLM's async engine serves ``folders`` (generation runs on the vllm backend, ``--engine async``);
    several folders must be such runs."""
    from gen_emotion.serving.engine import engine_backend

    for folder in folders:
        if not folder.is_dir():
            raise GenEmotionError(f"{folder}: no such folder (give a run, cv or ensemble folder)")
    engine = options.engine == "async" and all(engine_backend(folder, options.backend) for folder in folders)
    if len(folders) > 1 and not engine:
        raise GenEmotionError(
            "several folders are served together only as generation runs on one base model, with --backend vllm "
            "and --engine async (one engine, each run's adapter through vLLM's LoRA): serve each other folder with a "
            "gen-emotion serve of its own"
        )
    if len(folders) > 1:
        from gen_emotion.serving.engine import served_runs

        served_runs(folders, options.backend)  # one line now, before listening, for runs on different bases
    return engine


def serve(folders: list[Path], options: ServeOptions) -> None:
    """Serve ``folders`` until SIGTERM or Ctrl-C; a folder that cannot be loaded is one line (GenEmotionError)."""
    import uvicorn

    from gen_emotion.serving.metrics import Metrics

    check_options(options)
    engine = uses_engine(folders, options)
    sock = listen(options.host, options.port)
    state = ServerState(folders, options, Metrics([f.name for f in folders]), engine=engine)
    config = uvicorn.Config(
        build_app(state),
        http=http_protocol(options.header_timeout),
        h11_max_incomplete_event_size=options.max_header_bytes,
        limit_concurrency=options.max_connections,
        timeout_keep_alive=options.keep_alive_timeout,
        timeout_graceful_shutdown=options.shutdown_timeout,
        server_header=False,
        log_level="info",
    )
    state.server = quiet_server(config)
    host, port = sock.getsockname()[:2]
    if not is_loopback(options.host) and not options.api_key:
        log.warning("serving on %s without --api-key: anyone who can reach port %d can use the model", host, port)
    shown = f"[{host}]" if ":" in host else host
    served = " ".join(map(str, folders))
    print(f"serving {served} on http://{shown}:{port} (API docs at /docs); loading the model", flush=True)
    state.server.run(sockets=[sock])
    if state.error is not None:
        raise GenEmotionError(state.error)
