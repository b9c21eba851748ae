"""A Microsoft Graph subset: ``/v1.0/me``, group membership checks and OIDC userinfo."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
from aiohttp import web

from .endpoint import Handler, bind, endpoint
from .faults import graph_error
from .minting import GRAPH_APP_ID, pairwise_sub
from .state import ProviderState
from .users import DevUser

MAX_CHECK_GROUP_IDS = 20
_GRAPH_AUDIENCES = [GRAPH_APP_ID, "https://graph.microsoft.com"]
_USER_SCOPES = frozenset({"User.Read", "User.ReadBasic.All", "User.Read.All",
                          "Directory.Read.All"})
_GROUP_SCOPES = frozenset({"GroupMember.Read.All", "Group.Read.All", "Directory.Read.All"})
_DEFAULT_SELECT = (
    "businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
    "officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id",
)

UserHandler = Callable[[ProviderState, web.Request, DevUser, dict[str, Any]],
                       Awaitable[web.Response]]


def graph_endpoint(name: str, scopes: frozenset[str]) -> Callable[[UserHandler], Handler]:
    """The shared preamble (no tenant in Graph paths), then the caller's bearer token.

    The handler gets the token's user and claims; a missing, invalid or expired token, or
    one without any of ``scopes`` (when the provider enforces scopes), is answered here.
    """

    def decorate(handler: UserHandler) -> Handler:
        @endpoint(name, tenant=None)
        @functools.wraps(handler)
        async def authenticated(state: ProviderState, request: web.Request
                                ) -> web.StreamResponse:
            checked = _authenticate(state, request, scopes)
            if isinstance(checked, web.Response):
                return checked
            user, claims = checked
            return await handler(state, request, user, claims)

        return authenticated

    return decorate


def routes(state: ProviderState) -> list[web.RouteDef]:
    """``/me`` and ``/users/{user}`` (by object id or UPN) for the group calls."""
    return [
        bind(state, "GET", "/v1.0/me", _me),
        *(bind(state, "POST", f"{who}/{call}", handler)
          for who in ("/v1.0/me", "/v1.0/users/{user}")
          for call, handler in (("checkMemberGroups", _check_member_groups),
                                ("getMemberObjects", _get_member_objects))),
        *(bind(state, method, "/oidc/userinfo", _userinfo) for method in ("GET", "POST")),
    ]


def _unauthorized(state: ProviderState, message: str) -> web.Response:
    challenge = (
        f'Bearer realm="", authorization_uri="{state.authority}/oauth2/authorize", '
        f'client_id="{GRAPH_APP_ID}"'
    )
    return graph_error(401, "InvalidAuthenticationToken", message, state.clock(),
                       {"WWW-Authenticate": challenge})


def _authenticate(state: ProviderState, request: web.Request, scopes: frozenset[str]
                  ) -> web.Response | tuple[DevUser, dict[str, Any]]:
    """Verify the bearer access token (signature, audience, expiry by the IdP's clock)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return _unauthorized(state, "Access token is empty.")
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        key = state.known_keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            return _unauthorized(state, "Access token validation failure. Invalid signing key.")
        claims: dict[str, Any] = jwt.decode(
            token, key.public_key, algorithms=["RS256"], audience=_GRAPH_AUDIENCES,
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                     "require": ["exp", "aud", "oid"]},
        )
    except jwt.InvalidAudienceError:
        return _unauthorized(state, "Access token validation failure. Invalid audience.")
    except jwt.PyJWTError:
        return _unauthorized(state, "Access token validation failure.")
    if not isinstance(claims["exp"], int | float) or claims["exp"] <= state.clock():
        return _unauthorized(state, "Lifetime validation failed, the token is expired.")
    if state.enforce_graph_scopes and scopes and not scopes & set(str(claims.get("scp")).split()):
        return graph_error(403, "Authorization_RequestDenied",
                           "Insufficient privileges to complete the operation.", state.clock())
    user = state.user_by_oid(str(claims["oid"]))
    if user is None:
        return graph_error(404, "Request_ResourceNotFound",
                           f"Resource '{claims['oid']}' does not exist or one of its queried "
                           "reference-property objects are not present.", state.clock())
    return user, claims


def user_resource(user: DevUser) -> dict[str, Any]:
    """The user as Graph returns it (missing attributes are ``null``)."""
    return {
        "businessPhones": [],
        "displayName": user.name,
        "givenName": user.given_name,
        "jobTitle": None,
        "mail": user.upn,
        "mobilePhone": None,
        "officeLocation": None,
        "preferredLanguage": None,
        "surname": user.family_name,
        "userPrincipalName": user.upn,
        "id": user.oid,
        "accountEnabled": True,
        "onPremisesSamAccountName": None,
    }


