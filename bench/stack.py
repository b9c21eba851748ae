"""The benchmark's stack: the local identity provider in this process, the agent in its own."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from agent.demo import DEMO_CLIENT, DEMO_GROUPS, DEMO_TENANT
from agent.devidp import DEMO_PASSWORD, DevIdentityProvider, demo_users
from agent.devidp.state import IssuedRefreshToken
from agent.sessions.journal import SessionJournal
from agent.sessions.lines import Item
from agent.sessions.store import COOKIE_NAME, Session, journal_items, session_key
from tests.devidp_driver import complete_sign_in

TENANT, CLIENT, ROLE_GROUPS = DEMO_TENANT, DEMO_CLIENT, DEMO_GROUPS  # the demo's tenant
USER = "admin@contoso.example"
ROOT = Path(__file__).resolve().parent.parent
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_idp(port: int) -> DevIdentityProvider:
    return DevIdentityProvider(
        tenant_id=TENANT, client_id=CLIENT,
        redirect_uris=[f"http://127.0.0.1:{port}/auth/sso/callback"],
        users=demo_users(ROLE_GROUPS))


def write_config(path: Path, idp: DevIdentityProvider, port: int, state_dir: Path,
                 session_extra: str = "", extra: str = "") -> Path:
    roles = "\n".join(f'{role} = ["{groups[0]}"]' for role, groups in ROLE_GROUPS.items())
    path.write_text(f"""\
[server]
listen = "127.0.0.1:{port}"

[entra]
tenant_id = "{TENANT}"
client_id = "{CLIENT}"
redirect_uri = "http://127.0.0.1:{port}/auth/sso/callback"
authority_host = "{idp.url}"
graph_url = "{idp.url}"
ca_bundle = "{idp.ca_file}"

[roles]
{roles}

[session]
state_dir = "{state_dir}"
# The benchmark signs everyone in from 127.0.0.1: lift the per-address start limit.
sign_ins_per_minute_per_client = 1000000
{session_extra}
{extra}""")
    return path


REFRESH_TOKEN_CHARS = 1100  # about the size of an Entra ID refresh token (opaque, base64url)


def seed_sessions(state_dir: Path, count: int, refresh_tokens: bool = False,
                  idp: DevIdentityProvider | None = None, interval: float = 0.0) -> float:
    """Write ``count`` live sessions into the agent's journal (its real persistence path,
    ``SessionJournal.append`` of ``journal_items(session)``) before it starts; returns seconds.

    ``refresh_tokens``: each holds a refresh token of Entra's size. With ``idp`` they are
    ``USER``'s and the provider honours them (re-validation succeeds), last confirmed at
    random points of the past ``interval`` so that re-validation is spread from the start."""
    t0 = time.perf_counter()
    journal = SessionJournal(state_dir)
    journal.open()
    now = time.time()
    user = idp.user_by_username(USER) if idp is not None else None
    batch: list[Item] = []
    for i in range(count):
        token = None
        if refresh_tokens:
            token = "0.A" + secrets.token_urlsafe(REFRESH_TOKEN_CHARS * 3 // 4)[
                :REFRESH_TOKEN_CHARS - 3]
        if idp is not None and user is not None and token is not None:
            idp.refresh_tokens[token] = IssuedRefreshToken(
                oid=user.oid, client_id=CLIENT, scope=f"openid profile offline_access "
                f"{idp.graph_url}/.default", session_state=f"sid-{i}", auth_time=now,
                granted_at=now, expires_at=now + 86400)
        batch.extend(journal_items(Session(
            key=session_key(secrets.token_urlsafe(32)),
            upn=user.username if user else f"user{i}@contoso.example",
            given_name="Bench", family_name=f"User {i}",
            oid=user.oid if user else f"{i:08d}-0000-4000-8000-bench",
            role="admin" if user else "read_only",
            groups=(ROLE_GROUPS["admin" if user else "read_only"][0],), auth_time=now,
            created=now, last_seen=now, new_refresh_token=token,
            sid=f"sid-{i}" if token else None,
            revalidated=now - interval * secrets.randbelow(1000) / 1000)))
        if len(batch) == 10_000:
            journal.append(batch)
            batch = []
    journal.append(batch)
    return time.perf_counter() - t0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


class AgentProcess:
    """``python -m agent serve --config PATH`` with its logs in a file."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config = config
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.started = time.perf_counter()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - the agent, fixed arguments
                [sys.executable, "-m", "agent", "serve", "--config", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)

    async def wait_ready(self, limit_s: float = 60.0) -> float:
        """Seconds from process start to the first ``/readyz`` 200."""
        deadline = time.perf_counter() + limit_s
        async with aiohttp.ClientSession() as http:
            while time.perf_counter() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"agent exited ({self.proc.returncode}); see {self.log}")
                try:
                    async with http.get(f"{self.url}/readyz") as resp:
                        if resp.status == 200:
                            return time.perf_counter() - self.started
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.01)
        raise RuntimeError(f"agent not ready after {limit_s}s; see {self.log}")

    def restored_sessions(self) -> int | None:
        """The count in the agent's own ``sessions_restored`` log line, if it wrote one."""
        for line in self.log.read_text(errors="replace").splitlines():
            if "sessions_restored" in line:
                try:
                    return int(json.loads(line)["sessions"])
                except (ValueError, KeyError, TypeError):
                    return None
        return None

    def rss_mib(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the agent process (all its threads)."""
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


async def sign_in(agent_url: str, idp: DevIdentityProvider, tls: ssl.SSLContext,
                  username: str = USER) -> str:
    """One whole sign-in as a fresh browser would; returns the session cookie value."""
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[agent_url])
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.get(f"{agent_url}/auth/sso/start", allow_redirects=False) as resp:
            if resp.status != 302:
                raise RuntimeError(f"/auth/sso/start answered {resp.status}")
            authorize = resp.headers["Location"]
        callback = await complete_sign_in(http, authorize, username, DEMO_PASSWORD, tls)
        async with http.get(callback, allow_redirects=False) as resp:
            await resp.read()
            if resp.status != 302:
                raise RuntimeError(f"the callback answered {resp.status}")
            morsel = resp.cookies.get(COOKIE_NAME)
            if morsel is None:
                raise RuntimeError("the callback set no session cookie")
            return morsel.value
