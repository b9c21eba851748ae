"""The watched stack (metrics served) and the full-disk tests' tmpfs fixture."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.metrics.support import Watched, watched_stack
from tests.security.test_full_disk import small_fs

__all__ = ["small_fs", "watched"]


@pytest.fixture
async def watched(tmp_path: Path) -> AsyncIterator[Watched]:
    """The stack with its agent's metrics served on [metrics] listen."""
    w = await watched_stack(tmp_path)
    try:
        yield w
    finally:
        await w.close()
