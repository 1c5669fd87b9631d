"""``gen-emotion studio``: a web app over a folder of run, cv and ensemble folders, on FastAPI and uvicorn (what
``serve`` runs on), its pages Jinja2 templates with autoescaping, its charts Vega-Lite drawn by the vega-embed
served from this package (no request leaves the machine).

    gen-emotion studio runs/              # http://127.0.0.1:8400

Safety: it listens on 127.0.0.1 unless ``--host`` says otherwise and warns when it listens elsewhere without a
key (``serving.server``'s ``listen`` and ``is_loopback``); with a key every route asks for it (a bearer token, or
the cookie the login form sets); every path a request names goes through ``paths.RunsRoot.resolve``; texts are
data (autoescaped, and a Content-Security-Policy that runs no inline script); a bad query parameter is a 4xx page.
Pages are in ``pages``; what they show is gathered in ``folders``, ``rows``, ``errors_view``, ``compare``,
``curves``; ``tryit`` loads models, ``jobs`` launches commands.

No ``from __future__ import annotations``: FastAPI reads the handlers' annotations as objects.
"""

import hashlib
import hmac
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gen_emotion.config.fields import arg
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.redaction import redact
from gen_emotion.serving.security import bearer_token
from gen_emotion.serving.server import API_KEY_ENV
from gen_emotion.studio.paths import PathRefused, RunsRoot
from gen_emotion.studio.web import COOKIE, same_origin

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""Scripts only from the studio's own files (vega compiles its expressions, hence unsafe-eval); no inline script
runs, so a text that holds markup cannot either."""
OPEN_PATHS = ("/login", "/static/studio.css")


@dataclass
class StudioOptions:
    """Where ``gen-emotion studio`` listens and what it allows."""

    host: str = arg(
        "127.0.0.1",
        "address to listen on. 127.0.0.1 (the default) serves this machine only; another address lets anyone who "
        "can reach it read your runs (and, with --allow-launch, start commands): set --api-key",
    )
    port: int = arg(8400, "TCP port (0: any free port; the address is printed)", low=0, high=65535)
    allow_launch: bool = arg(False, "allow starting and stopping run and cv commands from the browser")
    api_key: str | None = field(
        default=None,
        repr=False,
        metadata={"help": f"a key every page then asks for (default: ${API_KEY_ENV}, which ps cannot show)"},
    )


def check_options(options: StudioOptions) -> None:
    for item in fields(options):
        value, low, high = getattr(options, item.name), item.metadata.get("low"), item.metadata.get("high")
        if low is not None and value < low or high is not None and value > high:
            raise GenEmotionError(f"--{item.name.replace('_', '-')} must be from {low} to {high}, got {value}")


class Studio:
    """What the pages share: RUNS_DIR, the options, the loaded models, the jobs, the templates."""

    def __init__(self, folder: Path, options: StudioOptions) -> None:
        from jinja2 import Environment, FileSystemLoader, select_autoescape

        from gen_emotion.studio.jobs import Jobs
        from gen_emotion.studio.tryit import Models

        self.root, self.options = RunsRoot(folder), options
        self.models = Models()
        self.jobs = Jobs(self.root)
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True), auto_reload=False
        )
        self.env.filters["url"] = lambda path: quote(str(path), safe="/")
        self.env.filters["num"] = lambda value, digits=4: "" if value is None else f"{value:.{digits}f}"
        self.env.globals["launch"] = options.allow_launch
        self.env.globals["keyed"] = options.api_key is not None

    def page(self, name: str, code: int = 200, **values: Any) -> Any:
        from fastapi.responses import HTMLResponse

        return HTMLResponse(self.env.get_template(name).render(**values), status_code=code)

    def error_page(self, status: int, message: str) -> Any:
        return self.page(
            "error.html", status, status=status, message=redact(message), title=f"{status}", bare=status == 401
        )

    def cookie_value(self) -> str:
        key = self.options.api_key or ""
        return hmac.new(key.encode(), b"gen-emotion studio", hashlib.sha256).hexdigest()

    def allowed(self, request: Any) -> bool:
        """Whether a request carries the key (a bearer token, or the login cookie); always without a key."""
        if self.options.api_key is None:
            return True
        given = bearer_token(request.scope["headers"])  # the bytes the client sent: a non-ASCII key matches too
        if given is not None and hmac.compare_digest(given, self.options.api_key.encode()):
            return True
        return hmac.compare_digest(request.cookies.get(COOKIE, "").encode(), self.cookie_value().encode())


def build_app(studio: Studio) -> Any:
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import RedirectResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from gen_emotion import __version__
    from gen_emotion.studio.errors_view import BadQuery
    from gen_emotion.studio.pages import register

    app = FastAPI(title="gen-emotion studio", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def guard(request: Any, call_next: Any) -> Any:
        path = request.url.path
        if not (path in OPEN_PATHS or studio.allowed(request)):
            if request.method == "GET" and not path.startswith(("/api/", "/static/")):
                response = RedirectResponse(f"/login?next={quote(path, safe='/')}", status_code=303)
            else:
                response = studio.error_page(401, "this studio asks for its key: open /login")
        elif request.method == "POST" and not same_origin(request):
            response = studio.error_page(403, "a form from another site cannot post here")
        else:
            response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Frame-Options"] = "DENY"
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Any, exc: StarletteHTTPException) -> Any:
        return studio.error_page(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Any, exc: RequestValidationError) -> Any:
        first = list(exc.errors())[0]
        where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "request"
        return studio.error_page(400, f"{where}: {first.get('msg', 'not valid')}")

    @app.exception_handler(PathRefused)
    async def refused(request: Any, exc: PathRefused) -> Any:
        return studio.error_page(404, str(exc))

    @app.exception_handler(BadQuery)
    async def bad_query(request: Any, exc: BadQuery) -> Any:
        return studio.error_page(400, str(exc))

    @app.exception_handler(GenEmotionError)
    async def refused_input(request: Any, exc: GenEmotionError) -> Any:
        return studio.error_page(409, str(exc))

    @app.exception_handler(Exception)
    async def failed(request: Any, exc: Exception) -> Any:  # logged by uvicorn; the page says no more than this
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return studio.error_page(500, f"internal error ({type(exc).__name__}); see the studio's log")

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    register(app, studio)
    return app


def studio(folder: Path, options: StudioOptions) -> None:
    """Serve the studio over ``folder`` until Ctrl-C or SIGTERM."""
    import uvicorn

    from gen_emotion.serving.server import is_loopback, listen

    check_options(options)
    root = Studio(folder, options)
    sock = listen(options.host, options.port)
    host, port = sock.getsockname()[:2]
    if not is_loopback(options.host) and not options.api_key:
        log.warning("studio on %s without --api-key: anyone who can reach port %d can read these runs", host, port)
    config = uvicorn.Config(build_app(root), server_header=False, log_level="warning", timeout_graceful_shutdown=3)
    shown = f"[{host}]" if ":" in host else host
    print(f"studio over {folder} on http://{shown}:{port}", flush=True)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        root.models.close()
        root.jobs.close()
