"""Front-channel sign-out and the sign-in prompt after a sign-out.

When a user signs out at Entra ID, its sign-out page loads each application's registered
"Front-channel logout URL" in a hidden frame with the ``sid`` of the Entra session. The agent
ends the sessions that sign-in created (``sso_logout`` with ``via=frontchannel``) and answers
an empty page that only the authority (and its sign-out page's origin) may frame. An unknown
or missing ``sid`` changes nothing and gets the same answer.

A browser that signed out here carries a marker cookie; its next SSO sign-in asks Entra ID
to let the person pick the account (``prompt=select_account``), so on a shared control-room
PC operator B is not signed in as operator A by Entra's own session.
"""

from __future__ import annotations

from typing import TypeGuard
from urllib.parse import urlsplit

from aiohttp import web

from . import keys
from .peer import client_address

FRONTCHANNEL_LOGOUT_PATH = "/auth/sso/frontchannel-logout"
SIGNED_OUT_COOKIE = "__Host-sso_signed_out"
SIGNED_OUT_MAX_AGE = 30 * 86400  # a shared PC may sit at the sign-in page for days


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def _sid_ok(sid: object) -> TypeGuard[str]:
    return isinstance(sid, str) and 0 < len(sid) <= 128 and sid.isprintable()


def frame_policy(request: web.Request) -> str:
    """CSP for the empty answer: framable by the authority host and Entra's sign-out page."""
    settings = request.app[keys.SETTINGS]
    ancestors = [_origin(settings.entra.authority_host)]
    metadata = request.app[keys.TENANT].metadata
    if metadata is not None and metadata.end_session_endpoint:
        ancestors.append(_origin(metadata.end_session_endpoint))
    allowed = " ".join(dict.fromkeys(a for a in ancestors if a)) or "'none'"
    return f"default-src 'none'; frame-ancestors {allowed}; base-uri 'none'"


async def frontchannel_logout(request: web.Request) -> web.Response:
    """``GET /auth/sso/frontchannel-logout?sid=...``: end the sessions of that sign-in."""
    sid = request.query.get("sid")
    if _sid_ok(sid):
        store = request.app[keys.SESSIONS]
        for session in store.with_sid(sid):
            await store.end(session, "signed_out_at_entra", event="sso_logout",
                            via="frontchannel", source_ip=client_address(request))
    return web.Response(status=200, body=b"", content_type="text/html",
                        headers={"Content-Security-Policy": frame_policy(request)})
