"""Who is asking: the client address every handler audits and rate-limits by."""

from __future__ import annotations

from aiohttp import web

from . import keys


def client_address(request: web.Request) -> str:
    """The TCP peer, or the address a trusted proxy forwarded (see agent/clientaddr.py)."""
    forwarded = request.headers.getall("X-Forwarded-For", None)
    return request.app[keys.PROXY_TRUST].client(
        request.remote, ",".join(forwarded) if forwarded else None)
