"""Fixtures of the deployment tests: a notify socket, a proxy that asks for a login (the
provider is tests/conftest.py's)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.deploy.support import PROXY_LOGIN, ConnectProxy, NotifySocket


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


@pytest.fixture
async def login_proxy() -> AsyncIterator[ConnectProxy]:
    """A CONNECT proxy that answers 407 without ``PROXY_LOGIN`` (or with a wrong one)."""
    p = ConnectProxy(login=PROXY_LOGIN)
    await p.start()
    yield p
    await p.stop()
