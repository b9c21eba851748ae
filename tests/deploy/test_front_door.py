"""The shipped deployment's front door, as a new user meets it: real nginx with the shipped
snippets, `sensor-sso-agent serve` with config/agent.example.toml as postinst installs it
(only the values a test must change: the tenant and application of the local provider, the
group ids, ports, state_dir), and browsers at different source addresses (Linux routes all of
127/8 to lo, so clients bind 127.0.0.2, 127.0.0.3, ...).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import re
import shutil
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.devidp import DevIdentityProvider
from agent.sessions.store import COOKIE_NAME
from tests.deploy.support import REPO, AgentProcess, SignInClient, free_port
from tests.deploy.test_nginx import NGINX, nginx_in_front, start_console
from tests.harness import CLIENT, ROLE_GROUPS, TENANT
from tests.needs import need


@pytest.fixture(autouse=True)
def _nginx_installed() -> None:
    need(NGINX, "nginx is not installed (Debian package nginx-light; .ci/run installs it)")

EXAMPLE = REPO / "config" / "agent.example.toml"
READER = "reader@contoso.example"


def installed_example(idp: DevIdentityProvider, agent_port: int, public_url: str,
                      state_dir: Path) -> str:
    """The example file with only what this machine needs changed, each change asserted."""
    text = EXAMPLE.read_text()
    changes = [
        (r'listen = "127\.0\.0\.1:8080"', f'listen = "127.0.0.1:{agent_port}"'),
        (r'tenant_id = "0{8}-0{4}-0{4}-0{4}-0{12}"', f'tenant_id = "{TENANT}"'),
        (r'client_id = "0{8}-0{4}-0{4}-0{4}-0{12}"', f'client_id = "{CLIENT}"'),
        (r'redirect_uri = "[^"]+"', f'redirect_uri = "{public_url}/auth/sso/callback"'),
        (r'authority_host = "[^"]+"', f'authority_host = "{idp.authority_host}"'),
        (r'graph_url = "[^"]+"', f'graph_url = "{idp.graph_url}"'),
        (r'# ca_bundle = "[^"]+"', f'ca_bundle = "{idp.ca_file}"'),
        (r'state_dir = "[^"]+"', f'state_dir = "{state_dir}"'),
    ] + [(rf'{role} = \["[^"]+"\]', f"{role} = {json.dumps(groups)}")
         for role, groups in ROLE_GROUPS.items()]
    for pattern, value in changes:
        text, count = re.subn(pattern, value.replace("\\", "\\\\"), text, count=1)
        assert count == 1, pattern
    return text


@dataclass
class Deployment:
    url: str  # nginx
    agent: AgentProcess
    idp: DevIdentityProvider
    nginx_log: Path

    @property
    def host(self) -> bytes:
        """The Host header a browser sends (the agent moves other names to this one first)."""
        return self.url.removeprefix("http://").encode()

    def audit(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.agent.events() if e.get("event") == event]


@pytest.fixture
async def deployment(tmp_path: Path, idp: DevIdentityProvider) -> AsyncIterator[Deployment]:
    assert NGINX is not None
    seen: list[dict[str, str]] = []
    console, console_port = await start_console(seen)
    port, agent_port = free_port(), free_port()
    public = f"http://127.0.0.1:{port}"
    idp.redirect_uris.append(f"{public}/auth/sso/callback")
    config = tmp_path / "agent.toml"
    config.write_text(installed_example(idp, agent_port, public, tmp_path / "state"))
    prlimit = shutil.which("prlimit")
    assert prlimit is not None, "prlimit (util-linux) is needed"
    # systemd's default descriptor limit, without the unit's LimitNOFILE
    agent = AgentProcess(config, agent_port, argv=[
        prlimit, "--nofile=1024:1024", sys.executable, "-m", "agent", "serve",
        "--config", str(config)])
    try:
        async with nginx_in_front(tmp_path, port, agent_port, console_port) as conf_dir:
            await agent.wait_healthy()
            yield Deployment(public, agent, idp, conf_dir / "error.log")
    finally:
        agent.kill()
        await console.cleanup()


async def raw(host: str, port: int, data: bytes, source: str = "127.0.0.1") -> bytes:
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def starts(port: int, source: str, count: int) -> list[int]:
    """``count`` pipelined GET /auth/sso/start from ``source`` on one connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    statuses = []
    try:
        writer.write(b"GET /auth/sso/start?next=/x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
                     % port * count)
        await writer.drain()
        for _ in range(count):
            head = await reader.readuntil(b"\r\n\r\n")
            statuses.append(int(head[9:12]))
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            if length:
                await reader.readexactly(int(length.group(1)))
    finally:
        writer.close()
    return statuses


