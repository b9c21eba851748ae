"""The real stack on loopback: the local Entra-like provider over TLS and the agent over HTTP.

``Stack`` starts both with an injected clock; ``Browser`` is a cookie-keeping HTTP client that
signs in through the provider's real pages, as a person's browser would.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiohttp import web

from agent.devidp import DevIdentityProvider, DevUser, demo_users
from agent.settings import Settings, settings_from_mapping
from agent.web.app import create_app
from agent.web.refusal_pages import REFUSED_PATH
from agent.web.server import FrontDoorRunner
from tests.clock import Clock
from tests.devidp_driver import complete_sign_in

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "0b5b0b4e-3c8b-4bfb-8f0e-6c0f1c2d3e4f"
ROLE_GROUPS = {
    "admin": ["aaaaaaaa-0000-4000-8000-000000000001"],
    "security_analyst": ["bbbbbbbb-0000-4000-8000-000000000002"],
    "read_only": ["cccccccc-0000-4000-8000-000000000003",
                  "cccccccc-0000-4000-8000-000000000004"],
}
PASSWORD = "Passw0rd!"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def write_config(path: Path, data: dict[str, Any]) -> Path:
    """Write ``agent_config``-shaped data as the TOML file the agent reads."""
    lines: list[str] = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# Below Linux's ephemeral range (32768-60999): a port the kernel hands out for ":0" can be taken
# by one of the thousands of client sockets the floods open between this check and the
# server's bind ("address already in use"); a port below the range is never a client's.
_PORTS = range(20000, 32768)
_handed: set[int] = set()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on, not handed out before in this run."""
    if len(_handed) > len(_PORTS) // 2:
        _handed.clear()
    while True:
        port = random.choice(_PORTS)
        if port in _handed:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed.add(port)
        return port


def agent_config(idp: DevIdentityProvider, port: int, state_dir: Path,
                 **overrides: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {
        "server": {"listen": f"127.0.0.1:{port}", "sensor_name": "Sensor 01 · Plant A"},
        "entra": {"tenant_id": TENANT, "client_id": CLIENT,
                  "redirect_uri": f"http://127.0.0.1:{port}/auth/sso/callback",
                  "authority_host": idp.authority_host, "graph_url": idp.graph_url,
                  "ca_bundle": str(idp.ca_file), "timeout": "3s"},
        "roles": {k: list(v) for k, v in ROLE_GROUPS.items()},
        "session": {"state_dir": str(state_dir)},
    }
    for section, values in overrides.items():
        config.setdefault(section, {}).update(values)
    return config


@dataclass
class Stack:
    idp: DevIdentityProvider
    settings: Settings
    clock: Clock
    port: int
    runner: web.AppRunner | None = None
    app: web.Application | None = None
    browsers: list[Browser] = field(default_factory=list)
    app_options: dict[str, Any] = field(default_factory=dict)  # more create_app arguments

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start_agent(self, settings: Settings | None = None, wait_ready: bool = True) -> None:
        self.settings = settings or self.settings
        self.app = create_app(self.settings, clock=self.clock, console=True,
                              **self.app_options)
        self.runner = FrontDoorRunner(self.app, shutdown_timeout=1)  # as serve runs it
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        if wait_ready:
            await self.wait_ready()

    async def stop_agent(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as s:
            while True:
                async with s.get(f"{self.url}/readyz") as resp:
                    if resp.status == 200:
                        return
                    reason = await resp.text()
                if time.monotonic() > deadline:
                    raise AssertionError(f"agent not ready: {reason}")
                await asyncio.sleep(0.05)

    def browser(self) -> Browser:
        b = Browser(self)
        self.browsers.append(b)
        return b

    async def close(self) -> None:
        for b in self.browsers:
            await b.close()
        await self.stop_agent()
        await self.idp.stop()


class Browser:
    """Keeps cookies like a browser (Secure cookies count on loopback) and never auto-follows."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[stack.url])
        self.ssl = ssl.create_default_context(cafile=str(stack.idp.ca_file))
        self.http = aiohttp.ClientSession(cookie_jar=jar)

    async def close(self) -> None:
        await self.http.close()

    async def get(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        """One request, redirects not followed, except the callback's to its refusal page
        (``/auth/sso/refused``): a browser lands there, and that page is the answer."""
        url = path if path.startswith("http") else self.stack.url + path
        resp = await self.http.get(url, allow_redirects=False, ssl=self.ssl, **kwargs)
        await resp.read()
        if resp.status == 303 and resp.headers.get("Location") == REFUSED_PATH:
            return await self.get(REFUSED_PATH)
        return resp

    async def post(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        resp = await self.http.post(self.stack.url + path, allow_redirects=False, **kwargs)
        await resp.read()
        return resp

    async def start(self, next_path: str | None = None) -> str:
        """Click SSO Sign-in; return the authorization URL the agent redirected to."""
        params = {"next": next_path} if next_path else None
        resp = await self.get("/auth/sso/start", params=params)
        assert 302 == resp.status, await resp.text()
        return resp.headers["Location"]

    async def authenticate(self, authorize_url: str, username: str,
                           password: str = PASSWORD) -> str:
        """Sign in at the provider's pages; return the redirect back to the agent."""
        return await complete_sign_in(self.http, authorize_url, username, password, self.ssl)

    async def sign_in(self, username: str, next_path: str | None = None,
                      password: str = PASSWORD) -> aiohttp.ClientResponse:
        """The whole journey up to the agent's answer to the callback."""
        callback = await self.authenticate(await self.start(next_path), username, password)
        return await self.get(callback)

    def cookie(self, name: str) -> str | None:
        for morsel in self.http.cookie_jar:
            if morsel.key == name:
                return morsel.value
        return None


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


class StackFactory(Protocol):
    """``await new_stack(**options)``: ``harness.make_stack`` with the test's ``tmp_path``."""

    def __call__(self, path: Path | None = None, **options: Any) -> Awaitable[Stack]: ...


async def make_stack(tmp_path: Path, users: list[DevUser] | None = None,
                     idp_options: dict[str, Any] | None = None,
                     config: Callable[[dict[str, Any]], None] | None = None,
                     start: bool = True) -> Stack:
    clock = Clock()
    port = free_port()
    idp = DevIdentityProvider(
        tenant_id=TENANT, client_id=CLIENT,
        redirect_uris=[f"http://127.0.0.1:{port}/auth/sso/callback"],
        users=users if users is not None else demo_users(ROLE_GROUPS), clock=clock,
        **{"frontchannel_logout_url": f"http://127.0.0.1:{port}/auth/sso/frontchannel-logout",
           **(idp_options or {})})
    await idp.start()
    data = agent_config(idp, port, tmp_path / "state")
    if config is not None:
        config(data)
    stack = Stack(idp=idp, settings=settings_from_mapping(data), clock=clock, port=port)
    if start:
        await stack.start_agent()
    return stack


def short_intervals(data: dict[str, Any]) -> None:
    """A configuration edit: re-validation every 10 s, 1 min of grace."""
    data["session"].update(revalidate_interval="10s", revalidate_grace="1m")
