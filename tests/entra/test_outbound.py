"""The size cap on answers from Entra ID and Graph (``MAX_BODY``), for both outbound clients:
the agent's aiohttp client (discovery, JWKS, Graph) and the requests client MSAL uses (token
endpoint). An answer declaring a ``Content-Length`` over the cap is refused, and so is a
streamed one without it (at the chunk that crosses the cap); an answer of exactly the cap is
read whole. Against a real local HTTP server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from agent.entra.outbound import MAX_BODY, MsalHttpClient, Outbound, ResponseTooLarge
from agent.errors import IdentityProviderUnavailable
from agent.settings import EntraSettings
from tests.harness import free_port

FITS = b'"' + b"a" * (MAX_BODY - 2) + b'"'  # a JSON string of exactly MAX_BODY bytes
TOO_LARGE = FITS + b" "


async def declared(_: web.Request) -> web.Response:
    return web.Response(body=TOO_LARGE, content_type="application/json")


async def streamed(request: web.Request) -> web.StreamResponse:
    """No Content-Length: chunked transfer, the cap is crossed by the last chunk."""
    body = TOO_LARGE if request.query.get("size") == "over" else FITS
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for start in range(0, len(body), 100_000):
        await resp.write(body[start:start + 100_000])
    await resp.write_eof()
    return resp


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/declared", declared)
    app.router.add_get("/streamed", streamed)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


class TestAgentClient:
    @pytest.mark.parametrize("path", ["/declared", "/streamed?size=over"])
    async def test_over_the_cap_is_unavailable(self, outbound: Outbound, server: str,
                                               path: str) -> None:
        """More than MAX_BODY: a 502 reason naming the dependency, nothing parsed."""
        with pytest.raises(IdentityProviderUnavailable) as caught:
            await outbound.request_json("GET", server + path, dependency="Entra ID")
        assert ("entra_id_response_too_large", "Entra ID") == (caught.value.reason,
                                                               caught.value.dependency)

    async def test_exactly_the_cap_is_read(self, outbound: Outbound, server: str) -> None:
        """An answer of exactly the cap is read whole by the agent's own client."""
        resp = await outbound.request_json("GET", server + "/streamed", dependency="Entra ID")
        assert (200, MAX_BODY - 2) == (resp.status, len(resp.body))


class TestMsalClient:
    @pytest.mark.parametrize("path", ["/declared", "/streamed?size=over"])
    async def test_over_the_cap_is_refused(self, entra: EntraSettings, server: str,
                                           path: str) -> None:
        """An MSAL answer over the cap (declared or streamed) raises ResponseTooLarge."""
        client = MsalHttpClient(entra, None)
        try:
            with pytest.raises(ResponseTooLarge):
                await asyncio.to_thread(client.get, server + path)
        finally:
            client.close()

    async def test_exactly_the_cap_is_read(self, entra: EntraSettings, server: str) -> None:
        """An answer of exactly the cap is read whole by MSAL's client."""
        client = MsalHttpClient(entra, None)
        try:
            resp = await asyncio.to_thread(client.get, server + "/streamed")
        finally:
            client.close()
        assert (200, MAX_BODY - 2) == (resp.status_code, len(resp.json()))
