"""Tools the tests need from the machine (Chromium, nginx, dpkg-deb, lintian, systemd-analyze,
a recent kernel): locally a missing one skips the test; with ``CI`` set it fails it, so CI never
passes by skipping. ``.ci/run`` sets ``CI=true`` itself.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(reason: str) -> NoReturn:
    """Skip locally; in CI a missing tool is a failure, never a silent skip."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: this test must run)")
    pytest.skip(reason)


def need(present: object, reason: str) -> None:
    """Carry on when ``present`` is truthy; otherwise ``unavailable(reason)``."""
    if not present:
        unavailable(reason)
