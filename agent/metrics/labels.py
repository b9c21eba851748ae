"""The only values a metric label may take: fixed sets, each written here once.

Anything else is counted under ``other``: a value the identity provider or a client chose
(a UPN, an object id, an address, a group id, an error text) can never become a label, so
the number of series stays small and nothing personal reaches the monitoring.
``tests/metrics/test_labels.py`` checks that every reason code the agent's code raises is
in ``REASONS``.
"""

from __future__ import annotations

import re

from ..roles import ROLES

OTHER = "other"
METHODS = ("sso", "local")
SIGN_IN_OUTCOMES = ("succeeded", "refused")
REVALIDATION_OUTCOMES = ("confirmed", "role_changed", "revoked", "unavailable", "rejected",
                         "gone", "failed")
# The supervised background tasks (agent/supervisor.py, started in web/app.py).
TASKS = ("journal_flush", "audit_bursts", "tenant_metadata", "revalidation", "roles_recheck",
         "entra_probe")
RELOAD_RESULTS = ("applied", "rejected", "failed")
THROTTLED = ("sso_start", "local_sign_in")  # too many sign-in starts; local sign-in delays
DEPENDENCIES = ("discovery", "jwks", "token_endpoint", "graph")
ROLE_IDS = tuple(ROLES)

# Every reason code a refused sign-in can carry (errors.SignInError.reason), SSO and local.
REASONS = frozenset({
    "application_refused", "attribute_too_long", "auth_context_missing", "bad_credentials",
    "browser_mismatch", "busy", "client_credential_unreadable", "client_credential_unusable",
    "code_missing", "code_rejected", "csrf_invalid", "duplicate_parameter", "graph_bad_response",
    "graph_error", "graph_forbidden", "graph_no_token", "graph_throttled", "guest_not_allowed",
    "id_token_bad_algorithm", "id_token_bad_signature", "id_token_expired",
    "id_token_foreign_key_reference", "id_token_malformed", "id_token_missing_claim",
    "id_token_nonce_mismatch", "id_token_not_yet_valid", "id_token_unknown_key",
    "id_token_wrong_audience", "id_token_wrong_issuer", "idp_bad_response", "idp_error",
    "idp_not_ready", "idp_response_too_large", "idp_timeout", "idp_unreachable", "invalid_grant",
    "iss_mismatch", "iss_missing", "jwks_unreachable", "local_sign_in_unavailable",
    "missing_attributes", "no_app_role", "no_role", "reauthentication_required",
    "response_too_large", "sso_off", "state_evicted", "state_expired", "state_missing",
    "state_unknown", "state_unwritable", "throttled", "too_many_sign_ins", "upn_unusable",
    "wrong_tenant",
})


# The way out (entra/outbound.py) names its failures after the dependency: "Microsoft Graph"
# timing out is microsoft_graph_timeout.
TRANSPORT_SUFFIXES = ("_timeout", "_unreachable", "_bad_response", "_response_too_large")


def _slug(dependency: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", dependency.lower()).strip("_")


def one_of(value: str, allowed: frozenset[str] | tuple[str, ...]) -> str:
    """``value`` when it is one of ``allowed``, else ``other``."""
    return value if value in allowed else OTHER

# The dependency names the agent's errors and /readyz use → the metric's label.
DEPENDENCY_OF = {"Entra ID discovery": "discovery", "Entra ID signing keys": "jwks",
                 "Entra ID": "token_endpoint", "Microsoft Graph": "graph"}
REASONS = REASONS | {_slug(name) + suffix for name in DEPENDENCY_OF
                     for suffix in TRANSPORT_SUFFIXES}
