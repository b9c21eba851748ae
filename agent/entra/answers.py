"""What an error answer of Entra ID's token endpoint means for the sensor.

Classified by the OAuth ``error`` value and the ``error_codes`` field, never by
``error_description``: Microsoft's error-code reference says the description "should never be
used to react to an error" and that its text changes (MicrosoftDocs/entra-docs,
``docs/identity-platform/reference-error-codes.md``). Four outcomes, by what happens next:

* ``unavailable``: says nothing about the user or the sensor (the transport failed, HTTP 5xx
  or 429, ``temporarily_unavailable`` or ``server_error`` (the OIDC reference: "retry the
  request"), or a code the reference calls transient or a throttle: loop detection
  AADSTS50196 included) → try again later, sessions live on for the grace;
* ``credential``: the sensor's own client credential or platform is wrong (``invalid_client``,
  an expired or wrong secret, a certificate assertion that fails) → every SSO session ends at
  its next re-validation and the operator is told what to fix (``client_credential_rejected``);
* ``application``: the app registration is disabled or deleted in the tenant
  (``unauthorized_client``, AADSTS7000112, 700016) → every SSO session ends; an administrator's
  kill switch;
* ``user``: anything else (``invalid_grant``, ``interaction_required`` ...) → that session ends,
  with the AADSTS code's words.

``CredentialStatus`` keeps Entra ID's last word on the sensor's credential for ``/readyz``
and logs ``client_credential_rejected`` (with the fix) once, ``client_credential_accepted``
when tokens are issued again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from ..errors import ClientCredentialRejected

log = structlog.get_logger("agent.entra")
T = TypeVar("T")

# Codes the reference calls transient, retryable or a throttle (and loop detection, which is
# Entra's throttle for a client repeating the same request: see docs/sessions.md).
TRANSIENT = frozenset({"50196", "50033", "90006", "90024", "90033", "90055", "50087"})

# The sensor's own credential or platform, with what the operator does about it.
CREDENTIAL_FIXES = {
    "7000222": "the client secret has expired: create a new secret in the app registration "
               "(Certificates & secrets), write its Value to entra.client_secret_file, then "
               "reload the agent (systemctl reload sensor-sso-agent); or move to a certificate",
    "7000215": "Entra ID does not accept the client secret: write the secret's Value (not its "
               "Secret ID) to entra.client_secret_file, then reload the agent",
    "70002": "Entra ID does not accept the client credential: check entra.client_secret_file "
             "or entra.client_certificate_file against the app registration, then reload",
    "700027": "Entra ID does not accept the certificate's signature: upload the certificate of "
              "entra.client_certificate_file to the app registration (Certificates & secrets) "
              "again, or check entra.client_certificate_thumbprint, then reload the agent",
    "50012": "Entra ID does not accept the certificate's signature: upload the certificate of "
             "entra.client_certificate_file to the app registration again, then reload",
    "700030": "Entra ID does not accept the certificate's subject name: upload the certificate "
              "of entra.client_certificate_file to the app registration again",
    "700024": "the client assertion is outside its valid time: set the sensor's clock (NTP)",
    "7000218": "the app registration expects a client secret or certificate: set "
               "entra.platform = \"web\" with client_secret_file or client_certificate_file, or "
               "register the redirect URI as a Single-page application",
    "700025": "the app registration is a public client: set entra.platform = \"spa\" and remove "
              "the client secret or certificate, or register the redirect URI under Web",
    "9002326": "the redirect URI is registered under the Web platform: set entra.platform = "
               "\"web\" with a client secret or certificate, or move the URI to Single-page "
               "application",
    "9002327": "the redirect URI is registered as a Single-page application: set "
               "entra.platform = \"spa\" (without a secret or certificate), or move the URI "
               "to the Web platform",
}
CREDENTIAL_DEFAULT_FIX = ("Entra ID rejects the sensor's client credential: check "
                          "entra.client_secret_file or entra.client_certificate_file against the "
                          "app registration's Certificates & secrets, then reload the agent")

# The application is no longer allowed in the tenant.
APPLICATION_REASONS = {
    "7000112": "the sensor's application is disabled in Entra ID (enterprise application: "
               "Enabled for users to sign in = No)",
    "70001": "the sensor's application is disabled in Entra ID",
    "700016": "the sensor's application is not in the tenant any more (deleted, or "
              "entra.client_id / entra.tenant_id do not name it)",
    "700011": "the sensor's application is not in the tenant any more",
    "1000031": "the sensor's application cannot be accessed at this time (an administrator "
               "restricted it)",
}
APPLICATION_DEFAULT = "Entra ID no longer lets the sensor's application sign users in"

_MAX_CODES = 8


@dataclass(frozen=True)
class Verdict:
    kind: str  # unavailable | credential | application | user
    error: str  # the OAuth error value (at most 64 characters)
    code: str | None  # the first AADSTS code of error_codes, digits only

    @property
    def fix(self) -> str:
        """For ``credential``: what the operator does."""
        return CREDENTIAL_FIXES.get(self.code or "", CREDENTIAL_DEFAULT_FIX)

    @property
    def application_reason(self) -> str:
        return APPLICATION_REASONS.get(self.code or "", APPLICATION_DEFAULT)


def error_codes(body: Any) -> list[str]:
    """The ``error_codes`` field of an error answer as digit strings (hostile input: bounded,
    anything that is not a non-negative integer below 10^10 dropped)."""
    raw = body.get("error_codes") if isinstance(body, dict) else None
    if not isinstance(raw, list):
        return []
    codes = []
    for value in raw[:_MAX_CODES]:
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and 0 <= value < 10**10:
            codes.append(str(value))
        elif isinstance(value, str) and value.isdigit() and len(value) <= 10:
            codes.append(value)
    return codes


def classify(body: Any, status: int | None) -> Verdict:
    """What an error answer (``body`` with an ``error``) of the token endpoint means."""
    raw = str(body.get("error") if isinstance(body, dict) else "")[:64]
    error = "".join(c for c in raw if c.isascii() and c.isprintable())  # logged: no controls
    codes = error_codes(body)
    code = codes[0] if codes else None
    if status is not None and (status >= 500 or status == 429) or \
            error in ("temporarily_unavailable", "server_error") or TRANSIENT.intersection(codes):
        return Verdict("unavailable", error, code)
    if error == "invalid_client" or any(c in CREDENTIAL_FIXES for c in codes):
        credential = next((c for c in codes if c in CREDENTIAL_FIXES), code)
        return Verdict("credential", error, credential)
    if error == "unauthorized_client" or any(c in APPLICATION_REASONS for c in codes):
        application = next((c for c in codes if c in APPLICATION_REASONS), code)
        return Verdict("application", error, application)
    return Verdict("user", error, code)


class CredentialStatus:
    """Entra ID's last word on the client credential (``rejected``: None when accepted or
    not tried yet). Thread-safe: refreshes run in several threads at once."""

    def __init__(self, platform: str) -> None:
        self.platform = platform
        self.rejected: ClientCredentialRejected | None = None
        self._lock = threading.Lock()

    def judge(self, verdict: Verdict) -> None:
        """A ``credential`` verdict: remember it, log it once, raise it; others pass."""
        if verdict.kind != "credential":
            return
        detail = f"Entra ID rejected the sensor's client credential ({verdict.error}" + \
            (f", AADSTS{verdict.code})" if verdict.code else ")")
        rejected = ClientCredentialRejected(detail, fix=verdict.fix, aadsts=verdict.code,
                                            provider_error=verdict.error)
        with self._lock:
            first = self.rejected is None or self.rejected.aadsts != verdict.code
            self.rejected = rejected
        if first:
            log.error("client_credential_rejected", aadsts=verdict.code, error=verdict.error,
                      platform=self.platform, fix=verdict.fix,
                      effect="no SSO sign-in succeeds and every SSO session ends at its next "
                             "re-validation until this is fixed")
        raise rejected

    def readiness(self) -> dict[str, str] | None:
        """``/readyz``'s answer while the credential is rejected, else None."""
        rejected = self.rejected
        if rejected is None:
            return None
        return {"status": "not ready", "reason": f"{rejected.detail}: no SSO sign-in succeeds "
                "and SSO sessions end at their next re-validation", "fix": rejected.fix}

    def accepted(self, result: T) -> T:
        """Tokens were issued: the credential works (again); returns ``result``."""
        if self.rejected is not None:
            with self._lock:
                was, self.rejected = self.rejected, None
            if was is not None:
                log.info("client_credential_accepted", previously=was.aadsts)
        return result
