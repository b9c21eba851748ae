"""Is Entra ID available? One answer for the local sign-in form, ``/readyz`` and the metrics.

``DependencyHealth`` holds, per dependency (``Entra ID``, ``Entra ID signing keys``,
``Microsoft Graph``), why it failed and when; ``degraded()`` names those that failed within
``window`` seconds with no success since. With ``[local] sign_in = "when-sso-unavailable"``
a non-empty ``degraded()`` is what offers the local sign-in form.

The rule (docs/security.md): Entra ID counts as unavailable only from the agent's own probes
of discovery and JWKS (``probe_failed``, ``reachable``; web/app.py's ``entra_probe`` and the
tenant's key fetches) and from real transport failures (a timeout, a refused or reset
connection: reasons ending in ``_timeout`` or ``_unreachable``) wherever they happen. What
one user's sign-in made the token endpoint or Graph answer — an HTML page, garbage, an
error, whatever an odd or oversized ``code`` provokes — is refused for that sign-in and
audited, and never counts: anyone can start a sign-in and send its callback anything.
A sign-in that completes is proof that every dependency answered: it clears them all.

``last_answered()`` says when each dependency last answered the agent (a completed sign-in,
a probe, a key fetch; the metrics' ``dependency_last_success``).
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import IdentityProviderUnavailable

WINDOW = 300.0  # seconds a failure counts without a newer one
DEPENDENCIES = ("Entra ID discovery", "Entra ID signing keys", "Entra ID", "Microsoft Graph")
_TRANSPORT = ("_timeout", "_unreachable")  # reason codes of failures no answer can cause


def transport_failure(exc: IdentityProviderUnavailable) -> bool:
    """Did the way to the dependency fail (no answer in time, no connection), rather than
    the dependency answer something a client's request may have provoked?"""
    return exc.reason.endswith(_TRANSPORT)


class DependencyHealth:
    """Recent failures per dependency, decided by the rule above (one per application)."""

    def __init__(self, clock: Callable[[], float], window: float = WINDOW) -> None:
        self.clock = clock
        self.window = window
        self._failed: dict[str, tuple[str, float]] = {}  # dependency → (why, when)
        self._answered: dict[str, float] = {}  # dependency → when it last answered

    def degraded(self) -> dict[str, str]:
        """Dependencies that failed within ``window`` s with no success since: why."""
        now = self.clock()
        return {dep: why for dep, (why, when) in self._failed.items()
                if now - when < self.window}

    def probe_failed(self, dependency: str, why: str) -> None:
        """The agent's own request (discovery, JWKS) to ``dependency`` failed."""
        self._failed[dependency] = (why, self.clock())

    def reachable(self, prefix: str = "Entra ID") -> None:
        """A probe of the discovery document reached Entra ID: the dependencies named
        ``prefix...`` count as answering again."""
        self._answered["Entra ID discovery"] = self.clock()
        for dependency in [d for d in self._failed if d.startswith(prefix)]:
            del self._failed[dependency]

    def answered(self, *dependencies: str) -> None:
        """The agent's own request (discovery, JWKS) to each of ``dependencies`` worked."""
        now = self.clock()
        for dependency in dependencies:
            self._answered[dependency] = now
            self._failed.pop(dependency, None)

    def last_answered(self) -> dict[str, float]:
        return dict(self._answered)

    def sign_in_failed(self, exc: IdentityProviderUnavailable) -> bool:
        """A sign-in met ``exc``; it counts only as a transport failure (True when it did)."""
        if not transport_failure(exc):
            return False
        self._failed[exc.dependency] = (exc.detail, self.clock())
        return True

    def sign_in_succeeded(self) -> None:
        """Every dependency answered a whole sign-in."""
        self._failed.clear()
        now = self.clock()
        self._answered.update(dict.fromkeys(DEPENDENCIES, now))
