"""A Microsoft Graph subset: ``/v1.0/me``, group membership checks and OIDC userinfo."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jwt
from aiohttp import web

from .faults import graph_error
from .tokens import GRAPH_APP_ID, pairwise_sub

if TYPE_CHECKING:
    from .server import DevIdentityProvider
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

Handler = Any  # the handlers below: (idp, request, user, claims) -> Response


def routes(idp: DevIdentityProvider) -> list[web.RouteDef]:
    def wrap(name: str, handler: Handler, scopes: frozenset[str]) -> Handler:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            idp.requests[name] += 1
            if (faulted := await idp.faults.apply(name)) is not None:
                return faulted
            checked = _authenticate(idp, request, scopes)
            if isinstance(checked, web.Response):
                return checked
            user, claims = checked
            response: web.StreamResponse = await handler(idp, request, user, claims)
            return response

        return endpoint

    members = wrap("graph_check_member_groups", _check_member_groups, _GROUP_SCOPES)
    objects = wrap("graph_get_member_objects", _get_member_objects, _GROUP_SCOPES)
    userinfo = wrap("userinfo", _userinfo, frozenset())
    return [
        web.get("/v1.0/me", wrap("graph_me", _me, _USER_SCOPES)),
        web.post("/v1.0/me/checkMemberGroups", members),
        web.post("/v1.0/users/{user}/checkMemberGroups", members),
        web.post("/v1.0/me/getMemberObjects", objects),
        web.post("/v1.0/users/{user}/getMemberObjects", objects),
        web.get("/oidc/userinfo", userinfo),
        web.post("/oidc/userinfo", userinfo),
    ]


def _unauthorized(idp: DevIdentityProvider, message: str) -> web.Response:
    challenge = (
        f'Bearer realm="", authorization_uri="{idp.authority}/oauth2/authorize", '
        f'client_id="{GRAPH_APP_ID}"'
    )
    return graph_error(401, "InvalidAuthenticationToken", message, idp.clock(),
                       {"WWW-Authenticate": challenge})


def _authenticate(idp: DevIdentityProvider, request: web.Request, scopes: frozenset[str]
                  ) -> web.Response | tuple[DevUser, dict[str, Any]]:
    """Verify the bearer access token (signature, audience, expiry by the IdP's clock)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return _unauthorized(idp, "Access token is empty.")
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        key = idp.known_keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            return _unauthorized(idp, "Access token validation failure. Invalid signing key.")
        claims: dict[str, Any] = jwt.decode(
            token, key.public_key, algorithms=["RS256"], audience=_GRAPH_AUDIENCES,
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                     "require": ["exp", "aud", "oid"]},
        )
    except jwt.InvalidAudienceError:
        return _unauthorized(idp, "Access token validation failure. Invalid audience.")
    except jwt.PyJWTError:
        return _unauthorized(idp, "Access token validation failure.")
    if not isinstance(claims["exp"], int | float) or claims["exp"] <= idp.clock():
        return _unauthorized(idp, "Lifetime validation failed, the token is expired.")
    if idp.enforce_graph_scopes and scopes and not scopes & set(str(claims.get("scp")).split()):
        return graph_error(403, "Authorization_RequestDenied",
                           "Insufficient privileges to complete the operation.", idp.clock())
    user = idp.user_by_oid(str(claims["oid"]))
    if user is None:
        return graph_error(404, "Request_ResourceNotFound",
                           f"Resource '{claims['oid']}' does not exist or one of its queried "
                           "reference-property objects are not present.", idp.clock())
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


async def _me(idp: DevIdentityProvider, request: web.Request, user: DevUser,
              claims: dict[str, Any]) -> web.Response:
    resource = user_resource(user)
    select = request.query.get("$select")
    base = f"{idp.graph_url}/v1.0/$metadata#users"
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
                               "type 'microsoft.graph.user'.", idp.clock())
        body[canonical] = resource[canonical]
    return web.json_response(body)


async def _json_body(idp: DevIdentityProvider, request: web.Request
                     ) -> dict[str, Any] | web.Response:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return graph_error(400, "BadRequest", "Unable to read JSON request payload. Please ensure "
                           "Content-Type header is set and payload is of valid JSON format.",
                           idp.clock())
    return body


def _target_user(idp: DevIdentityProvider, request: web.Request, caller: DevUser
                 ) -> DevUser | web.Response:
    wanted = request.match_info.get("user")
    if wanted is None:
        return caller
    found = idp.user_by_oid(wanted) or next(
        (u for u in idp.users if u.upn and u.upn.lower() == wanted.lower()), None)
    if found is None:
        return graph_error(404, "Request_ResourceNotFound", f"Resource '{wanted}' does not "
                           "exist or one of its queried reference-property objects are not "
                           "present.", idp.clock())
    return found


async def _check_member_groups(idp: DevIdentityProvider, request: web.Request, user: DevUser,
                               claims: dict[str, Any]) -> web.Response:
    body = await _json_body(idp, request)
    if isinstance(body, web.Response):
        return body
    target = _target_user(idp, request, user)
    if isinstance(target, web.Response):
        return target
    ids = body.get("groupIds")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return graph_error(400, "Request_BadRequest", "Invalid value specified for property "
                           "'groupIds' of resource 'User'.", idp.clock())
    if len(ids) > MAX_CHECK_GROUP_IDS:
        return graph_error(400, "Request_BadRequest", "Number of groupIds exceeds the maximum "
                           f"of {MAX_CHECK_GROUP_IDS}.", idp.clock())
    member_of = {g.lower() for g in target.groups}
    value = [i for i in ids if i.lower() in member_of]
    return web.json_response({
        "@odata.context": f"{idp.graph_url}/v1.0/$metadata#Collection(Edm.String)",
        "value": value,
    })


async def _get_member_objects(idp: DevIdentityProvider, request: web.Request, user: DevUser,
                              claims: dict[str, Any]) -> web.Response:
    body = await _json_body(idp, request)
    if isinstance(body, web.Response):
        return body
    target = _target_user(idp, request, user)
    if isinstance(target, web.Response):
        return target
    if not isinstance(body.get("securityEnabledOnly"), bool):
        return graph_error(400, "Request_BadRequest", "The request body must contain "
                           "'securityEnabledOnly'.", idp.clock())
    return web.json_response({
        "@odata.context": f"{idp.graph_url}/v1.0/$metadata#Collection(Edm.String)",
        "value": list(target.groups),
    })


async def _userinfo(idp: DevIdentityProvider, request: web.Request, user: DevUser,
                    claims: dict[str, Any]) -> web.Response:
    info: dict[str, Any] = {"sub": pairwise_sub(idp, user.oid), "name": user.name}
    if user.family_name is not None:
        info["family_name"] = user.family_name
    if user.given_name is not None:
        info["given_name"] = user.given_name
    if user.upn is not None:
        info["email"] = user.upn
    return web.json_response(info)
