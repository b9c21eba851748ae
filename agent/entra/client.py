"""MSAL wrapper: build the authorization request (PKCE S256, state, nonce) and redeem the code.

MSAL traps handled here:

* its HTTP throttle keys code redemptions without the code, so one 5xx would refuse every
  user's redemption for up to 60 s → ``http_cache`` that keeps nothing;
* its token cache keeps every user's tokens → a cache that stores nothing (the one refresh
  token a session needs lives in the agent's own encrypted session store);
* it raises on odd tokens (KeyError, RuntimeError for the nonce) → translated here;
* it keeps each failed answer's ``error`` (any type) for a header on every later request:
  one that is no plain string broke all later calls until a restart → a buffer that keeps
  nothing;
* it warns unless ``response_mode="form_post"``, but a POST callback loses the
  ``SameSite=Lax`` binding cookie → keep ``query`` and silence that one warning;
* it logs a non-JSON token answer whole, with a traceback, and a rejected ID token's claims
  → its loggers are quiet below CRITICAL (the agent logs each failure's reason itself).

MSAL is synchronous: callers run ``redeem`` in a thread. MSAL and requests (about 8 MiB)
are imported when the MSAL application is first built (first sign-in or re-validation).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import warnings
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from ..errors import (
    ConfigurationProblem,
    IdentityProviderUnavailable,
    SignInRefused,
    SignInRejected,
)
from ..settings import EntraSettings
from .answers import CredentialStatus, classify
from .credentials import CredentialProblem, client_credential
from .msal_errors import MSAL_READING_ERRORS, raised_by_msal, transport_errors
from .outbound import MsalHttpClient, NothingKept

if TYPE_CHECKING:
    import msal

_FORM_POST_WARNING = r"response_mode='form_post' is recommended"
logging.getLogger("msal").setLevel(logging.CRITICAL)  # see above: bodies and claims




@cache
def _no_token_cache_class() -> type[msal.TokenCache]:
    import msal

    class _NoTokenCache(msal.TokenCache):  # type: ignore[misc]  # msal ships no types
        """Keeps no tokens: the agent reads the ID token once and forgets it."""

        def add(self, event: Any, **kwargs: Any) -> None:
            return None

    return _NoTokenCache


@dataclass(frozen=True)
class Redemption:
    id_token: str
    access_token: str | None
    refresh_token: str | None = None

    def __repr__(self) -> str:  # never print a token
        return "Redemption(...)"


def nonce_hash(flow: dict[str, Any]) -> str:
    """The nonce MSAL put on the wire: ``sha256(flow["nonce"]).hexdigest()``."""
    return hashlib.sha256(str(flow["nonce"]).encode("ascii")).hexdigest()


class EntraClient:
    def __init__(self, settings: EntraSettings, origin: str | None = None) -> None:
        self.settings = settings
        if origin is None:  # SPA codes are redeemed cross-origin; Web ones must not be
            origin = settings.origin if settings.platform == "spa" else ""
        self._origin = origin
        self._http: MsalHttpClient | None = None  # requests, built with the MSAL application
        self._app: msal.ClientApplication | None = None
        self._building = threading.Lock()  # one build, however many threads ask at once
        self.credential = CredentialStatus(settings.platform)  # Entra ID's last word on it

    @property
    def http(self) -> MsalHttpClient:
        if self._http is None:
            self._http = MsalHttpClient(self.settings, self._origin)
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    @property
    def scopes(self) -> list[str]:
        return [f"{self.settings.graph_url}/.default"]

    def _credential(self) -> Any:
        try:
            return client_credential(self.settings)
        except CredentialProblem as exc:
            raise ConfigurationProblem(
                "client_credential_unusable", f"the client credential is unusable: {exc}",
                dependency="the sensor's client credential") from None
        except OSError as exc:
            raise ConfigurationProblem(
                "client_credential_unreadable", "cannot read the client credential file: "
                f"{exc.strerror}", dependency="the sensor's client credential") from None

    def check_credential(self) -> None:
        """What building the MSAL application would say about the client credential, without
        MSAL or the network (blocking: it reads the file): a problem shows at start."""
        self._credential()

    def app(self) -> msal.ClientApplication:
        """Build the MSAL application (blocking: it fetches the discovery document once)."""
        if self._app is not None:
            return self._app
        with self._building:
            return self._build()

    def _build(self) -> msal.ClientApplication:
        if self._app is None:
            import msal

            try:
                common: dict[str, Any] = {
                    "authority": self.settings.authority, "http_client": self.http,
                    "instance_discovery": False, "http_cache": NothingKept(),
                    "token_cache": _no_token_cache_class()()}
                credential = self._credential()
                with transport_errors("the discovery request", "discovery"):
                    if credential is None:
                        self._app = msal.PublicClientApplication(self.settings.client_id,
                                                                 **common)
                    else:  # Web platform: a secret, or a certificate MSAL signs an assertion
                        self._app = msal.ConfidentialClientApplication(
                            self.settings.client_id, client_credential=credential, **common)
                self._app._telemetry_buffer = NothingKept()  # no argument for it
            except (ValueError, KeyError, msal.exceptions.MsalServiceError) as exc:
                raise IdentityProviderUnavailable(
                    "idp_bad_response", f"Entra ID's discovery answer is unusable: "
                    f"{type(exc).__name__}", dependency="Entra ID") from None
        return self._app

    @property
    def loaded(self) -> bool:
        return self._app is not None

    def start(self, **extra: Any) -> dict[str, Any]:
        """A new auth code flow (PKCE S256, state, nonce); no network."""
        app = self.app()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_FORM_POST_WARNING)
            flow: dict[str, Any] = app.initiate_auth_code_flow(
                self.scopes, redirect_uri=self.settings.redirect_uri, response_mode="query",
                **extra)
        return flow

    def redeem(self, flow: dict[str, Any], response: dict[str, str]) -> Redemption:
        """Redeem the code of ``response`` (blocking; run it in a thread)."""
        app = self.app()
        import msal

        self.http.reset()
        try:
            with transport_errors("the code redemption"):
                result = app.acquire_token_by_auth_code_flow(flow, response)
        except msal.exceptions.MsalServiceError:
            raise IdentityProviderUnavailable(
                "idp_error", "Entra ID's token endpoint failed", dependency="Entra ID") from None
        except MSAL_READING_ERRORS as exc:
            if not raised_by_msal(exc):
                raise  # the agent's own bug: not the token's fault
            # Messages may echo the nonce or state: never pass them on.
            status = self.http.last_token_status
            if status == 200 and self.http.last_token_json_object:
                if isinstance(exc, RuntimeError):
                    raise SignInRejected(
                        "id_token_nonce_mismatch",
                        "the ID token belongs to another sign-in (nonce)") from None
                raise SignInRejected("id_token_malformed",
                                     "the identity provider sent an unusable ID token") from None
            raise IdentityProviderUnavailable(
                "idp_bad_response", "Entra ID answered the code redemption with something "
                "that is not a token response", dependency="Entra ID") from None
        status = self.http.last_token_status
        if isinstance(result, dict) and "error" in result:
            self.credential.judge(classify(result, status))
        return self.credential.accepted(_translate(result, status))

    def refresh(self, refresh_token: str) -> Redemption:
        """Redeem a session's refresh token (blocking; run it in a thread).

        SPA: the ``Origin`` header goes with it (``MsalHttpClient``); Web: MSAL adds the client
        credential. An error answer is classified by ``answers.classify`` (OAuth ``error`` and
        ``error_codes``): the user or the application is no longer allowed → ``SignInRefused``
        (reason ``invalid_grant`` or ``application_refused``, with the AADSTS code); the
        sensor's credential is wrong → ``ClientCredentialRejected``; only what says nothing
        about either raises ``IdentityProviderUnavailable`` (with ``retry_after`` when Entra
        ID sent one).
        """
        app = self.app()
        import msal

        self.http.reset()
        try:
            with transport_errors("the token refresh"):
                result = app.acquire_token_by_refresh_token(refresh_token, self.scopes)
        except msal.exceptions.MsalServiceError:
            raise IdentityProviderUnavailable(
                "idp_bad_response", "Entra ID answered the token refresh with something that "
                "is not a token response", dependency="Entra ID") from None
        except MSAL_READING_ERRORS as exc:
            if not raised_by_msal(exc):
                raise  # the agent's own bug: not Entra ID's answer
            raise IdentityProviderUnavailable(
                "idp_bad_response", "Entra ID answered the token refresh with something that "
                "is not a token response", dependency="Entra ID") from None
        status, retry_after = self.http.last_token_status, self.http.last_retry_after
        if isinstance(result, dict) and "error" in result:
            verdict = classify(result, status)
            if verdict.kind == "unavailable":
                raise IdentityProviderUnavailable(
                    "idp_error", f"Entra ID answered the token refresh with {verdict.error}"
                    + (f" (AADSTS{verdict.code})" if verdict.code else "")
                    + (f" (HTTP {status})" if status else ""), dependency="Entra ID",
                    aadsts=verdict.code, retry_after=retry_after)
            self.credential.judge(verdict)
            if verdict.kind == "application":
                raise SignInRefused("application_refused", verdict.application_reason,
                                    aadsts=verdict.code, provider_error=verdict.error)
            raise SignInRefused("invalid_grant", f"Entra ID refused the refresh "
                                f"({verdict.error})", aadsts=verdict.code,
                                provider_error=verdict.error)
        return self.credential.accepted(_translate(result, status))


def _translate(result: Any, status: int | None) -> Redemption:
    if not isinstance(result, dict):
        raise IdentityProviderUnavailable("idp_bad_response", "no token response",
                                          dependency="Entra ID")
    if "error" in result:
        verdict = classify(result, status)
        error, code = verdict.error, verdict.code
        if verdict.kind == "unavailable":
            raise IdentityProviderUnavailable("idp_error", f"Entra ID answered {error}",
                                              dependency="Entra ID", aadsts=code)
        if error == "invalid_grant" and code in (None, "54005", "70008", "70000", "501481",
                                                 "50148", "9002313"):
            raise SignInRejected("code_rejected",
                                 "the sign-in code was already used, expired or does not "
                                 "match this sign-in", aadsts=code)
        raise SignInRefused("idp_error", f"Entra ID refused to issue tokens ({error})",
                            aadsts=code, provider_error=error)
    id_token = result.get("id_token")
    if not isinstance(id_token, str):
        raise SignInRejected("id_token_malformed", "the token response carries no ID token")
    access = result.get("access_token")
    refresh = result.get("refresh_token")
    return Redemption(id_token=id_token, access_token=access if isinstance(access, str) else None,
                      refresh_token=refresh if isinstance(refresh, str) and refresh else None)


def aadsts_code(description: str) -> str | None:
    """``"AADSTS50105: The signed in user..."`` → ``"50105"``."""
    text = description.strip()
    if text.startswith("AADSTS"):
        digits = ""
        for ch in text[6:]:
            if not ch.isdigit():
                break
            digits += ch
        return digits[:9] or None
    return None
