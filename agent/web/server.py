"""The HTTP server around the application: every edge bounded and quiet.

aiohttp's defaults answer a malformed request with a 400 whose body quotes the offending
bytes (the start of a Cookie header, say) and log an 11-line traceback per request; an idle
socket stays open for an hour; connections are unbounded. Here instead:

* **malformed requests** get a generic 400 with the security headers and ``Connection:
  close``, and one rate-limited ``http_request_malformed`` warning (error class, status,
  peer, how many were suppressed) with no raw bytes; an unexpected error is a generic 500
  logged as its type and place;
* **a request head must arrive within** ``HEADER_TIMEOUT`` seconds of the connection (or of
  the previous answer on a kept-alive one), so an idle or one-byte-every-few-seconds client
  is cut off (aiohttp's keep-alive timer, which starts at connection time);
* **the whole request must arrive in time**: its body within ``BODY_TIMEOUT`` seconds of
  its head plus one second per ``MIN_BODY_RATE`` bytes (of ``Content-Length``, or of the
  largest body the app accepts when chunked). The body is read before routing; a client
  that stalls mid-body gets a generic 408 and the connection is closed, with one
  rate-limited ``http_request_malformed`` warning (``error_class=BodyTimeout``). While a
  body is still arriving the connection counts as idle for the cap below, so slow bodies
  can never hold ``/healthz`` out either (issue 23, 1);
* **connections are capped** below the process's file-descriptor limit: beyond the cap the
  least recently active connection without a request in progress is closed, so a pile of
  idle sockets can never keep ``/healthz`` (or anyone else) out. The cap leaves room for a
  whole burst of accepts (asyncio accepts up to the site's backlog in one go, before any
  connection can be shed) besides the descriptors of the agent's own files and outbound
  connections; should descriptors run out anyway, asyncio's error per refused accept (with
  its traceback) becomes one rate-limited ``accept_failed`` warning that says what to do
  (``quiet_accept_failures``).

``FrontDoorRunner`` is an ``AppRunner`` whose server builds these handlers.
"""

from __future__ import annotations

import asyncio
import resource
import time
import traceback
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_request import BaseRequest

from .aiohttp_private import (
    handler_server,
    plain_server,
    request_in_progress,
    server_arguments,
    server_loop,
)
from .keys import METRICS
from .middlewares import ERROR_HEADERS

log = structlog.get_logger("agent.web")

HEADER_TIMEOUT = 20.0  # s; longer than the idle keep-alive of nginx (10 s) and aiohttp (15 s)
MALFORMED_LOG_INTERVAL = 10.0  # at most one http_request_malformed line per interval (+ one)
BODY_TIMEOUT = 10.0  # s from the head to the whole body, plus one second per MIN_BODY_RATE bytes
MIN_BODY_RATE = 1024  # bytes/s a body must average after BODY_TIMEOUT
FD_RESERVE = 128  # descriptors kept for Entra/Graph connections, the journal, the key
ACCEPT_BURST = 128  # the site's backlog: connections asyncio accepts before any is shed


def connection_cap(limit: int | None = None) -> int:
    """Connections the agent holds at most: below RLIMIT_NOFILE with a reserve."""
    soft = limit if limit is not None else resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        soft = 65536
    return max(16, min(20_000, soft - FD_RESERVE - ACCEPT_BURST))


def quiet_accept_failures(loop: asyncio.AbstractEventLoop,
                          interval: float = MALFORMED_LOG_INTERVAL) -> None:
    """asyncio logs every accept refused for want of descriptors (EMFILE and the like) with a
    traceback; log one ``accept_failed`` warning per ``interval`` instead, with how many were
    suppressed. Every other loop error goes to asyncio's default handler."""
    last, suppressed = -interval, 0

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        nonlocal last, suppressed
        if not str(context.get("message", "")).startswith("socket.accept() out of system"):
            loop.default_exception_handler(context)
            return
        now = time.monotonic()
        if now - last < interval:
            suppressed += 1
            return
        exc = context.get("exception")
        log.warning("accept_failed", error=type(exc).__name__ if exc else "-",
                    errno=getattr(exc, "errno", None), suppressed=suppressed,
                    fix="the agent ran out of file descriptors: raise LimitNOFILE in the "
                        "unit, or find what holds so many connections")
        last, suppressed = now, 0

    loop.set_exception_handler(handler)


class MalformedLog:
    """One ``http_request_malformed`` line per interval; a summary of the rest after it."""

    def __init__(self, interval: float = MALFORMED_LOG_INTERVAL) -> None:
        self.interval = interval
        self._last = -interval
        self._suppressed: Counter[str] = Counter()
        self._flush: asyncio.TimerHandle | None = None

    def record(self, error: str, status: int, peer: str | None) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval and not self._suppressed:
            self._last = now
            log.warning("http_request_malformed", error_class=error, status=status,
                        peer=peer or "-", suppressed=0)
            return
        self._suppressed[error] += 1
        if self._flush is None:
            delay = max(0.0, self._last + self.interval - now)
            self._flush = asyncio.get_running_loop().call_later(delay, self.flush, status, peer)

    def flush(self, status: int = 400, peer: str | None = None) -> None:
        self._flush = None
        if self._suppressed:
            counts, self._suppressed = self._suppressed, Counter()
            self._last = time.monotonic()
            log.warning("http_request_malformed", error_class=counts.most_common(1)[0][0],
                        status=status, peer=peer or "-", suppressed=counts.total(),
                        classes=dict(counts), interval_s=self.interval)


