"""Shared fixtures and helpers for the attack matrix, faults, restarts and floods."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs
from yarl import URL

from agent.sessions.store import COOKIE_NAME
from agent.web import keys
from tests.harness import Browser, Stack, StackFactory
from tests.security.subprocess_agent import AgentProcess

ADMIN = "admin@contoso.example"
READER = "reader@contoso.example"


@pytest.fixture
async def proc_stack(tmp_path: Path, new_stack: StackFactory
                     ) -> AsyncIterator[tuple[Stack, AgentProcess]]:
    """The provider in-process, the agent as its own process (not started yet)."""
    stack = await new_stack(start=False)
    agent = AgentProcess(stack, tmp_path)
    try:
        yield stack, agent
    finally:
        await agent.stop()


@dataclass
class Outcome:
    """The agent's answer to a callback, and what the audit log said about it."""

    status: int
    text: str
    headers: dict[str, str]
    logs: list[MutableMapping[str, Any]]
    has_session: bool

    def events(self, name: str) -> list[MutableMapping[str, Any]]:
        return [e for e in self.logs if e["event"] == name]

    @property
    def refused_reasons(self) -> list[str]:
        return [e["reason"] for e in self.events("sso_login_refused")]


async def session_works(browser: Browser) -> bool:
    return 200 == (await browser.get("/auth/check")).status


async def attempt(stack: Stack, username: str = ADMIN, browser: Browser | None = None,
                  next_path: str | None = None) -> Outcome:
    """Sign in through the real provider pages; record the answer and the audit events."""
    browser = browser or stack.browser()
    with capture_logs() as logs:
        resp = await browser.sign_in(username, next_path=next_path)
        text = await resp.text()
    return Outcome(resp.status, text, dict(resp.headers), logs, await session_works(browser))


async def callback(stack: Stack, browser: Browser, url: str) -> Outcome:
    """Deliver an authorization response (already built) to the agent from ``browser``."""
    with capture_logs() as logs:
        resp = await browser.get(url)
        text = await resp.text()
    return Outcome(resp.status, text, dict(resp.headers), logs, await session_works(browser))


def plant_cookie(stack: Stack, browser: Browser, value: str, name: str = COOKIE_NAME) -> None:
    browser.http.cookie_jar.update_cookies({name: value}, response_url=URL(stack.url))


async def fresh_client() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())


NOT_LOADED_YET = "discovery document not loaded yet"  # TenantMetadata's first not-ready reason


async def discovery_answered(stack: Stack, timeout: float = 15.0) -> None:
    """Wait until the agent has taken in its first discovery answer (loaded, or not ready
    with the reason why): what a test of that answer waits for, instead of a fixed sleep."""
    assert stack.app is not None
    tenant = stack.app[keys.TENANT]
    for _ in range(int(timeout / 0.02)):
        if tenant.not_ready_reason != NOT_LOADED_YET:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the agent never took in a discovery answer")
