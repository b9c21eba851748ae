"""The code stays lint-clean and type-checks (settings in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,  # noqa: S603 - fixed argv, no shell
                          text=True, timeout=300, check=False)


class TestHygiene:
    def test_ruff(self) -> None:
        """ruff finds nothing in agent/, tests/ and bench/."""
        result = run("ruff", "check", "agent", "tests", *(["bench"] if (ROOT / "bench").is_dir()
                                                          else []))
        assert 0 == result.returncode, result.stdout + result.stderr

    def test_mypy_strict(self) -> None:
        """mypy --strict (pyproject's settings) finds nothing in agent/."""
        result = run("mypy", "agent")
        assert 0 == result.returncode, result.stdout + result.stderr
