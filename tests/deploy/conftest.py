"""Fixtures of the deployment tests: a notify socket (the provider is tests/conftest.py's)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.deploy.support import NotifySocket


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()
