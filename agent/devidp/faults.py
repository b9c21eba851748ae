"""Misbehaviour on demand: per-endpoint faults, ID token tweaks, Entra/Graph-shaped errors."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .keys import SIGNING_MODES, SigningMode

ENDPOINTS = frozenset(
    {
        "discovery", "jwks", "authorize", "login", "mfa", "token", "logout", "userinfo",
        "graph_me", "graph_check_member_groups", "graph_get_member_objects",
        "authorize_response",
    }
)
"""Endpoint names used by ``DevIdentityProvider.requests`` and ``.faults``.

``authorize_response`` is the final redirect back to the client after sign-in.
"""


@dataclass
class Fault:
    """Wait ``delay`` seconds, then (if ``status`` is set) answer this instead of normally.

    ``times``: apply only that many times, then the fault removes itself (None = forever).
    """

    status: int | None = None
    body: bytes | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    times: int | None = None


class FaultMap(dict[str, Fault]):
    """``dict`` of endpoint name to ``Fault`` that refuses unknown endpoint names."""

    def __setitem__(self, key: str, value: Fault) -> None:
        if key not in ENDPOINTS:
            raise KeyError(f"unknown endpoint {key!r}; one of {sorted(ENDPOINTS)}")
        if not isinstance(value, Fault):
            raise TypeError("value must be a Fault")
        super().__setitem__(key, dataclasses.replace(value))  # a copy: ``times`` counts down

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    async def apply(self, name: str) -> web.Response | None:
        """Run the fault for ``name`` if any; return the response to send instead, or None."""
        fault = self.get(name)
        if fault is None:
            return None
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                self.pop(name, None)
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.status is None:
            return None
        return web.Response(
            status=fault.status,
            body=fault.body or b"",
            headers={"Content-Type": fault.content_type, **fault.headers},
        )


@dataclass(slots=True)
class TokenTweaks:
    """How the next ID tokens (and discovery, JWKS) misbehave; ``clear()`` makes them honest.

    ``claims`` / ``header``: merged into the ID token's claims / JOSE header (a ``DELETE``
    value removes the entry); ``raw_header``: these bytes, base64url-encoded, instead of the
    JOSE header (a hostile provider's; the signature then matches nothing);
    ``signing``: one of ``SIGNING_MODES``; ``discovery_issuer``:
    the ``issuer`` discovery announces instead of the real one; ``jwks_without_kid``: keys
    and tokens carry no ``kid``. An unknown name raises ``AttributeError``, an unknown
    signing mode ``ValueError``.
    """

    claims: dict[str, Any] = field(default_factory=dict)
    header: dict[str, Any] = field(default_factory=dict)
    raw_header: bytes | None = None
    signing: SigningMode = "normal"
    discovery_issuer: str | None = None
    jwks_without_kid: bool = False

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "signing" and value not in SIGNING_MODES:
            raise ValueError(f"unknown signing mode {value!r}; one of {sorted(SIGNING_MODES)}")
        object.__setattr__(self, name, value)

    def update(self, **changes: Any) -> None:
        """Set several tweaks at once."""
        for name, value in changes.items():
            setattr(self, name, value)

    def clear(self) -> None:
        """Back to honest tokens."""
        honest = TokenTweaks()
        for name in self.__slots__:
            setattr(self, name, getattr(honest, name))


def _timestamp(now: float) -> str:
    return datetime.datetime.fromtimestamp(now, datetime.UTC).strftime(
        "%Y-%m-%d %H:%M:%SZ"
    )


def unknown_client(client_id: str, tenant_id: str) -> str:
    """Entra's AADSTS700016 message (authorize page and token endpoint alike)."""
    return (f"Application with identifier '{client_id}' was not found in the directory "
            f"'{tenant_id}'. This can happen if the application has not been installed by the "
            "administrator of the tenant or consented to by any user in the tenant. You may have "
            "sent your authentication request to the wrong tenant.")


def entra_error_body(code: int, message: str, error: str, now: float,
                     correlation_id: str | None = None, **extra: str) -> dict[str, Any]:
    """The JSON body Entra's token/discovery endpoints send with an AADSTS error
    (``extra``: e.g. ``suberror``)."""
    trace_id = str(uuid.uuid4())
    correlation_id = correlation_id or str(uuid.uuid4())
    ts = _timestamp(now)
    return {
        "error": error,
        "error_description": (
            f"AADSTS{code}: {message}\r\nTrace ID: {trace_id}\r\n"
            f"Correlation ID: {correlation_id}\r\nTimestamp: {ts}"
        ),
        "error_codes": [code],
        "timestamp": ts,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
        **extra,
    }


def entra_error(request: web.Request, status: int, error: str, code: int, message: str,
                now: float, **extra: str) -> web.Response:
    """An Entra-shaped JSON error response (echoes MSAL's ``client-request-id``)."""
    body = entra_error_body(code, message, error, now, request.headers.get("client-request-id"),
                            **extra)
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})


def graph_error(status: int, code: str, message: str, now: float,
                headers: dict[str, str] | None = None) -> web.Response:
    """A Microsoft Graph-shaped JSON error response."""
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": _timestamp(now).replace(" ", "T").replace("Z", ""),
                "request-id": str(uuid.uuid4()),
                "client-request-id": str(uuid.uuid4()),
            },
        }
    }
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json",
        headers=headers or {},
    )
