"""The agent's error tree, grouped by what the caller does next.

```
AgentError
├── ConfigError                    the operator fixes the configuration file
├── CheckFailed                    one step of check-connectivity failed, with its fix
└── ReasonedError                  a sign-in (or re-validation) that did not go through
    ├── SignInError                ... because of the sign-in itself
    │   ├── SignInRejected (400)   the response is malformed, expired, replayed, foreign or
    │   │   │                      forged: the user starts again
    │   │   └── TooManySignIns (429)   too many starts from one address
    │   └── SignInRefused (403)    a genuine identity that may not sign in: an administrator
    │       └── MissingAttributes  changes something in Entra ID or the sensor setting
    ├── DependencyFailure          ... because something it depends on failed: nothing about
    │   │                          the user; signed-in users keep working, /readyz names it
    │   ├── IdentityProviderUnavailable (502)  Entra ID or Graph unreachable, too slow or
    │   │                          erroring: try again later
    │   ├── MetadataProblem        the tenant's discovery document or signing keys are not
    │   │                          acceptable: the agent is not ready
    │   └── ConfigurationProblem (503)  Entra ID or Graph cannot be used as configured (the
    │       │                      client credential file, Graph's admin consent): the
    │       │                      operator or an Entra ID administrator fixes it
    │       └── ClientCredentialRejected  Entra ID rejects the sensor's own credential or
    │                              platform: ``fix`` says what to do; every SSO session
    │                              ends at its next re-validation
    └── StateUnwritable (503)      ... because the session could not be written to
                                   ``state_dir`` (a full or read-only disk)
```

Elsewhere, under ``AgentError`` too: ``entra.credentials.CredentialProblem`` (the client
credential file cannot be used; ``ConfigurationProblem`` when met at run time),
``sessions.statedir.StateDirUnsafe``, ``local.accounts.AccountsError``,
``local.passwords.WeakPassword``, ``local.signin.LocalSignInRefused``.

Every ``ReasonedError`` carries a ``reason`` code shared by the error page and the audit log,
the HTTP ``status`` of its page, and typed attributes (as PyJWT's
``MissingRequiredClaimError.claim``) instead of a bag of keys: ``aadsts`` (the AADSTS code
Entra ID named), ``provider_error`` (the OAuth ``error`` value it answered), ``upn`` and ``oid``
(the account, when known); a ``DependencyFailure`` also ``dependency`` (what failed) and
``retry_after`` (what it asked for).
"""

from __future__ import annotations


class AgentError(Exception):
    """Root of every error the agent raises on purpose."""


class ConfigError(AgentError):
    """The configuration is invalid; ``problems`` lists every ``(key, value, why)``."""

    def __init__(self, problems: list[tuple[str, str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{k}: {why}" for k, _, why in problems))


class CheckFailed(AgentError):
    """One step of the connectivity check failed: what happened (``detail``) and the ``fix``."""

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fix = fix


class ReasonedError(AgentError):
    """A sign-in or re-validation that did not go through: a ``reason`` code for the page and
    the audit log, the page's HTTP ``status``, and what is known of the account."""

    status = 400

    def __init__(self, reason: str, detail: str = "", *, aadsts: str | None = None,
                 provider_error: str | None = None, upn: str | None = None,
                 oid: str | None = None) -> None:
        self.reason, self.detail = reason, detail
        self.aadsts, self.provider_error = aadsts, provider_error  # what Entra ID answered
        self.upn, self.oid = upn, oid  # the account, when known
        super().__init__(f"{reason}: {detail}" if detail else reason)


class SignInError(ReasonedError):
    """The sign-in itself is not acceptable: its response, or the identity it carries."""


class SignInRejected(SignInError):
    """The sign-in response cannot be trusted (malformed, expired, replayed, forged)."""

    status = 400


class TooManySignIns(SignInRejected):
    """Too many sign-ins started from one address (HTTP 429); the user waits a minute."""

    status = 429

    def __init__(self) -> None:
        super().__init__("too_many_sign_ins",
                         "too many sign-in attempts from this address; wait a minute")


class SignInRefused(SignInError):
    """A genuine identity that is not allowed to sign in."""

    status = 403


class MissingAttributes(SignInRefused):
    """The account lacks attributes the sensor needs; ``missing`` holds their labels."""

    def __init__(self, missing: list[str], *, upn: str | None = None) -> None:
        super().__init__("missing_attributes", "the account lacks " + ", ".join(missing),
                         upn=upn)
        self.missing = tuple(missing)


class DependencyFailure(ReasonedError):
    """Something the sign-in depends on failed (``dependency``); it says nothing about the
    user. ``retry_after``: the seconds the dependency asked for, when it did."""

    status = 502

    def __init__(self, reason: str, detail: str = "", *, dependency: str,
                 retry_after: float | None = None, aadsts: str | None = None) -> None:
        super().__init__(reason, detail, aadsts=aadsts)
        self.dependency = dependency
        self.retry_after = retry_after


class IdentityProviderUnavailable(DependencyFailure):
    """Entra ID or Microsoft Graph is unreachable, too slow or erroring."""

    status = 502


class MetadataProblem(DependencyFailure):
    """The discovery document or JWKS is not acceptable (not a network failure); its text is
    the ``detail`` alone (the agent's not-ready reason)."""

    def __init__(self, detail: str, dependency: str = "Entra ID") -> None:
        super().__init__("idp_not_ready", detail, dependency=dependency)

    def __str__(self) -> str:
        return self.detail


class ConfigurationProblem(DependencyFailure):
    """Entra ID or Graph cannot be used as this sensor is configured (an unreadable client
    credential file, Graph refusing for missing admin consent): retrying will not help."""

    status = 503  # never a 500 (SPEC 5); not 502: the way to Entra ID works


class ClientCredentialRejected(ConfigurationProblem):
    """Entra ID rejects the sensor's client credential or platform: ``fix`` says what to do.
    No SSO session can be confirmed with it: re-validation ends them."""

    def __init__(self, detail: str, *, fix: str, aadsts: str | None = None,
                 provider_error: str | None = None) -> None:
        super().__init__("client_credential_rejected", detail, aadsts=aadsts,
                         dependency="the sensor's client credential")
        self.provider_error = provider_error
        self.fix = fix


class StateUnwritable(ReasonedError):
    """Session state could not be written to ``state_dir``; the change it carried (a new
    session, a sign-out) was not made."""

    status = 503

    def __init__(self, detail: str, *, upn: str | None = None) -> None:
        super().__init__("state_unwritable", detail, upn=upn)
