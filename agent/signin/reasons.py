"""What Entra ID's refusal of a session's refresh means, in plain words for the audit line.

Keyed by the AADSTS code of the answer's ``error_codes`` (MicrosoftDocs/entra-docs,
``docs/identity-platform/reference-error-codes.md``); an unknown code is named as it is.
"""

from __future__ import annotations

AADSTS_REASONS = {
    "50057": "the account is disabled in Entra ID",
    "50173": "the account's sessions were revoked in Entra ID (an administrator or the user "
             "revoked them, \"Sign out everywhere\", or a password reset in the Entra admin "
             "center)",
    "50132": "the account's sessions were revoked in Entra ID (password change or reset)",
    "50133": "the session ended because the password expired or was changed",
    "50055": "the account's password has expired",
    "50144": "the account's on-premises Active Directory password has expired",
    "70043": "Conditional Access sign-in frequency requires signing in again",
    "700084": "the single-page application's refresh token reached its 24-hour limit",
    "700082": "the refresh token expired after going unused too long",
    "70008": "the refresh token has expired",
    "70000": "the grant is no longer valid (revoked or expired)",
    "50089": "the sign-in's flow token expired: sign in again",
    "50053": "the account is locked, or the sensor's (or its proxy's) address was flagged for "
             "malicious activity: the tenant's sign-in logs say which",
    "50034": "the account no longer exists in the directory",
    "50105": "the account is no longer assigned to the sensor's application",
    "53003": "Conditional Access now blocks this session: a location policy sees the "
             "sensor's (or its proxy's) address, not the browser's; add the sensor's egress "
             "address to a trusted named location or exclude the sensor's application",
    "53000": "Conditional Access requires a compliant device",
    "53001": "Conditional Access requires a domain-joined device",
    "530032": "a security policy of the tenant blocks this session",
    "530035": "Entra ID's security defaults block this session",
    "50076": "multi-factor authentication is now required",
    "50078": "the multi-factor authentication has expired: sign in again",
    "50079": "the account must register for multi-factor authentication",
    "50158": "an external security challenge is now required",
    "65001": "consent for the sensor's application was withdrawn (its permissions were "
             "revoked for this user or the whole tenant)",
}


def aadsts_reason(code: str | None) -> str:
    if code is None:
        return "Entra ID no longer accepts the session's refresh token"
    return AADSTS_REASONS.get(code, f"Entra ID no longer accepts the session (AADSTS{code})")