async def test_one_address_flooding_leaves_another_signing_in(deployment: Deployment) -> None:
    """100 sign-in starts from 127.0.0.2 through nginx: it is refused after its own budget,
    while the user at 127.0.0.3 signs in; each is audited with its own address."""
    flood = await starts(port_of(deployment.url), "127.0.0.2", 100)
    assert 429 in flood and flood[:30] == [302] * 30
    user = SignInClient(deployment.url, deployment.idp, "127.0.0.3")
    try:
        await user.sign_in(READER, next_path="/overview")  # asserts the 302 to /overview
    finally:
        await user.close()
    await deployment.agent.wait_event("sso_login_succeeded")
    succeeded = deployment.audit("sso_login_succeeded")
    assert ["127.0.0.3"] == [e["source_ip"] for e in succeeded]
    started = {e["source_ip"] for e in deployment.audit("sso_login_started")}
    assert {"127.0.0.2", "127.0.0.3"} == started
    # 10 audit lines of a kind a client per 10 s; the rest is one summary with the counts
    refused = deployment.audit("sso_login_refused")
    assert 10 == len(refused) and {"127.0.0.2"} == {e["source_ip"] for e in refused}
    await deployment.agent.wait_event("audit_burst", timeout=30)
    bursts = deployment.audit("audit_burst")
    assert {"127.0.0.2"} == {e["source_ip"] for e in bursts}
    summed = sum((collections.Counter(e["suppressed"]) for e in bursts), collections.Counter())
    assert {"sso_login_started": flood.count(302) - 10,
            "sso_login_refused/too_many_sign_ins": flood.count(429) - 10} == summed


async def test_spoofed_forwarded_for_from_an_untrusted_peer_ignored(
        deployment: Deployment) -> None:
    """X-Forwarded-For sent by the browser, through nginx or straight to the agent's port,
    does not change who the agent thinks the client is."""
    forged = b"X-Forwarded-For: 192.0.2.66\r\n"
    for port in (port_of(deployment.url), deployment.agent.port):
        answer = await raw("127.0.0.1", port, b"GET /auth/sso/start HTTP/1.1\r\nHost: "
                           + deployment.host + b"\r\n" + forged + b"Connection: close\r\n\r\n",
                           source="127.0.0.4")
        assert answer.startswith(b"HTTP/1.1 302"), answer[:100]
    await deployment.agent.wait_event("sso_login_started", count=2)
    assert ["127.0.0.4", "127.0.0.4"] == [
        e["source_ip"] for e in deployment.audit("sso_login_started")]


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_mid_sign_in_user_survives_a_many_address_flood(deployment: Deployment) -> None:
    """The user has signed in at the provider; before the callback, 334 addresses start 30
    sign-ins each (more than max_pending_sign_ins = 10,000). The user's callback still works."""
    user = SignInClient(deployment.url, deployment.idp, "127.0.0.3")
    try:
        callback = await user.authorize(READER, next_path="/overview")
        sources = [f"127.1.{n // 250}.{n % 250 + 1}" for n in range(334)]
        port = port_of(deployment.url)
        for batch in range(0, len(sources), 16):
            results = await asyncio.gather(*(starts(port, s, 30)
                                             for s in sources[batch:batch + 16]))
            assert all(r == [302] * 30 for r in results)
        status, headers, body = await user.get(callback)
        assert (302, "/overview") == (status, headers.get("Location")), body
        status, _, body = await user.get("/overview")
        assert (200, "console page /overview") == (status, body)
    finally:
        await user.close()
    # the flood's own sign-ins were evicted (21 of them): audited, past the first lines in
    # the summary of the 10 s interval they fell in
    def evicted() -> int:
        return len(deployment.audit("state_evicted")) + sum(
            int(e["suppressed"].get("state_evicted", 0)) for e in deployment.audit("audit_burst"))

    for _ in range(300):
        if evicted() >= 21:
            break
        await asyncio.sleep(0.1)
    assert 21 == evicted()


async def log_settled(deployment: Deployment) -> int:
    """Start a sign-in with a unique ``next`` and wait for its audit line: the agent logs in
    order, so every line of the requests sent before is in the log then. Returns how many
    lines of the log precede that line."""
    marker = f"/settled-{time.monotonic_ns()}"
    user = SignInClient(deployment.url, deployment.idp, "127.0.0.9")
    try:
        status, _, body = await user.get("/auth/sso/start", params={"next": marker})
        assert 302 == status, body
    finally:
        await user.close()
    for _ in range(300):
        lines = deployment.agent.log_path.read_bytes().splitlines()
        at = next((i for i, line in enumerate(lines) if marker.encode() in line), None)
        if at is not None:
            return at
        await asyncio.sleep(0.05)
    raise AssertionError("the agent never logged the marker sign-in")


