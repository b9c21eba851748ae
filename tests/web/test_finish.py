"""The end of a sign-in (agent/web/finish.py), shared by the SSO callback (302) and the local
form (303): the browser's previous session ends, or, when its end cannot be written, lives on
unreachable and is audited; the new cookie is set either way. Real HTTP, a real store."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from agent.sessions.journal import JOURNAL_FILE
from agent.sessions.store import COOKIE_NAME, SessionStore
from agent.web import keys
from agent.web.finish import finish_sign_in
from tests.clock import Clock


async def store_with_a_session(state: Path, clock: Clock) -> tuple[SessionStore, str]:
    """A store restored from a journal that holds one session; returns its cookie id."""
    first = SessionStore(state, 1800, 43200, clock)
    first.load()
    cookie, session = first.new_session(upn="operator@contoso.example", given_name="O",
                                        family_name="P", oid="o-1", role="admin", groups=[],
                                        auth_time=clock(), method="local")
    await first.put(session)
    first.close()
    store = SessionStore(state, 1800, 43200, clock)
    store.load()
    assert store.get(cookie) is not None
    return store, cookie


async def finish(store: SessionStore, cookie: str, status: int) -> aiohttp.ClientResponse:
    """GET a route that ends a sign-in as both sign-in routes do, with ``cookie`` set."""
    app = web.Application()
    app[keys.SESSIONS] = store

    async def route(request: web.Request) -> web.Response:
        return await finish_sign_in(request, "new-cookie-id", "/next", status)

    app.router.add_get("/finish", route)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            resp = await http.get(f"http://127.0.0.1:{port}/finish", allow_redirects=False,
                                  headers={"Cookie": f"{COOKIE_NAME}={cookie}"})
            await resp.read()
            return resp
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("status", [302, 303])
class TestFinishSignIn:
    async def test_the_previous_session_ends(self, tmp_path: Path, status: int) -> None:
        """The browser's previous session is over; the new cookie and the redirect go out."""
        store, old = await store_with_a_session(tmp_path / "state", Clock())
        resp = await finish(store, old, status)
        assert (status, "/next") == (resp.status, resp.headers["Location"])
        assert "new-cookie-id" == resp.cookies[COOKIE_NAME].value
        assert store.get(old) is None

    async def test_a_previous_session_whose_end_cannot_be_written(
            self, tmp_path: Path, status: int) -> None:
        """The journal cannot be written: no error page, the new cookie still goes out, the
        old session lives on unreachable and session_revoke_failed says so (both routes)."""
        state = tmp_path / "state"
        store, old = await store_with_a_session(state, Clock())
        (state / JOURNAL_FILE).unlink()
        (state / JOURNAL_FILE).mkdir()  # whatever is written next fails (EISDIR)
        with capture_logs() as logs:
            resp = await finish(store, old, status)
        assert (status, "new-cookie-id") == (resp.status, resp.cookies[COOKIE_NAME].value)
        [failed] = [e for e in logs if e["event"] == "session_revoke_failed"]
        assert "replaced_by_sign_in" == failed["reason"]
        store.close()
