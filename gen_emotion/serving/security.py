"""What ``gen-emotion serve`` refuses before a request reaches its routes: a missing or wrong bearer token (checked
on the raw header bytes before any body is read), a ``Host`` it does not serve (DNS rebinding), a body over its
size or slower than its timeout, a connection whose request headers do not arrive in time; and what a request
still running when the shutdown timeout ends gets (a JSON 503, not a traceback)."""

import asyncio
import hmac
import ipaddress
import logging
import time
from collections.abc import Callable
from typing import Any

from gen_emotion.serving.schemas import error

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health"})
"""Paths answered without the key: a bare liveness status (the details need the key)."""
AUTHORIZED = "gen_emotion.authorized"
"""The scope key that tells a route whether the request carried the key (``/health``'s details)."""


def is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(given: str | None, host: str) -> list[str]:
    """The ``Host`` headers served: ``--allowed-hosts`` (comma-separated), else the address it binds plus the
    loopback names where that is loopback; any host (``*``) on a wildcard address, where the key protects it."""
    if given:
        return [name.strip().strip("[]") for name in given.split(",") if name.strip()]
    if host in ("0.0.0.0", "::", ""):
        return ["*"]
    names = [host.strip("[]")]
    if is_loopback(host):
        names += [name for name in ("localhost", "127.0.0.1", "::1") if name not in names]
    return names


def bearer_token(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, as the bytes the client sent."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" else None
    return None


class KeyCheck:
    """With a key set, every request but ``/health`` needs ``Authorization: Bearer KEY``: 401 before its body is
    read. The key is compared as bytes (the client's UTF-8; a server that decoded the header as Latin-1 and
    compared it as UTF-8 could never match a non-ASCII key), in constant time."""

    def __init__(self, app: Any, key: str | None) -> None:
        self.app, self.key = app, key.encode("utf-8") if key else None

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = bearer_token(scope["headers"]) if self.key is not None else None
        scope[AUTHORIZED] = self.key is None or (given is not None and hmac.compare_digest(given, self.key))
        if not scope[AUTHORIZED] and scope["path"] not in OPEN_PATHS:
            refused = error(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})
            return await refused(scope, receive, send)
        await self.app(scope, receive, send)


class BodyLimit:
    """413 for a body over ``limit`` bytes (at once from its Content-Length, or as it streams in) and 408 for a
    body not all in within ``timeout`` seconds of the request's start."""

    def __init__(self, app: Any, limit: int, timeout: float) -> None:
        self.app, self.limit, self.timeout = app, limit, timeout

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.exceptions import HTTPException

        too_large = f"the body is over {self.limit} bytes (--max-body-bytes)"
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            return await error(413, too_large, {"Connection": "close"})(scope, receive, send)
        received, complete, deadline = 0, False, time.monotonic() + self.timeout

        async def limited() -> dict[str, Any]:
            nonlocal received, complete
            if complete:  # the body is in: a later receive waits for the client to leave, untimed
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.0))
            except TimeoutError:  # raised inside the app's body read: its handler answers with JSON
                late = f"the body did not arrive within {self.timeout:g} s (--body-timeout)"
                raise HTTPException(408, late) from None
            received += len(message.get("body", b""))
            complete = not message.get("more_body", False)
            if received > self.limit:
                raise HTTPException(413, too_large)
            return message

        await self.app(scope, limited, send)


class ShutdownGuard:
    """A request still running when ``--shutdown-timeout`` ends is cancelled by uvicorn: it gets a JSON 503 (it
    may be sent again) and the log one line, not a plain-text 500 and a ``CancelledError`` traceback."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # answered here: the request's task ends as if it had finished
            log.warning("%s %s: cut off by the shutdown (--shutdown-timeout)", scope["method"], scope["path"])
            if not started:
                message = "the server shut down before this request finished; send it again"
                await error(503, message, {"Connection": "close"})(scope, receive, send)


def http_protocol(header_timeout: float) -> type:
    """uvicorn's h11 protocol (h11 bounds a request head's size, ``h11_max_incomplete_event_size``) that also
    closes a connection whose next request head is not all in ``header_timeout`` seconds after the connection
    opened or its last answer was sent: uvicorn times an idle connection only from its last answer, and not a
    request head that trickles in a byte at a time."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class TimedH11Protocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._time_next_head(None)

        def on_response_complete(self) -> None:
            answered = self.cycle
            super().on_response_complete()
            self._time_next_head(answered)

        def _time_next_head(self, last: Any) -> None:
            self.loop.call_later(header_timeout, self._head_late, last)

        def _head_late(self, last: Any) -> None:
            if self.cycle is last and not self.transport.is_closing():  # no new request has begun since
                self.transport.close()

    return TimedH11Protocol
