"""The app registration and the tenant's policies as Entra's endpoints see them.

What an administrator (or Entra ID itself) changes that refuses a client's token requests,
answered with Entra's codes and Entra-shaped bodies (``error``, ``error_description``,
``error_codes``, ``timestamp``, ``trace_id``, ``correlation_id``; MicrosoftDocs/entra-docs,
``docs/identity-platform/reference-error-codes.md``):

The knobs are ``idp.policies`` (``policies.py``):

* ``app_disabled = True`` (enterprise application "Enabled for users to sign in" = No): the
  authorize page and every grant answer ``unauthorized_client`` AADSTS7000112;
* ``app_deleted = True``: ``unauthorized_client`` AADSTS700016, as for an unknown client;
* ``client_secret_expired = True``: a Web app presenting its (right) secret gets 401
  ``invalid_client`` AADSTS7000222 (a wrong secret, AADSTS7000215, and a certificate the
  registration does not hold, AADSTS700027, are ``tokens.py``'s);
* ``withdraw_consent(idp, username=None)``: refreshes of that user's (or everyone's) grants
  answer ``invalid_grant`` AADSTS65001 (``suberror: consent_required``);
* ``blocked_addresses = {"127.0.0.1"}``: a Conditional Access location policy; a refresh
  from one of those addresses (the sensor's, not the browser's) answers ``invalid_grant``
  AADSTS53003;
* ``loop_limit = (count, seconds)``: more than ``count`` refreshes of one user's grants by
  the client within ``seconds`` answer ``invalid_grant`` AADSTS50196 (Entra's loop detection
  publishes no figure; the test chooses one).
"""

from __future__ import annotations

from collections import deque

from aiohttp import web

from .faults import entra_error, unknown_client
from .state import ProviderState

ALL_USERS = "*"


def client_refusal(state: ProviderState, request: web.Request, now: float) -> web.Response | None:
    """The application disabled or deleted: every grant of the token endpoint."""
    if state.policies.app_disabled:
        return entra_error(request, 400, "unauthorized_client", 7000112,
                           f"Application '{state.client_id}'({state.app_name}) is disabled.",
                           now)
    if state.policies.app_deleted:
        return entra_error(request, 400, "unauthorized_client", 700016,
                           unknown_client(state.client_id, state.tenant_id), now)
    return None


def authorize_refusal(state: ProviderState) -> web.Response | None:
    """The same at the authorize endpoint: Entra's error page."""
    if state.policies.app_disabled:
        return state.error_page(7000112, f"Application '{state.client_id}'({state.app_name}) "
                                "is disabled.")
    if state.policies.app_deleted:
        return state.error_page(700016, unknown_client(state.client_id, state.tenant_id))
    return None


def secret_expired(state: ProviderState, request: web.Request, now: float) -> web.Response:
    return entra_error(request, 401, "invalid_client", 7000222,
                       f"The provided client secret keys for app '{state.client_id}' are "
                       "expired. Visit the Azure portal to create new keys for your app: "
                       "https://aka.ms/NewClientSecret, or consider using certificate "
                       "credentials for added security: https://aka.ms/certCreds.", now)


def refresh_refusal(state: ProviderState, request: web.Request, oid: str,
                    now: float) -> web.Response | None:
    """Consent withdrawn, a location policy, loop detection: a refresh of ``oid``'s grant."""
    if oid in state.policies.consent_withdrawn or ALL_USERS in state.policies.consent_withdrawn:
        return entra_error(request, 400, "invalid_grant", 65001,
                           "The user or administrator has not consented to use the application "
                           f"with ID '{state.client_id}' named '{state.app_name}'. Send an "
                           "interactive authorization request for this user and resource.",
                           now, suberror="consent_required")
    if request.remote in state.policies.blocked_addresses:
        return entra_error(request, 400, "invalid_grant", 53003,
                           "Access has been blocked by Conditional Access policies. The access "
                           "policy does not allow token issuance.", now)
    if state.policies.loop_limit is not None:
        count, window = state.policies.loop_limit
        recent = state.policies.recent_refreshes.setdefault(oid, deque())
        while recent and recent[0] <= now - window:
            recent.popleft()
        recent.append(now)
        if len(recent) > count:
            return entra_error(request, 400, "invalid_grant", 50196,
                               "The server terminated an operation because it encountered a "
                               "client request loop. Please contact your app vendor.", now)
    return None


def withdraw_consent(state: ProviderState, username: str | None = None) -> None:
    """Revoke the application's permission grant for one user (or, ``None``, the tenant)."""
    if username is None:
        state.policies.consent_withdrawn.add(ALL_USERS)
        return
    user = state.user_by_username(username)
    if user is None:
        raise KeyError(f"no such user: {username}")
    state.policies.consent_withdrawn.add(user.oid)