@graph_endpoint("graph_me", _USER_SCOPES)
async def _me(state: ProviderState, request: web.Request, user: DevUser,
              claims: dict[str, Any]) -> web.Response:
    resource = user_resource(user)
    select = request.query.get("$select")
    base = f"{state.graph_url}/v1.0/$metadata#users"
    if not select:
        body = {"@odata.context": f"{base}/$entity", **{k: resource[k] for k in _DEFAULT_SELECT}}
        return web.json_response(body)
    by_lower = {k.lower(): k for k in resource}
    names = [n.strip() for n in select.split(",") if n.strip()]
    body = {"@odata.context": f"{base}({','.join(names)})/$entity"}
    for name in names:
        canonical = by_lower.get(name.lower())
        if canonical is None:
            return graph_error(400, "BadRequest", f"Could not find a property named '{name}' on "
                               "type 'microsoft.graph.user'.", state.clock())
        body[canonical] = resource[canonical]
    return web.json_response(body)


async def _json_body(state: ProviderState, request: web.Request
                     ) -> dict[str, Any] | web.Response:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return graph_error(400, "BadRequest", "Unable to read JSON request payload. Please ensure "
                           "Content-Type header is set and payload is of valid JSON format.",
                           state.clock())
    return body


def _target_user(state: ProviderState, request: web.Request, caller: DevUser
                 ) -> DevUser | web.Response:
    wanted = request.match_info.get("user")
    if wanted is None:
        return caller
    found = state.user_by_oid(wanted) or next(
        (u for u in state.users if u.upn and u.upn.lower() == wanted.lower()), None)
    if found is None:
        return graph_error(404, "Request_ResourceNotFound", f"Resource '{wanted}' does not "
                           "exist or one of its queried reference-property objects are not "
                           "present.", state.clock())
    return found


MembershipAnswer = Callable[[ProviderState, dict[str, Any], DevUser], list[str] | web.Response]


def membership_endpoint(name: str) -> Callable[[MembershipAnswer], Handler]:
    """A group call: the JSON body and the user asked about (``/me`` or ``/users/{id}``) in,
    a collection of group ids (or an error) out."""

    def decorate(answer: MembershipAnswer) -> Handler:
        @graph_endpoint(name, _GROUP_SCOPES)
        @functools.wraps(answer)
        async def handler(state: ProviderState, request: web.Request, caller: DevUser,
                          claims: dict[str, Any]) -> web.Response:
            body = await _json_body(state, request)
            if isinstance(body, web.Response):
                return body
            target = _target_user(state, request, caller)
            if isinstance(target, web.Response):
                return target
            value = answer(state, body, target)
            if isinstance(value, web.Response):
                return value
            return web.json_response({
                "@odata.context": f"{state.graph_url}/v1.0/$metadata#Collection(Edm.String)",
                "value": value,
            })

        return handler

    return decorate


@membership_endpoint("graph_check_member_groups")
def _check_member_groups(state: ProviderState, body: dict[str, Any], target: DevUser
                         ) -> list[str] | web.Response:
    ids = body.get("groupIds")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return graph_error(400, "Request_BadRequest", "Invalid value specified for property "
                           "'groupIds' of resource 'User'.", state.clock())
    if len(ids) > MAX_CHECK_GROUP_IDS:
        return graph_error(400, "Request_BadRequest", "Number of groupIds exceeds the maximum "
                           f"of {MAX_CHECK_GROUP_IDS}.", state.clock())
    member_of = {g.lower() for g in target.groups}
    return [i for i in ids if i.lower() in member_of]


@membership_endpoint("graph_get_member_objects")
def _get_member_objects(state: ProviderState, body: dict[str, Any], target: DevUser
                        ) -> list[str] | web.Response:
    if not isinstance(body.get("securityEnabledOnly"), bool):
        return graph_error(400, "Request_BadRequest", "The request body must contain "
                           "'securityEnabledOnly'.", state.clock())
    return list(target.groups)


@graph_endpoint("userinfo", frozenset())
async def _userinfo(state: ProviderState, request: web.Request, user: DevUser,
                    claims: dict[str, Any]) -> web.Response:
    info: dict[str, Any] = {"sub": pairwise_sub(state, user.oid), "name": user.name}
    if user.family_name is not None:
        info["family_name"] = user.family_name
    if user.given_name is not None:
        info["given_name"] = user.given_name
    if user.upn is not None:
        info["email"] = user.upn
    return web.json_response(info)
