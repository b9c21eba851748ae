"""The agent's error tree, grouped by what the caller does next.

* ``ConfigError``: the operator fixes the configuration file.
* ``SignInRejected``: the sign-in response is malformed, expired, replayed, foreign or forged
  (HTTP 400); the user starts again.
* ``SignInRefused``: a genuine identity that may not sign in (HTTP 403); an administrator
  changes something in Entra ID or in the sensor setting.
* ``IdentityProviderUnavailable``: Entra ID or Microsoft Graph unreachable, too slow or
  erroring (HTTP 502); try again later, existing sessions keep working.
* ``StateUnavailable``: the session could not be written to ``state_dir`` (HTTP 503: a full
  or read-only disk); existing sessions keep working.

``SignInRejected`` and ``SignInRefused`` carry a ``reason`` code shared by the error page and
the audit log.
"""

from __future__ import annotations


class AgentError(Exception):
    """Root of every error the agent raises on purpose."""


class ConfigError(AgentError):
    """The configuration is invalid; ``problems`` lists every ``(key, value, why)``."""

    def __init__(self, problems: list[tuple[str, str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{k}: {why}" for k, _, why in problems))


class SignInError(AgentError):
    """A sign-in that did not produce a session."""

    status = 400

    def __init__(self, reason: str, detail: str = "", **info: object) -> None:
        self.reason = reason
        self.detail = detail
        self.info = info
        super().__init__(f"{reason}: {detail}" if detail else reason)


class SignInRejected(SignInError):
    """The sign-in response cannot be trusted (malformed, expired, replayed, forged)."""

    status = 400


class SignInRefused(SignInError):
    """A genuine identity that is not allowed to sign in."""

    status = 403


class IdentityProviderUnavailable(SignInError):
    """Entra ID or Microsoft Graph is unreachable, too slow or erroring."""

    status = 502


class StateUnavailable(SignInError):
    """The new session could not be written to ``state_dir``; it was not created."""

    status = 503
