"""Where the agent may send a browser: only paths on this sensor."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.urlpaths import is_local_path, local_path


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


class TestCanonicalPath:
    @pytest.mark.parametrize(("given", "canonical"), [
        ("/", "/"), ("/overview", "/overview"), ("/a/b/", "/a/b/"), ("/a/b%20c", "/a/b%20c"),
        ("/.//evil.example", "/evil.example"), ("/a/../../b", "/b"), ("/a/.", "/a/"),
        ("/a/%2E%2e/b", "/b"), ("/\u2215\u2215evil.example", "/%E2%88%95%E2%88%95evil.example"),
        ("/x?next=//evil#\u00e9", "/x?next=//evil#%C3%A9"), ("/..", "/"),
    ])
    def test_canonical_forms(self, given: str, canonical: str) -> None:
        """Dot segments resolved, doubled slashes collapsed, non-ASCII percent-encoded."""
        assert canonical == local_path(given)

    @pytest.mark.parametrize("given", ["//evil.example", "/x/..//%2f%2fevil", "/a/../%5cevil",
                                       "/\ud800", None])
    def test_what_has_no_canonical_local_form(self, given: object) -> None:
        """Refused as given, or refused once canonical (an encoded slash left in front)."""
        assert local_path(given) is None

    @given(st.text(max_size=40))
    def test_the_canonical_form_is_local_ascii_and_stable(self, tail: str) -> None:
        """Whatever follows the first slash: the canonical form, if any, is a local ASCII
        path without doubled slashes or dot segments, and canonical again."""
        canonical = local_path("/" + tail)
        if canonical is not None:
            path = canonical.split("?", 1)[0].split("#", 1)[0]
            assert is_local_path(canonical) and canonical.isascii()
            assert "//" not in path and "/./" not in path + "/" and "/../" not in path + "/"
            assert canonical == local_path(canonical)
