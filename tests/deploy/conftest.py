"""Fixtures of the deployment tests: the local identity provider and a notify socket."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from agent.devidp import DevIdentityProvider, demo_users
from tests.deploy.support import NotifySocket
from tests.harness import CLIENT, ROLE_GROUPS, TENANT


@pytest.fixture
async def idp() -> AsyncIterator[DevIdentityProvider]:
    provider = DevIdentityProvider(tenant_id=TENANT, client_id=CLIENT, redirect_uris=[],
                                   users=demo_users(ROLE_GROUPS))
    await provider.start()
    yield provider
    await provider.stop()


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()
