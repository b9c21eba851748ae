"""Nothing logged ever holds a token, code, verifier, state, nonce, cookie value or key.

Both ways the agent's logs can be seen: structlog's captured events in process, and the
stdout/stderr of a real ``python -m agent serve`` process (what journald would store).
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.devidp import Fault
from agent.devidp.refresh import disable_user
from agent.sessions.journal import KEY_FILE
from agent.sessions.store import COOKIE_NAME
from agent.web import keys
from tests.harness import PASSWORD, Browser, Stack, StackFactory, query
from tests.security.subprocess_agent import AgentProcess

BINDING = "__Host-sso_signin"
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


class Secrets:
    def __init__(self) -> None:
        self.values: set[str] = set()

    def add(self, *values: str | None) -> None:
        self.values.update(v for v in values if v and len(v) >= 8)

    def found_in(self, text: str) -> list[str]:
        leaked = [v[:12] + "…" for v in self.values if v in text]
        leaked += [m[:12] + "…" for m in JWT.findall(text)]
        return leaked


async def one_sign_in(stack: Stack, browser: Browser, secrets: Secrets, username: str,
                      in_process: bool) -> int:
    """A whole sign-in, noting every secret it involves; returns the agent's status."""
    authorize_url = await browser.start()
    params = query(authorize_url)
    secrets.add(params.get("state"), params.get("nonce"), params.get("code_challenge"),
                browser.cookie(BINDING))
    if in_process:
        assert stack.app is not None
        pending = stack.app[keys.SIGN_IN].pending._items[params["state"]]  # noqa: SLF001
        secrets.add(pending.flow.get("code_verifier"), pending.flow.get("nonce"))
    callback = await browser.authenticate(authorize_url, username)
    back = query(callback)
    secrets.add(back.get("code"), back.get("client_info"), back.get("session_state"))
    resp = await browser.get(callback)
    secrets.add(browser.cookie(COOKIE_NAME))
    return resp.status


async def journey(stack: Stack, secrets: Secrets, in_process: bool) -> None:
    """Successes, every kind of failure, a forged callback, sign-out."""
    secrets.add(PASSWORD)
    admin = stack.browser()
    assert 302 == await one_sign_in(stack, admin, secrets, "admin@contoso.example", in_process)
    graph_user = stack.browser()
    assert 302 == await one_sign_in(stack, graph_user, secrets, "graphprofile@contoso.example",
                                    in_process)
    me = await (await admin.get("/auth/me")).json()
    secrets.add(me["csrf_token"])
    misbehaviours: tuple[Callable[[], None], ...] = (
        lambda: stack.idp.token_tweaks.update(signing="bad_signature"),
        lambda: stack.idp.token_tweaks.update(claims={"nonce": "f" * 64}),
        lambda: stack.idp.faults.update(token=Fault(status=500, body=b'{"error":"x"}')),
        lambda: stack.idp.faults.update(graph_me=Fault(status=429)),
        lambda: setattr(stack.idp, "authorize_error", ("access_denied", "AADSTS50105: no")),
    )
    for misbehave in misbehaviours:
        misbehave()
        user = "graphprofile@contoso.example"
        status = await one_sign_in(stack, stack.browser(), secrets, user, in_process)
        assert status in (400, 403, 502)
        stack.idp.reset_misbehaviour()
    forged = stack.browser()
    authorize_url = await forged.start()
    secrets.add(query(authorize_url)["state"], forged.cookie(BINDING))
    assert 400 == (await forged.get(
        f"/auth/sso/callback?state={query(authorize_url)['state']}&code=forgedcode123")).status
    assert 400 == (await stack.browser().get(
        f"/auth/sso/callback?state={query(authorize_url)['state']}&code=forgedcode456")).status
    if in_process:  # re-validation: refreshes (rotated tokens), a revocation
        assert stack.app is not None
        disable_user(stack.idp, "graphprofile@contoso.example")
        outcomes = await stack.app[keys.REVALIDATOR].revalidate_now()
        assert {"confirmed", "revoked"} <= {o.result for o in outcomes}
    secrets.add(*stack.idp.refresh_tokens)
    assert 403 == (await admin.post("/auth/logout", data={"csrf_token": "wrong-token-1"})).status
    assert 303 == (await admin.post("/auth/logout",
                                    headers={"X-CSRF-Token": me["csrf_token"]})).status
    key = (Path(stack.settings.session.state_dir) / KEY_FILE).read_bytes()
    secrets.add(key.hex(), base64.b64encode(key).decode(), base64.urlsafe_b64encode(key).decode())


async def test_structlog_events_hold_no_secret(new_stack: StackFactory,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """Every captured audit/log event of a busy session: no secret value anywhere."""
    stack = await new_stack()
    secrets = Secrets()
    caplog.set_level(logging.WARNING)
    with capture_logs() as logs:
        await journey(stack, secrets, in_process=True)
    events = {e["event"] for e in logs}
    assert {"sso_login_started", "sso_login_succeeded", "sso_login_refused", "idp_error",
            "sso_logout", "session_revoked"} <= events
    text = "\n".join(repr(e) for e in logs) + "\n" + caplog.text
    assert len(secrets.values) > 30
    assert [] == secrets.found_in(text)


async def test_process_output_holds_no_secret(proc_stack: tuple[Stack, AgentProcess]) -> None:
    """Everything a real agent process writes (stdout JSON and stderr): no secret value."""
    stack, agent = proc_stack
    agent.start()
    await agent.ready()
    secrets = Secrets()
    await journey(stack, secrets, in_process=False)
    await agent.stop()
    output = agent.output()
    assert '"event": "sso_login_succeeded"' in output
    assert '"event": "sso_login_refused"' in output
    assert [] == secrets.found_in(output)
