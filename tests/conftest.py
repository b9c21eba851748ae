"""Fixtures every test package shares."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.harness import Stack, make_stack


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """The local identity provider and the agent on loopback, ready, with the demo users."""
    s = await make_stack(tmp_path)
    try:
        yield s
    finally:
        await s.close()
