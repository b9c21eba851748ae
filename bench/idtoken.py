"""ID token validations per second (``validate_id_token``) beside raw RSA-2048 verify."""

from __future__ import annotations

import base64
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from agent.devidp.keys import SigningKey, build_jws
from agent.entra.tokens import validate_id_token

from .stack import CLIENT, TENANT

ISSUER = f"https://login.microsoftonline.com/{TENANT}/v2.0"


def _token(key: SigningKey, now: float) -> tuple[str, str]:
    nonce = "0" * 64
    claims = {"iss": ISSUER, "aud": CLIENT, "tid": TENANT, "sub": "s" * 43,
              "oid": "00000000-0000-4000-8000-000000000001", "ver": "2.0", "nonce": nonce,
              "iat": int(now), "nbf": int(now), "exp": int(now) + 3600,
              "preferred_username": "admin@contoso.example", "name": "Adele Vance",
              "given_name": "Adele", "family_name": "Vance", "upn": "admin@contoso.example",
              "groups": ["aaaaaaaa-0000-4000-8000-000000000001"]}
    return build_jws(claims, key), nonce


def _rate(fn: Any, seconds: float) -> float:
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            fn()
        count += 50
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


async def measure(seconds: float) -> dict[str, Any]:
    key = SigningKey.generate()
    now = time.time()
    raw, nonce = _token(key, now)
    pyjwk = jwt.PyJWK(key.jwk(ISSUER), algorithm="RS256")

    async def key_for(kid: str | None) -> Any:
        return pyjwk if kid == key.kid else None

    async def validate_loop() -> float:
        count, start = 0, time.perf_counter()
        while True:
            for _ in range(50):
                await validate_id_token(raw, key_for=key_for, issuer=ISSUER, client_id=CLIENT,
                                        tenant_id=TENANT, nonce_hash=nonce, now=now,
                                        leeway=120.0)
            count += 50
            t = time.perf_counter()
            if t - start >= seconds:
                return count / (t - start)

    signing_input, _, sig_b64 = raw.rpartition(".")
    signature = base64.urlsafe_b64decode(sig_b64 + "=" * (-len(sig_b64) % 4))
    public = pyjwk.key
    data = signing_input.encode()

    def raw_verify() -> None:
        public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())

    raw_rate = _rate(raw_verify, seconds)
    validate_rate = await validate_loop()
    return {"validate_per_s": round(validate_rate), "raw_rsa2048_verify_per_s": round(raw_rate),
            "ratio": round(validate_rate / raw_rate, 3), "token_bytes": len(raw)}