def generic_error(status: int) -> web.Response:
    reason = {400: "Bad request", 408: "Request too slow", 413: "Request too large",
              504: "Timed out"}.get(
        status, "Internal error" if status >= 500 else "Bad request")
    response = web.Response(status=status, text=f"{reason}\n", headers=ERROR_HEADERS)
    response.force_close()
    return response


class FrontDoorHandler(web.RequestHandler):
    """aiohttp's connection handler with generic, logged-once error answers."""

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        manager = handler_server(self)
        if isinstance(exc, HttpProcessingError) or status < 500:
            if isinstance(manager, FrontDoorServer):
                manager.malformed.record(type(exc).__name__ if exc else "unknown", status,
                                         request.remote)
                if manager.count_malformed is not None:
                    manager.count_malformed()
            status = 400 if status >= 500 else status  # a client's bytes: never a 5xx
        elif exc is not None:
            frames = traceback.extract_tb(exc.__traceback__)
            where = f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" \
                if frames else "-"
            log.error("internal_error", error_type=type(exc).__name__, where=where,
                      path=request.path if request.path else "-")
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; closing the connection")
        return generic_error(status)

    def data_received(self, data: bytes) -> None:
        manager = handler_server(self)
        if isinstance(manager, FrontDoorServer):
            manager.active(self)
        super().data_received(data)


class FrontDoorServer(web.Server):
    """Builds ``FrontDoorHandler``s and keeps the number of connections under a cap."""

    def __init__(self, handler: Callable[[BaseRequest], Awaitable[web.StreamResponse]],
                 *args: Any,
                 max_connections: int, body_timeout: float = BODY_TIMEOUT,
                 min_body_rate: float = MIN_BODY_RATE,
                 count_malformed: Callable[[], None] | None = None, **kwargs: Any) -> None:
        super().__init__(self._whole_request, *args, **kwargs)
        self._app_handler = handler
        self.max_connections = max_connections
        self.body_timeout = body_timeout
        self.min_body_rate = min_body_rate
        self.malformed = MalformedLog()
        self.count_malformed = count_malformed  # the metrics' counter, when there is one
        self._by_activity: OrderedDict[web.RequestHandler, None] = OrderedDict()
        self._receiving: set[object] = set()
        self.shed = 0

    async def _whole_request(self, request: BaseRequest) -> web.StreamResponse:
        """Read the body under its deadline, then hand the request to the application."""
        if request.body_exists and not request.content.is_eof():
            size = request.content_length
            budget = self.body_timeout + (
                size if size is not None else request.client_max_size) / self.min_body_rate
            self._receiving.add(request.protocol)
            try:
                async with asyncio.timeout(budget):
                    await request.read()
            except TimeoutError:
                self.malformed.record("BodyTimeout", 408, request.remote)
                request.content.feed_eof()  # else aiohttp lingers 10 s for the rest of it
                return generic_error(408)
            except web.HTTPRequestEntityTooLarge:
                self.malformed.record("BodyTooLarge", 413, request.remote)
                return generic_error(413)
            except ConnectionError:  # the client went away mid-body: nobody to answer
                return generic_error(400)
            finally:
                self._receiving.discard(request.protocol)
        return await self._app_handler(request)

    def __call__(self) -> web.RequestHandler:
        return FrontDoorHandler(self, loop=server_loop(self), **server_arguments(self))

    def active(self, handler: web.RequestHandler) -> None:
        if handler in self._by_activity:
            self._by_activity.move_to_end(handler)

    def connection_made(self, handler: web.RequestHandler,
                        transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self._by_activity[handler] = None
        if len(self._by_activity) > self.max_connections:
            self._shed(handler)

    def connection_lost(self, handler: web.RequestHandler,
                        exc: BaseException | None = None) -> None:
        self._by_activity.pop(handler, None)
        super().connection_lost(handler, exc)

    def _shed(self, newest: web.RequestHandler) -> None:
        """Close the least recently active connection that is not answering a request."""
        for handler in self._by_activity:
            if handler is not newest and (
                    handler in self._receiving or not request_in_progress(handler)):
                break
        else:
            handler = newest  # every connection is busy: the newcomer waits its turn
        self._by_activity.pop(handler, None)
        self.shed += 1
        if self.shed == 1 or self.shed % 1000 == 0:
            log.warning("connections_shed", total=self.shed, cap=self.max_connections)
        handler.force_close()


class FrontDoorRunner(web.AppRunner):
    """``AppRunner`` with the bounded server above (same arguments, plus the two bounds)."""

    def __init__(self, app: web.Application, *, header_timeout: float = HEADER_TIMEOUT,
                 max_connections: int | None = None, body_timeout: float = BODY_TIMEOUT,
                 min_body_rate: float = MIN_BODY_RATE, **kwargs: Any) -> None:
        kwargs.setdefault("access_log", None)
        super().__init__(app, keepalive_timeout=header_timeout, max_field_size=16384,
                         **kwargs)
        self.max_connections = max_connections or connection_cap()
        self.body_timeout, self.min_body_rate = body_timeout, min_body_rate

    async def _make_server(self) -> web.Server:
        plain = await plain_server(self)
        return FrontDoorServer(plain.request_handler, request_factory=plain.request_factory,
                               handler_cancellation=plain.handler_cancellation,
                               loop=asyncio.get_running_loop(),
                               max_connections=self.max_connections,
                               body_timeout=self.body_timeout,
                               min_body_rate=self.min_body_rate,
                               count_malformed=metrics.count_malformed
                               if (metrics := self.app.get(METRICS)) is not None else None,
                               **server_arguments(plain))
