"""URL paths the agent may send a browser to: only paths on this sensor (no open redirect).

Used for ``[server] post_login_path``, the ``next`` of a sign-in and the original URI a role
refusal names. About URLs only; file system paths never pass through here.

``local_path`` gives the one canonical form a sign-in stores and redirects to: dot segments
(also percent-encoded ones) resolved, doubled slashes collapsed, and everything outside
RFC 3986's path, query and fragment characters percent-encoded (UTF-8) — so that Unicode
look-alikes of ``/`` (``∕``, ``／``) reach the browser as escapes, never as characters some
stack might fold into a slash, and ``/.//evil.example`` becomes ``/evil.example``.
"""

from __future__ import annotations

from urllib.parse import quote

_PATH_SAFE = "/:@!$&'()*+,;=-._~%"  # RFC 3986 pchar and "/"; "%" keeps existing escapes
_QUERY_SAFE = _PATH_SAFE + "?"
_DOT = {".", "%2e"}
_DOT_DOT = {"..", ".%2e", "%2e.", "%2e%2e"}


def is_local_path(path: object) -> bool:
    """A same-site relative path: starts with one ``/``, no scheme, host, backslash or control."""
    if not isinstance(path, str) or not path.startswith("/") or len(path) > 2048:
        return False
    if path.startswith("//") or "\\" in path:
        return False
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in path):
        return False
    lowered = path.lower()
    # Encoded slashes or backslashes right after the first one turn into //host in some stacks.
    return not (lowered.startswith("/%2f") or lowered.startswith("/%5c"))


def local_path(path: object) -> str | None:
    """The canonical form of a same-site relative path (see above), or None when ``path``
    is not one, or its canonical form is not."""
    if not is_local_path(path):
        return None
    assert isinstance(path, str)
    rest, hashmark, fragment = path.partition("#")
    rest, qmark, query = rest.partition("?")
    segments: list[str] = []
    raw = rest.split("/")[1:]
    for segment in raw:
        lowered = segment.lower()
        if lowered in _DOT_DOT:
            if segments:
                segments.pop()
        elif segment and lowered not in _DOT:
            segments.append(segment)
    directory = bool(segments) and (raw[-1] == "" or raw[-1].lower() in _DOT | _DOT_DOT)
    try:
        canonical = (quote("/" + "/".join(segments) + ("/" if directory else ""), _PATH_SAFE)
                     + qmark + quote(query, _QUERY_SAFE) + hashmark + quote(fragment,
                                                                             _QUERY_SAFE))
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 for it
        return None
    return canonical if is_local_path(canonical) else None
