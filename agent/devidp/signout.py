"""The end-session endpoint: forget the provider's SSO session, then go back or say so."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from .authorize import SSO_COOKIE
from .endpoint import bind, endpoint
from .refresh import call_frontchannel
from .state import ProviderState


def routes(state: ProviderState) -> list[web.RouteDef]:
    return [bind(state, "*", "/{tenant}/oauth2/v2.0/logout", logout)]


@endpoint("logout", tenant="html")
async def logout(state: ProviderState, request: web.Request) -> web.StreamResponse:
    """302 to ``post_logout_redirect_uri`` (with ``state``) when registered, else a page."""
    params = dict(request.query)
    if request.method == "POST":
        params.update({k: str(v) for k, v in (await request.post()).items()})
    cookie = request.cookies.get(SSO_COOKIE)
    ended = state.sso_sessions.pop(cookie, None) if cookie else None
    if ended is not None:  # what the sign-out page's frames would load in a browser
        await call_frontchannel(state, [ended.session_state])
    target = params.get("post_logout_redirect_uri")
    response: web.StreamResponse
    if target and target in state.redirect_uris:
        if params.get("state"):
            sep = "&" if "?" in target else "?"
            target = f"{target}{sep}{urlencode({'state': params['state']})}"
        response = web.Response(status=302, headers={"Location": target})
    else:
        response = state.render("signed_out.html")
    response.del_cookie(SSO_COOKIE, path="/", secure=True, httponly=True, samesite="None")
    return response
