"""agent/web/aiohttp_private.py against the installed aiohttp: every private attribute the
front door reads is still there with the type it was written against, so an aiohttp upgrade
that changes one fails here, by name, instead of silently (a connection that never looks busy
would be shed mid-request)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from agent.web.aiohttp_private import (
    AiohttpChanged,
    handler_server,
    plain_server,
    request_in_progress,
    server_arguments,
    server_loop,
)
from agent.web.server import FrontDoorHandler, FrontDoorRunner, FrontDoorServer


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hi")


@pytest.fixture
async def runner() -> AsyncIterator[FrontDoorRunner]:
    app = web.Application()
    app.router.add_get("/", hello)
    front = FrontDoorRunner(app, max_connections=10)
    await front.setup()
    yield front
    await front.cleanup()


class TestInstalledAiohttp:
    async def test_the_plain_server_and_its_arguments(self, runner: FrontDoorRunner) -> None:
        """AppRunner's own server and the arguments it passes to each connection's handler
        are readable; the front door's server is built from them."""
        plain = await plain_server(runner)
        assert isinstance(plain, web.Server) and not isinstance(plain, FrontDoorServer)
        assert isinstance(runner.server, FrontDoorServer)
        assert server_arguments(plain) == server_arguments(runner.server)
        assert server_loop(runner.server) is asyncio.get_running_loop()

    async def test_a_connections_handler(self, runner: FrontDoorRunner) -> None:
        """A new connection's handler knows its server and is not answering a request."""
        assert isinstance(runner.server, FrontDoorServer)
        handler = runner.server()
        assert isinstance(handler, FrontDoorHandler)
        assert handler_server(handler) is runner.server
        assert request_in_progress(handler) is False


class TestChangedAiohttp:
    @pytest.mark.parametrize("read", [request_in_progress, handler_server, server_arguments,
                                      server_loop])
    def test_a_missing_attribute_fails_loudly(self, read: object) -> None:
        """An attribute aiohttp no longer has raises AiohttpChanged naming it, never a
        default that would change what the front door does."""
        assert callable(read)
        with pytest.raises(AiohttpChanged, match="adapt agent/web/aiohttp_private.py"):
            read(object())