async def test_stray_control_character_beside_a_valid_cookie(deployment: Deployment) -> None:
    """A signed-in browser with \\x0b in another cookie: no 5xx anywhere, and the session
    cookie appears in no log line and no response body."""
    user = SignInClient(deployment.url, deployment.idp, "127.0.0.5")
    try:
        await user.sign_in(READER, next_path="/overview")
        cookie = next(m.value for m in user.http.cookie_jar if m.key == COOKIE_NAME)
    finally:
        await user.close()
    cookies = f"theme=\x0bdark; {COOKIE_NAME}={cookie}".encode()
    statuses, bodies = {}, []
    for path in ("/overview", "/admin/users", "/login", "/auth/me", "/auth/sso/start"):
        answer = await raw("127.0.0.1", port_of(deployment.url),
                           b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + deployment.host
                           + b"\r\nCookie: " + cookies + b"\r\nConnection: close\r\n\r\n")
        statuses[path] = int(answer[9:12])
        if path != "/overview":  # that answer is the console stand-in's own, not the agent's
            bodies.append(answer)
    assert all(status < 500 for status in statuses.values()), statuses
    # /auth/check recognised the session: the console was asked (no redirect to sign in),
    # and the reader is refused the admin-only location with 403
    assert statuses["/overview"] not in (302, 401) and 403 == statuses["/admin/users"]
    many = b"".join(b"Cookie: c%d=%s; %s=%s\r\n" % (i, b"v" * 4000, COOKIE_NAME.encode(),
                                                   cookie.encode()) for i in range(6))
    for target in (b"/overview", b"/login"):
        answer = await raw("127.0.0.1", port_of(deployment.url),
                           b"GET " + target + b" HTTP/1.1\r\nHost: " + deployment.host + b"\r\n"
                           + many + b"Connection: close\r\n\r\n")
        assert int(answer[9:12]) < 500, answer[:300]
        bodies.append(answer)
    await log_settled(deployment)
    for body in bodies:
        assert cookie.encode() not in body.partition(b"\r\n\r\n")[2]
    assert cookie not in deployment.agent.log_path.read_text(errors="replace")


async def test_malformed_requests_add_a_few_json_lines(deployment: Deployment) -> None:
    """300 malformed requests (to the agent's port, and through nginx): at most a few log
    lines, every one JSON."""
    agent = deployment.agent
    before = len(agent.log_path.read_bytes().splitlines())
    head = b"HTTP/1.1\r\nHost: " + deployment.host + b"\r\nConnection: close\r\n"
    bad = [b"GET /login " + head + b"Cookie: a=\x0bb\r\n\r\n",
           b"GET /login " + head + b"No colon\r\n\r\n",
           b"POST /auth/logout " + head + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
           b"GET /login " + head + b"X: " + b"y" * 20000 + b"\r\n\r\n"]
    started = time.monotonic()
    for i in range(300):
        port = agent.port if i % 3 else port_of(deployment.url)
        with contextlib.suppress(ConnectionError):
            await raw("127.0.0.1", port, bad[i % len(bad)])
    intervals = int((time.monotonic() - started) // 10)  # one summary line per 10 s
    lines = agent.log_path.read_bytes().splitlines()[before:await log_settled(deployment)]
    assert len(lines) <= 2 + intervals, lines
    assert all(json.loads(line) for line in lines)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_slow_header_client_cut_off(deployment: Deployment) -> None:
    """A client sending its request head one byte every 5 s is disconnected (20 s limit)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", deployment.agent.port)
    writer.write(b"GET /healthz HTTP/1.1\r\n")
    try:
        for _ in range(12):  # a minute of trickling at most
            try:
                writer.write(b"X")
                await writer.drain()
                if await asyncio.wait_for(reader.read(1), 5) == b"":
                    break
            except TimeoutError:
                continue
        else:
            raise AssertionError("still connected after a minute of one byte every 5 s")
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.mark.timeout(120)
async def test_1100_idle_connections_leave_healthz_answering(deployment: Deployment) -> None:
    """1,100 idle connections to an agent with 1,024 descriptors: /healthz answers and the
    log stays small."""
    idle = []
    size = deployment.agent.log_path.stat().st_size
    try:
        for _ in range(1100):
            idle.append(await asyncio.open_connection("127.0.0.1", deployment.agent.port))
        answer = await raw("127.0.0.1", deployment.agent.port,
                           b"GET /healthz HTTP/1.1\r\nHost: " + deployment.host
                           + b"\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        browser = SignInClient(deployment.url, deployment.idp)
        try:
            status, _, _ = await browser.get("/login")  # and through nginx too
        finally:
            await browser.close()
    finally:
        for _, writer in idle:
            writer.close()
    assert 200 == status
    assert deployment.agent.log_path.stat().st_size - size < 10_000
