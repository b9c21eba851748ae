"""Fixtures of the provider's tests: a provider with four kinds of user, a cookie-keeping client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from agent.devidp import DevIdentityProvider
from tests.clock import Clock
from tests.devidp.helpers import CLIENT, LOGIN_PAGE, REDIRECT, TENANT, USERS, user


@pytest.fixture
async def idp(tmp_path: Path) -> AsyncIterator[DevIdentityProvider]:
    users = [user(**spec) for spec in USERS.values()]
    provider = DevIdentityProvider(TENANT, CLIENT, [REDIRECT, LOGIN_PAGE], users,
                                   clock=Clock(), state_dir=tmp_path)
    await provider.start()
    yield provider
    await provider.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session
