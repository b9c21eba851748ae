"""A local Microsoft Entra ID-like identity provider (with a Microsoft Graph subset).

For tests, the ``demo`` command and rehearsals (``devidp``): HTTPS on 127.0.0.1 with a
throwaway CA (``idp.ca_file``), served by aiohttp; ``persist.py`` keeps the CA, signing key
and refresh tokens in a state directory for ``sensor-sso-agent devidp`` (agent/rehearsal.py).
MSAL Python talks to it as to ``login.microsoftonline.com``::

    idp = DevIdentityProvider(tenant_id, client_id, [redirect_uri], users)
    await idp.start()
    app = msal.PublicClientApplication(client_id, authority=f"{idp.authority_host}/{tenant_id}",
                                       instance_discovery=False, http_client=session_trusting_ca)

Endpoints (``{t}`` = the tenant id; another tenant gets AADSTS90002):

* ``GET /{t}/v2.0/.well-known/openid-configuration``, ``GET /{t}/discovery/v2.0/keys``
* ``GET|POST /{t}/oauth2/v2.0/authorize`` -> sign-in page (or 302 when the SSO cookie
  ``devidp_sso`` is valid and ``prompt`` is not ``login``)
* ``POST /{t}/oauth2/v2.0/token`` (authorization_code grant only; codes single-use, 10 min)
* ``GET|POST /{t}/oauth2/v2.0/logout?post_logout_redirect_uri=...`` (302 only to a URI in
  ``redirect_uris``, else a "You signed out" page)
* Graph: ``GET /v1.0/me[?$select=...]``, ``POST /v1.0/me/checkMemberGroups`` (<= 20 ids),
  ``POST /v1.0/me/getMemberObjects`` and ``/v1.0/users/{id}/...``, ``GET /oidc/userinfo``

Signing in without a browser (``tests/devidp_driver.py``'s ``complete_sign_in`` does exactly
this; it is test support and not shipped):

1. ``GET`` the authorize URL without following redirects. 302 -> done (SSO or error).
   200 -> a page with ``<form id="signin-form" method="post" action="/{t}/login">`` holding
   a hidden ``request_id``.
2. ``POST`` ``request_id``, ``username``, ``password`` (form-encoded) to that action.
   302 -> done. 200 with ``#signin-form`` and ``<p id="error">`` -> wrong password.
   200 with ``<form id="mfa-form" action="/{t}/mfa">`` -> MFA: the number is the text of
   ``<p id="mfa-number">``.
3. ``POST`` ``request_id`` and ``number`` to ``/{t}/mfa``. 302 -> done; a wrong number ends
   in a 400 "Request denied" page (AADSTS500121).

"Done" is a 302 whose ``Location`` is ``redirect_uri?code=...&client_info=...&state=...
&session_state=...`` (``&iss=...`` when ``iss_parameter_supported``) or
``redirect_uri?error=...&error_description=...&state=...``. Error pages (unknown client
AADSTS700016, redirect URI mismatch AADSTS50011) show the code in ``#error-code``.
The SSO cookie is set on 127.0.0.1: aiohttp keeps it only with ``CookieJar(unsafe=True)``.

Misbehaviour (``idp.reset_misbehaviour()`` clears it all):

* ``idp.faults[name] = Fault(status=..., body=..., headers=..., delay=..., times=...)`` for
  ``discovery``, ``jwks``, ``authorize``, ``token``, ``graph_me``,
  ``graph_check_member_groups``, ``authorize_response`` (the final redirect), ...
* ``idp.authorize_error = ("access_denied", "AADSTS50105: ...")``: after the sign-in the
  client gets this error instead of a code. ``idp.iss_override``: wrong ``iss`` there.
* ``idp.token_tweaks`` (a ``TokenTweaks``): ``.claims`` / ``.header`` (merged; ``DELETE``
  removes), ``.signing`` (``normal``, ``bad_signature``, ``alg_none``, ``hs256_public_key``,
  ``foreign_key``, ``unknown_kid_in_jwks_later``), ``.discovery_issuer``,
  ``.jwks_without_kid``. ``acrs`` or ``amr`` claims can be added through ``claims``.
* ``idp.auth_contexts = {"c1"}``: the users satisfy these Conditional Access authentication
  contexts; an ID token carries ``acrs`` with those of them that the authorize request's
  ``claims`` parameter asks for (``{"id_token": {"acrs": {"value": "c1"}}}``). Empty: none.
* ``idp.rotate_keys(keep_old=False)``; the injected ``clock`` drives token times and code
  expiry; ``idp.requests`` counts hits per endpoint name.

Layout: ``state.py`` holds what the endpoints share (``ProviderState``: configuration, the
knobs above, pending requests, codes, SSO sessions, keys, addresses). Each endpoint module
(``metadata``, ``authorize``, ``tokens``, ``signout``, ``graph``) offers ``routes(state)`` and
writes its handlers as ``async def handler(state, request)`` under ``@endpoint(name)``
(``endpoint.py``: count the request, apply a fault, refuse another tenant). ``server.py``'s
``DevIdentityProvider`` is that state plus serving it; no endpoint module imports it.
``minting.py`` builds the tokens both grants answer with (``tokens.py``: authorization code,
``refresh.py``: refresh token and the directory changes).

AADSTS codes follow Entra where known (90002, 700016, 50011, 9002327, 9002326, 7000218,
54005, 501481, 500112, 70008, 50058); the rest are plausible approximations.

Must not import ``agent.web``, ``agent.signin``, ``agent.sessions``, ``agent.entra``,
``agent.settings`` or ``agent.local``: it plays Entra ID and shares no code with the agent it
is there to test.
"""

from .faults import ENDPOINTS, Fault, TokenTweaks
from .keys import DELETE, SIGNING_MODES
from .minting import GRAPH_APP_ID
from .server import DevIdentityProvider
from .state import ProviderState
from .users import DEMO_PASSWORD, DevUser, demo_users

__all__ = [
    "DELETE",
    "DEMO_PASSWORD",
    "ENDPOINTS",
    "GRAPH_APP_ID",
    "SIGNING_MODES",
    "DevIdentityProvider",
    "DevUser",
    "Fault",
    "ProviderState",
    "TokenTweaks",
    "demo_users",
]
