"""A missing tool skips a test locally and fails it in CI (``.ci/run`` sets ``CI=true``)."""

from __future__ import annotations

import pytest

from tests.deploy.support import REPO
from tests.needs import need


class TestNeed:
    def test_missing_tool_skips_locally(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without CI a missing tool is a skip with the reason."""
        monkeypatch.delenv("CI", raising=False)
        with pytest.raises(pytest.skip.Exception, match="lintian is not installed"):
            need(None, "lintian is not installed")

    def test_missing_tool_fails_in_ci(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With CI set a missing tool fails the test instead of skipping it."""
        monkeypatch.setenv("CI", "true")
        with pytest.raises(pytest.fail.Exception, match="lintian is not installed"):
            need(None, "lintian is not installed")

    def test_present_tool_runs(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A tool that is there changes nothing, in CI or not."""
        monkeypatch.setenv("CI", "true")
        need("/usr/bin/lintian", "lintian is not installed")

    def test_ci_script_sets_ci(self) -> None:
        """.ci/run exports CI=true itself, whatever the CI system sets."""
        assert "export CI=true" in (REPO / ".ci" / "run").read_text().splitlines()
