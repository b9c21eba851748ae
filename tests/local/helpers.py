"""On-premises accounts for the tests: an accounts file, a stack that reads it, the form."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from agent.devidp import ENDPOINTS, Fault
from agent.local.accounts import Account, write_accounts
from agent.local.passwords import hash_password
from tests.harness import Browser, Stack, make_stack

LOCAL_ADMIN = "breakglass"
LOCAL_PASSWORD = "amber-falcon-tunnel-42"
CSRF_COOKIE = "__Host-local_signin"
_TOKEN = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


def accounts_file(path: Path, *accounts: tuple[str, str, str]) -> Path:
    """Write ``(name, role, password)`` accounts as ``local-user add`` would."""
    write_accounts(path, {name: Account.create(name, role, "Break", "Glass",
                                               hash_password(password))
                          for name, role, password in accounts})
    return path


def provider_down(stack: Stack) -> None:
    """Every endpoint of the identity provider answers 503."""
    for name in ENDPOINTS:
        stack.idp.faults[name] = Fault(status=503)


def provider_back(stack: Stack) -> None:
    stack.idp.faults.clear()


async def local_stack(tmp_path: Path, *, down: bool = True, policy: str | None = None,
                      accounts: tuple[tuple[str, str, str], ...] = (
                          (LOCAL_ADMIN, "admin", LOCAL_PASSWORD),),
                      probe_interval: float | None = None,
                      edit: Callable[[dict[str, Any]], None] | None = None) -> Stack:
    """The stack with an accounts file; ``down``: the provider is down before the agent starts."""
    path = accounts_file(tmp_path / "local-accounts", *accounts)

    def configure(data: dict[str, Any]) -> None:
        data["local"] = {"accounts_file": str(path), **({"sign_in": policy} if policy else {})}
        if edit is not None:
            edit(data)

    stack = await make_stack(tmp_path, config=configure, start=False)
    if probe_interval is not None:
        stack.app_options["probe_interval"] = probe_interval
    if down:
        provider_down(stack)
    await stack.start_agent(wait_ready=not down and not stack.settings.sso_off)
    return stack


def csrf_token(page: str) -> str | None:
    match = _TOKEN.search(page)
    return match.group(1) if match else None


def has_form(page: str) -> bool:
    return 'action="/auth/local/sign-in"' in page


async def sign_in_page(browser: Browser, path: str = "/login") -> str:
    resp = await browser.get(path)
    assert 200 == resp.status
    return await resp.text()


async def local_sign_in(browser: Browser, name: str = LOCAL_ADMIN,
                        password: str = LOCAL_PASSWORD, token: str | None = None,
                        **extra: str) -> aiohttp.ClientResponse:
    """Open the sign-in page (for its CSRF token, unless given) and post the form."""
    if token is None:
        token = csrf_token(await sign_in_page(browser)) or ""
    return await browser.post("/auth/local/sign-in", data={
        "username": name, "password": password, "csrf_token": token, **extra})
