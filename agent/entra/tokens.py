"""ID token validation with PyJWT, independent of MSAL (which validates nothing).

RS256 only; the signature against the tenant's JWKS; exact ``iss`` from discovery;
``aud`` = client id (several audiences only with ``azp`` = client id); ``tid`` = tenant;
``exp``/``nbf``/``iat`` against the injected clock with a small leeway; ``nonce`` against
the hash MSAL sent (``nonce_hash=None`` for a refreshed ID token: Entra puts no nonce in
it); ``sub`` present; ``oid``, when present, a non-empty string. Key-location headers
(``jku``, ``x5u``, ``jwk``) are never followed: a token carrying one is refused.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import jwt

from ..errors import SignInRefused, SignInRejected

KeyLookup = Callable[[str | None], Awaitable[Any | None]]

_FOREIGN_KEY_HEADERS = ("jku", "x5u", "jwk", "x5c")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")
# base64url characters of the JOSE header: Entra's are about 120; 4 KiB leaves room for any
# honest header (x5t, kid, typ, alg, nonce) and nothing a parser could choke on.
MAX_HEADER = 4096


def _unverified_header(raw: str) -> dict[str, Any]:
    """The JOSE header, to pick the key (``jwt.decode`` checks all of it again). Not
    ``jwt.get_unverified_header``: that reads and checks every segment, payload and
    signature too, character by character, doubling the cost of a validation.

    Capped at ``MAX_HEADER`` characters before anything parses it, and any failure to parse
    it (``RecursionError`` from a deeply nested one included) is a ``ValueError``: a hostile
    provider's header is a malformed token, never an exception that escapes."""
    segment = raw.partition(".")[0]
    if len(segment) > MAX_HEADER:
        raise ValueError("header too long")
    if not _BASE64URL.fullmatch(segment):
        raise ValueError("not base64url")
    segment = segment.rstrip("=")
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except RecursionError:
        raise ValueError("header nested too deeply") from None
    if not isinstance(header, dict):
        raise ValueError("not an object")
    return header


async def validate_id_token(
    raw: object, *, key_for: KeyLookup, issuer: str, client_id: str, tenant_id: str,
    nonce_hash: str | None, now: float, leeway: float,
) -> dict[str, Any]:
    """Return the claims of a valid ID token; raise ``SignInRejected`` with a reason otherwise."""
    if not isinstance(raw, str) or raw.count(".") != 2:
        raise SignInRejected("id_token_malformed", "the identity provider sent no usable ID token")
    try:
        header = _unverified_header(raw)
    except ValueError:  # binascii.Error, JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise SignInRejected("id_token_malformed", "the ID token header is unreadable") from None
    if header.get("alg") != "RS256":
        raise SignInRejected("id_token_bad_algorithm",
                             f"the ID token is signed with {str(header.get('alg'))[:20]!r}, "
                             "only RS256 is accepted")
    if any(name in header for name in _FOREIGN_KEY_HEADERS):
        raise SignInRejected("id_token_foreign_key_reference",
                             "the ID token points at signing keys elsewhere")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise SignInRejected("id_token_malformed", "the ID token's kid is not a string")
    key = await key_for(kid)
    if key is None:
        raise SignInRejected("id_token_unknown_key",
                             "the ID token is not signed by a key of this tenant")
    try:
        claims: dict[str, Any] = jwt.decode(
            raw, key, algorithms=["RS256"], issuer=issuer,
            options={
                "require": ["iss", "aud", "exp", "iat", "sub", "tid"]
                + (["nonce"] if nonce_hash is not None else []),
                "verify_aud": False,  # checked below, with the azp rule
                "verify_exp": False, "verify_nbf": False, "verify_iat": False,  # injected clock
            },
        )
    except jwt.InvalidSignatureError:
        raise SignInRejected("id_token_bad_signature",
                             "the ID token signature is invalid") from None
    except jwt.InvalidIssuerError:
        raise SignInRejected("id_token_wrong_issuer",
                             "the ID token was issued by someone else") from None
    except jwt.MissingRequiredClaimError as exc:
        raise SignInRejected("id_token_missing_claim",
                             f"the ID token lacks the {exc.claim!r} claim") from None
    except jwt.PyJWTError:  # PyJWT turns a payload's RecursionError into DecodeError too
        raise SignInRejected("id_token_malformed", "the ID token cannot be decoded") from None

    _check_audience(claims, client_id)
    _check_times(claims, now, leeway)
    if not isinstance(claims["sub"], str) or not claims["sub"]:
        raise SignInRejected("id_token_missing_claim", "the ID token lacks the 'sub' claim")
    oid = claims.get("oid")  # optional; when present it is the session's user id
    if oid is not None and (not isinstance(oid, str) or not oid):
        raise SignInRejected("id_token_malformed", "the ID token's 'oid' is not a string")
    nonce = claims.get("nonce")
    if nonce_hash is not None and (not isinstance(nonce, str) or not hmac.compare_digest(
            nonce.encode(), nonce_hash.encode())):
        raise SignInRejected("id_token_nonce_mismatch",
                             "the ID token belongs to another sign-in (nonce)")
    tid = claims["tid"]
    if not isinstance(tid, str) or tid.lower() != tenant_id.lower():
        raise SignInRefused("wrong_tenant", "the account belongs to another Entra ID tenant")
    return claims


def _check_audience(claims: dict[str, Any], client_id: str) -> None:
    aud = claims.get("aud")
    if isinstance(aud, str):
        if aud != client_id:
            raise SignInRejected("id_token_wrong_audience",
                                 "the ID token is for another application")
        return
    if isinstance(aud, list) and client_id in aud and all(isinstance(a, str) for a in aud):
        if len(aud) == 1 or claims.get("azp") == client_id:
            return
    raise SignInRejected("id_token_wrong_audience", "the ID token is for another application")


def _check_times(claims: dict[str, Any], now: float, leeway: float) -> None:
    for name in ("exp", "iat"):
        if not isinstance(claims.get(name), int | float) or isinstance(claims[name], bool):
            raise SignInRejected("id_token_malformed", f"the ID token's {name!r} is not a number")
    if claims["exp"] + leeway <= now:
        raise SignInRejected("id_token_expired", "the ID token has expired")
    if claims["iat"] - leeway > now:
        raise SignInRejected("id_token_not_yet_valid", "the ID token was issued in the future")
    nbf = claims.get("nbf")
    if nbf is not None:
        if not isinstance(nbf, int | float) or isinstance(nbf, bool):
            raise SignInRejected("id_token_malformed", "the ID token's 'nbf' is not a number")
        if nbf - leeway > now:
            raise SignInRejected("id_token_not_yet_valid", "the ID token is not valid yet")
