"""One name for the sign-in: ``redirect_uri``'s scheme and host.

The browser binding cookie of a sign-in lives on the host the sign-in started on, and Entra
ID sends the browser back to ``redirect_uri``. A sign-in started under another name (the
sensor's IP address, ``localhost``, a second DNS name) would end in "started in another
browser". So ``/login`` and ``/auth/sso/start`` first send such a browser to the same path and
query under ``redirect_uri``'s scheme and host.

The host is the request's ``Host`` (nginx's snippet passes ``$host``; a forged one only
sends that client to the configured address). The scheme counts only when it is known:
``X-Forwarded-Proto`` from a trusted proxy, or TLS the agent serves itself. A proxy that
sends neither cannot loop a browser between http and https. Ports are not compared: nginx's
``$host`` carries none, and cookies do not depend on them.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from ..settings import Settings


def host_name(header: str | None) -> str:
    """``"Sensor-01.example:8443"`` → ``"sensor-01.example"``; ``"[::1]:80"`` → ``"::1"``."""
    if not header:
        return ""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else ""
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def elsewhere(request: web.Request, settings: Settings,
              from_trusted_proxy: bool) -> str | None:
    """The URL under ``redirect_uri``'s name when this request came under another; else None."""
    target = urlsplit(settings.entra.redirect_uri)
    host = host_name(request.headers.get("Host"))
    if not host or not target.hostname:
        return None
    scheme = None
    if from_trusted_proxy and request.headers.get("X-Forwarded-Proto"):
        scheme = request.headers["X-Forwarded-Proto"].split(",", 1)[0].strip().lower()
    elif request.secure:
        scheme = "https"
    if host == target.hostname.lower() and scheme in (None, target.scheme):
        return None
    return settings.entra.origin + request.raw_path
