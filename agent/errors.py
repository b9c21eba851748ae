"""The agent's error tree, grouped by what the caller does next.

* ``ConfigError``: the operator fixes the configuration file.
* ``SignInRejected``: the sign-in response is malformed, expired, replayed, foreign or forged
  (HTTP 400); the user starts again. ``TooManySignIns`` (HTTP 429): too many starts from one
  address.
* ``SignInRefused``: a genuine identity that may not sign in (HTTP 403); an administrator
  changes something in Entra ID or in the sensor setting. ``MissingAttributes`` names the
  attributes the account lacks.
* ``IdentityProviderUnavailable``: Entra ID or Microsoft Graph unreachable, too slow or
  erroring (HTTP 502); try again later, existing sessions keep working. ``dependency`` names
  what failed, ``retry_after`` what it asked for.
* ``ClientCredentialRejected``: Entra ID rejects the sensor's own client credential or
  platform (an expired or wrong secret, a certificate it does not accept); the operator
  applies ``fix``. Every SSO session ends at its next re-validation.
* ``StateUnavailable``: the session could not be written to ``state_dir`` (HTTP 503: a full
  or read-only disk); existing sessions keep working.
* ``MetadataProblem``: the tenant's discovery document or signing keys are not acceptable;
  the agent is not ready (the web layer catches it with ``IdentityProviderUnavailable``).
* ``CheckFailed``: one step of ``check-connectivity`` failed, with the fix to try.

Elsewhere, under ``AgentError`` too: ``entra.credentials.CredentialProblem`` (the client
credential file cannot be used), ``state.StateDirUnsafe`` and ``state.StateUnwritable``,
``local.accounts.AccountsError``, ``local.passwords.WeakPassword``.

Every ``SignInError`` carries a ``reason`` code shared by the error page and the audit log,
and typed attributes (as PyJWT's ``MissingRequiredClaimError.claim``) instead of a bag of
keys: ``aadsts`` (the AADSTS code Entra ID named), ``provider_error`` (the OAuth ``error``
value it answered), ``upn`` and ``oid`` (the account, when known).
"""

from __future__ import annotations


class AgentError(Exception):
    """Root of every error the agent raises on purpose."""


class ConfigError(AgentError):
    """The configuration is invalid; ``problems`` lists every ``(key, value, why)``."""

    def __init__(self, problems: list[tuple[str, str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{k}: {why}" for k, _, why in problems))


class MetadataProblem(AgentError):
    """The discovery document or JWKS is not acceptable (not a network failure)."""


class CheckFailed(AgentError):
    """One step of the connectivity check failed: what happened (``detail``) and the ``fix``."""

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fix = fix


class SignInError(AgentError):
    """A sign-in that did not produce a session."""

    status = 400

    def __init__(self, reason: str, detail: str = "", *, aadsts: str | None = None,
                 provider_error: str | None = None, upn: str | None = None,
                 oid: str | None = None) -> None:
        self.reason, self.detail = reason, detail
        self.aadsts, self.provider_error = aadsts, provider_error  # what Entra ID answered
        self.upn, self.oid = upn, oid  # the account, when known
        super().__init__(f"{reason}: {detail}" if detail else reason)


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


class IdentityProviderUnavailable(SignInError):
    """Entra ID or Microsoft Graph is unreachable, too slow or erroring."""

    status = 502

    def __init__(self, reason: str, detail: str = "", *, dependency: str,
                 retry_after: float | None = None, aadsts: str | None = None) -> None:
        super().__init__(reason, detail, aadsts=aadsts)
        self.dependency = dependency
        self.retry_after = retry_after


class ClientCredentialRejected(SignInError):
    """Entra ID rejects the sensor's client credential or platform: ``fix`` says what to do."""

    status = 502

    def __init__(self, detail: str, *, fix: str, aadsts: str | None = None,
                 provider_error: str | None = None) -> None:
        super().__init__("client_credential_rejected", detail, aadsts=aadsts,
                         provider_error=provider_error)
        self.fix = fix


class StateUnavailable(SignInError):
    """The new session could not be written to ``state_dir``; it was not created."""

    status = 503
