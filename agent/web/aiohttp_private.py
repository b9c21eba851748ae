"""The only place the agent reads aiohttp's private attributes (aiohttp has no public API for
them), so that an aiohttp upgrade that renames one breaks here, loudly, and nowhere else.

* ``Server._kwargs`` and ``Server._loop``: what ``AppRunner`` built its server with, so that
  ``FrontDoorRunner`` builds its bounded ``FrontDoorServer`` with the same arguments;
* ``AppRunner._make_server``: the plain server those come from;
* ``RequestHandler._manager``: the server a connection's handler belongs to;
* ``RequestHandler._request_in_progress``: whether a connection is answering a request
  (shedding closes only idle ones).

Each accessor raises ``AiohttpChanged`` when the attribute is not what it was written against;
tests/web/test_aiohttp_private.py runs every one against the installed aiohttp.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from ..errors import AgentError

WRITTEN_AGAINST = "aiohttp 3.14"


class AiohttpChanged(AgentError):
    """aiohttp no longer has a private attribute the agent reads: pin the older aiohttp or
    adapt agent/web/aiohttp_private.py."""


_MISSING = object()


def _attribute(owner: object, name: str, kind: type | tuple[type, ...]) -> Any:
    value = getattr(owner, name, _MISSING)
    if value is _MISSING or not isinstance(value, kind):
        raise AiohttpChanged(f"{type(owner).__name__}.{name} is not what the agent was written "
                             f"against ({WRITTEN_AGAINST}); adapt agent/web/aiohttp_private.py")
    return value


async def plain_server(runner: web.AppRunner) -> web.Server:
    """The server ``AppRunner`` itself would serve with (its own ``_make_server``, whatever
    a subclass of it overrides)."""
    make = getattr(web.AppRunner, "_make_server", None)
    if not callable(make):
        raise AiohttpChanged("AppRunner._make_server is gone; adapt agent/web/aiohttp_private.py")
    server = await make(runner)
    if not isinstance(server, web.Server):
        raise AiohttpChanged(f"AppRunner._make_server returned {type(server).__name__}, not "
                             "a web.Server; adapt agent/web/aiohttp_private.py")
    return server


def server_arguments(server: web.Server) -> dict[str, Any]:
    """The keyword arguments ``server`` passes to each connection's handler."""
    return dict(_attribute(server, "_kwargs", dict))


def server_loop(server: web.Server) -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop = _attribute(server, "_loop", asyncio.AbstractEventLoop)
    return loop


def handler_server(handler: web.RequestHandler) -> web.Server | None:
    """The server that made ``handler`` (None once aiohttp let go of it)."""
    manager: web.Server | None = _attribute(handler, "_manager", (web.Server, type(None)))
    return manager


def request_in_progress(handler: web.RequestHandler) -> bool:
    """Whether the connection is answering a request now."""
    busy: bool = _attribute(handler, "_request_in_progress", bool)
    return busy
