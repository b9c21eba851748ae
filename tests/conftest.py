"""Fixtures every test package shares."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.devidp import DevIdentityProvider, demo_users
from tests.harness import (
    CLIENT,
    ROLE_GROUPS,
    TENANT,
    Stack,
    StackFactory,
    make_stack,
    short_intervals,
)


@pytest.fixture
async def new_stack(tmp_path: Path) -> AsyncIterator[StackFactory]:
    """Makes stacks with ``make_stack``'s options; closes every one it made after the test."""
    made: list[Stack] = []

    async def make(path: Path | None = None, **options: Any) -> Stack:
        stack = await make_stack(path or tmp_path, **options)
        made.append(stack)
        return stack

    try:
        yield make
    finally:
        for stack in reversed(made):
            await stack.close()


@pytest.fixture
async def stack(new_stack: StackFactory) -> Stack:
    """The local identity provider and the agent on loopback, ready, with the demo users."""
    return await new_stack()


@pytest.fixture
async def idp() -> AsyncIterator[DevIdentityProvider]:
    """The local identity provider with the demo users, no redirect URIs registered (the
    deployment and behind-nginx tests register their own). Sub-folders may override it."""
    provider = DevIdentityProvider(tenant_id=TENANT, client_id=CLIENT, redirect_uris=[],
                                   users=demo_users(ROLE_GROUPS))
    await provider.start()
    yield provider
    await provider.stop()


@pytest.fixture
async def rstack(tmp_path: Path) -> AsyncIterator[Stack]:
    """The stack with a 10 s re-validation interval and a 1 min grace."""
    s = await make_stack(tmp_path, config=short_intervals)
    try:
        yield s
    finally:
        await s.close()
