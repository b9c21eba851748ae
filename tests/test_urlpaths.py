"""Where the agent may send a browser: only paths on this sensor."""

from __future__ import annotations

import pytest

from agent.urlpaths import is_local_path


class TestLocalPath:
    @pytest.mark.parametrize("path", ["/", "/overview", "/a/b?c=d", "/devices#x"])
    def test_accepted(self, path: str) -> None:
        """Same-site relative paths are accepted."""
        assert is_local_path(path)

    @pytest.mark.parametrize("path", ["//evil.example", "/\\evil.example", "https://evil.example",
                                      "javascript:alert(1)", "evil", "", "/%2f%2fevil.example",
                                      "/%5Cevil.example", "/\tevil", "/a\nb", None])
    def test_refused(self, path: object) -> None:
        """Anything that can leave the site is refused."""
        assert not is_local_path(path)
