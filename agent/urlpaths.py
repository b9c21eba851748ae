"""URL paths the agent may send a browser to: only paths on this sensor (no open redirect).

Used for ``[server] post_login_path``, the ``next`` of a sign-in and the original URI a role
refusal names. About URLs only; file system paths never pass through here.
"""

from __future__ import annotations


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
