"""``validate_id_token`` on its own: a locally generated RSA key, a local JWKS, a fixed clock.

One test class per check the validator makes (signature, issuer, audience, tenant, times,
nonce, subject). Each class holds at least one token that the check alone refuses, and the
accepted neighbour proves the refusal comes from that check and not from another.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.entra.tokens import validate_id_token
from agent.errors import SignInError, SignInRefused, SignInRejected

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "0b8e4c6d-2a33-4e0c-9f4e-8e0f3b9b6a11"
ISSUER = f"https://login.microsoftonline.com/{TENANT}/v2.0"
NONCE = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
NOW = 1_800_000_000.0
LEEWAY = 120.0
KID = "key-1"
DROP = object()  # a claim or header value that means "leave it out"


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


TENANT_KEY = _rsa()
OTHER_KEY = _rsa()


def _jwks(*keys: tuple[str, rsa.RSAPrivateKey]) -> dict[str, Any]:
    entries = []
    for kid, private in keys:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
        entries.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
    return {"keys": entries}


class LocalDirectory:
    """The tenant's published keys, looked up by ``kid`` as the agent's directory does."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.keys = {key.key_id: key for key in jwt.PyJWKSet.from_dict(jwks).keys}
        self.asked: list[str | None] = []

    async def key_for(self, kid: str | None) -> Any | None:
        self.asked.append(kid)
        return self.keys.get(kid) if kid is not None else None


def claims(**changes: object) -> dict[str, Any]:
    """A valid Entra v2 ID token's claims, with ``changes`` applied (``DROP`` removes one)."""
    base: dict[str, Any] = {
        "iss": ISSUER, "aud": CLIENT, "tid": TENANT, "ver": "2.0", "nonce": NONCE,
        "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
        "oid": "00000000-0000-4000-8000-000000000001",
        "iat": int(NOW), "nbf": int(NOW), "exp": int(NOW) + 3600,
        "preferred_username": "admin@contoso.example",
    }
    for name, value in changes.items():
        if value is DROP:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def token(payload: dict[str, Any] | None = None, *, key: Any = TENANT_KEY,
          algorithm: str = "RS256", header: dict[str, object] | None = None) -> str:
    """Sign ``payload`` (default: valid claims) with ``key``; ``header`` adds or drops fields."""
    fields: dict[str, Any] = {"kid": KID, "typ": "JWT"}
    for name, value in (header or {}).items():
        if value is DROP:
            fields.pop(name, None)
        else:
            fields[name] = value
    return jwt.encode(claims() if payload is None else payload, key, algorithm=algorithm,
                      headers=fields)


def signed_by_hand(header: dict[str, Any], payload: dict[str, Any]) -> str:
    """RS256 over any header, even one PyJWT would refuse to write."""
    signing_input = b".".join(jwt.utils.base64url_encode(json.dumps(part).encode())
                              for part in (header, payload))
    signature = TENANT_KEY.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return (signing_input + b"." + jwt.utils.base64url_encode(signature)).decode()


async def validate(raw: object, *, directory: LocalDirectory | None = None,
                   now: float = NOW, **overrides: Any) -> dict[str, Any]:
    directory = directory or LocalDirectory(_jwks((KID, TENANT_KEY)))
    arguments: dict[str, Any] = {"issuer": ISSUER, "client_id": CLIENT, "tenant_id": TENANT,
                                 "nonce_hash": NONCE, "leeway": LEEWAY, **overrides}
    return await validate_id_token(raw, key_for=directory.key_for, now=now, **arguments)


async def refused(raw: object, **overrides: Any) -> SignInError:
    with pytest.raises(SignInError) as caught:
        await validate(raw, **overrides)
    return caught.value


async def rejected_because(raw: object, **overrides: Any) -> str:
    """The reason code of a ``SignInRejected`` (400), failing if it was anything else."""
    error = await refused(raw, **overrides)
    assert isinstance(error, SignInRejected), error
    return error.reason


class TestAccepted:
    async def test_valid_token_returns_its_claims(self) -> None:
        """A token that passes every check comes back as its claims, unchanged."""
        assert claims() == await validate(token())

    async def test_key_is_looked_up_by_the_tokens_kid(self) -> None:
        """The validator asks the directory for exactly the kid in the header."""
        directory = LocalDirectory(_jwks(("other", OTHER_KEY), (KID, TENANT_KEY)))
        await validate(token(), directory=directory)
        assert [KID] == directory.asked


class TestSignature:
    async def test_payload_changed_after_signing(self) -> None:
        """A token whose payload was altered after signing fails the signature check."""
        header, _, signature = token().split(".")
        forged = jwt.utils.base64url_encode(
            json.dumps(claims(preferred_username="root@contoso.example")).encode()).decode()
        assert "id_token_bad_signature" == await rejected_because(f"{header}.{forged}.{signature}")

    async def test_signed_by_another_key_under_the_tenants_kid(self) -> None:
        """Claiming the tenant's kid does not help a token signed by a different key."""
        assert "id_token_bad_signature" == await rejected_because(token(key=OTHER_KEY))

    async def test_kid_the_tenant_never_published(self) -> None:
        """A kid the directory does not know is refused before any signature check."""
        assert "id_token_unknown_key" == await rejected_because(token(header={"kid": "forged"}))

    async def test_no_kid_and_no_key_from_the_directory(self) -> None:
        """Without a kid the directory's answer decides; no key means refused."""
        assert "id_token_unknown_key" == await rejected_because(token(header={"kid": DROP}))

    async def test_unsigned_token(self) -> None:
        """alg none is refused."""
        raw = token(key="", algorithm="none")
        assert "id_token_bad_algorithm" == await rejected_because(raw)

    async def test_hs256_keyed_with_the_public_key(self) -> None:
        """Algorithm confusion (HS256 with the tenant's public key as secret) is refused."""
        secret = TENANT_KEY.public_key().public_bytes(Encoding.PEM,
                                                      PublicFormat.SubjectPublicKeyInfo)
        signing_input = b".".join(
            jwt.utils.base64url_encode(json.dumps(part).encode())
            for part in ({"alg": "HS256", "kid": KID, "typ": "JWT"}, claims()))
        mac = hmac.new(secret, signing_input, hashlib.sha256).digest()
        raw = (signing_input + b"." + jwt.utils.base64url_encode(mac)).decode()
        assert "id_token_bad_algorithm" == await rejected_because(raw)

    @pytest.mark.parametrize("name", ["jku", "x5u", "jwk", "x5c"])
    async def test_key_location_headers_are_not_followed(self, name: str) -> None:
        """A header pointing at keys elsewhere is refused even when the signature is good."""
        raw = token(header={name: "https://attacker.example/keys"})
        assert "id_token_foreign_key_reference" == await rejected_because(raw)

    async def test_kid_of_wrong_type(self) -> None:
        """A non-string kid is a malformed token; the directory is never asked."""
        directory = LocalDirectory(_jwks((KID, TENANT_KEY)))
        raw = signed_by_hand({"alg": "RS256", "kid": ["a", "b"]}, claims())
        assert "id_token_malformed" == await rejected_because(raw, directory=directory)
        assert [] == directory.asked

    @pytest.mark.parametrize("raw", [None, 42, "", "a.b", "not.a.token", "a.b.c.d"])
    async def test_not_a_token(self, raw: object) -> None:
        """Anything that is not a three-part compact JWS is malformed, never a crash."""
        assert "id_token_malformed" == await rejected_because(raw)

    @pytest.mark.parametrize("header", ["!!!!", "e30!", "WzFd", "eyJhbGc", "_w", ""])
    async def test_unreadable_header(self, header: str) -> None:
        """A header that is not base64url, not JSON, or not a JSON object ("WzFd" is [1])
        is malformed; the directory is never asked for a key."""
        directory = LocalDirectory(_jwks((KID, TENANT_KEY)))
        _, payload, signature = token().split(".")
        raw = f"{header}.{payload}.{signature}"
        assert "id_token_malformed" == await rejected_because(raw, directory=directory)
        assert [] == directory.asked

    @pytest.mark.parametrize("inner", [b"[" * 60_000, b'{"a":' * 60_000,
                                       b'{"alg":"RS256","pad":"' + b"x" * 5000 + b'"}'],
                             ids=["nested_arrays", "nested_objects", "oversized"])
    async def test_nested_or_oversized_header(self, inner: bytes) -> None:
        """A header nested 60,000 deep (RecursionError in the JSON parser) or longer than
        MAX_HEADER is malformed, refused before it is parsed; never an exception."""
        directory = LocalDirectory(_jwks((KID, TENANT_KEY)))
        _, payload, signature = token().split(".")
        raw = f"{jwt.utils.base64url_encode(inner).decode()}.{payload}.{signature}"
        assert "id_token_malformed" == await rejected_because(raw, directory=directory)
        assert [] == directory.asked

    async def test_signed_payload_nested_too_deeply(self) -> None:
        """A correctly signed token whose payload nests 60,000 deep is malformed."""
        signing_input = jwt.utils.base64url_encode(json.dumps(
            {"alg": "RS256", "kid": KID}).encode()) + b"." + jwt.utils.base64url_encode(
            b"[" * 60_000)
        signature = TENANT_KEY.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        raw = (signing_input + b"." + jwt.utils.base64url_encode(signature)).decode()
        assert "id_token_malformed" == await rejected_because(raw)


class TestIssuer:
    async def test_another_issuer(self) -> None:
        """A token from another tenant's issuer is refused."""
        other = "https://login.microsoftonline.com/common/v2.0"
        assert "id_token_wrong_issuer" == await rejected_because(token(claims(iss=other)))

    async def test_issuer_must_match_exactly(self) -> None:
        """A trailing slash is another issuer."""
        assert "id_token_wrong_issuer" == await rejected_because(token(claims(iss=ISSUER + "/")))

    async def test_issuer_missing(self) -> None:
        """A token without iss is refused."""
        assert "id_token_missing_claim" == await rejected_because(token(claims(iss=DROP)))


class TestAudience:
    async def test_another_application(self) -> None:
        """A token for another client id is refused."""
        other = "11111111-2222-4333-8444-555555555555"
        assert "id_token_wrong_audience" == await rejected_because(token(claims(aud=other)))

    async def test_several_audiences_without_azp(self) -> None:
        """Several audiences including ours, but no azp naming us, is refused."""
        raw = token(claims(aud=[CLIENT, "other-app"]))
        assert "id_token_wrong_audience" == await rejected_because(raw)

    async def test_several_audiences_with_another_azp(self) -> None:
        """Several audiences with azp naming another party is refused."""
        raw = token(claims(aud=[CLIENT, "other-app"], azp="other-app"))
        assert "id_token_wrong_audience" == await rejected_because(raw)

    async def test_several_audiences_with_our_azp(self) -> None:
        """Several audiences are accepted when azp is this client."""
        payload = claims(aud=[CLIENT, "other-app"], azp=CLIENT)
        assert payload == await validate(token(payload))

    async def test_single_audience_list(self) -> None:
        """A one-element audience list naming this client is accepted."""
        assert [CLIENT] == (await validate(token(claims(aud=[CLIENT]))))["aud"]

    async def test_audience_list_without_us(self) -> None:
        """An audience list not naming this client is refused, whatever azp says."""
        raw = token(claims(aud=["other-app"], azp=CLIENT))
        assert "id_token_wrong_audience" == await rejected_because(raw)

    async def test_audience_missing(self) -> None:
        """A token without aud is refused."""
        assert "id_token_missing_claim" == await rejected_because(token(claims(aud=DROP)))


class TestTenant:
    async def test_another_tenant(self) -> None:
        """An account of another tenant is refused (403, the identity is genuine)."""
        other = "99999999-86f1-41af-91ab-2d7cd011db47"
        error = await refused(token(claims(tid=other)))
        assert (SignInRefused, "wrong_tenant") == (type(error), error.reason)

    async def test_tenant_id_compared_without_case(self) -> None:
        """The tenant id is a GUID: upper case in the token is the same tenant."""
        assert TENANT.upper() == (await validate(token(claims(tid=TENANT.upper()))))["tid"]

    async def test_tenant_of_wrong_type(self) -> None:
        """A non-string tid is refused."""
        error = await refused(token(claims(tid=[TENANT])))
        assert "wrong_tenant" == error.reason

    async def test_tenant_missing(self) -> None:
        """A token without tid is refused."""
        assert "id_token_missing_claim" == await rejected_because(token(claims(tid=DROP)))


class TestTimes:
    async def test_expired_beyond_the_skew(self) -> None:
        """A token whose exp plus the allowed skew has passed is refused."""
        raw = token(claims(exp=int(NOW - LEEWAY)))
        assert "id_token_expired" == await rejected_because(raw)

    async def test_expired_within_the_skew(self) -> None:
        """A token that expired less than the skew ago is still accepted."""
        assert await validate(token(claims(exp=int(NOW - LEEWAY) + 1)))

    async def test_expiry_follows_the_injected_clock(self) -> None:
        """The clock passed in decides, not the machine's time."""
        raw = token()
        assert "id_token_expired" == await rejected_because(raw, now=NOW + 3600 + LEEWAY)

    async def test_expiry_missing(self) -> None:
        """A token without exp is refused."""
        assert "id_token_missing_claim" == await rejected_because(token(claims(exp=DROP)))

    async def test_issued_in_the_future_beyond_the_skew(self) -> None:
        """An iat later than now plus the skew is refused."""
        raw = token(claims(iat=int(NOW + LEEWAY) + 1))
        assert "id_token_not_yet_valid" == await rejected_because(raw)

    async def test_issued_in_the_future_within_the_skew(self) -> None:
        """An iat up to the skew ahead of the clock is accepted."""
        assert await validate(token(claims(iat=int(NOW + LEEWAY), nbf=DROP)))

    async def test_issued_at_missing(self) -> None:
        """A token without iat is refused."""
        assert "id_token_missing_claim" == await rejected_because(token(claims(iat=DROP)))

    async def test_not_before_beyond_the_skew(self) -> None:
        """An nbf later than now plus the skew is refused."""
        raw = token(claims(nbf=int(NOW + LEEWAY) + 1))
        assert "id_token_not_yet_valid" == await rejected_because(raw)

    async def test_not_before_within_the_skew(self) -> None:
        """An nbf up to the skew ahead of the clock is accepted."""
        assert await validate(token(claims(nbf=int(NOW + LEEWAY))))

    async def test_not_before_is_optional(self) -> None:
        """A token without nbf is accepted."""
        assert await validate(token(claims(nbf=DROP)))

    @pytest.mark.parametrize("name", ["exp", "iat", "nbf"])
    @pytest.mark.parametrize("value", ["1800000000", True, [1]])
    async def test_time_that_is_not_a_number(self, name: str, value: object) -> None:
        """exp, iat and nbf must be numbers (a boolean is not one)."""
        assert "id_token_malformed" == await rejected_because(token(claims(**{name: value})))


class TestNonce:
    async def test_nonce_of_another_sign_in(self) -> None:
        """A token minted for another sign-in (other nonce) is refused."""
        raw = token(claims(nonce="0" * 64))
        assert "id_token_nonce_mismatch" == await rejected_because(raw)

    async def test_nonce_compared_exactly(self) -> None:
        """A nonce differing only in case is another nonce."""
        raw = token(claims(nonce=NONCE.upper()))
        assert "id_token_nonce_mismatch" == await rejected_because(raw)

    async def test_nonce_of_wrong_type(self) -> None:
        """A non-string nonce is refused."""
        assert "id_token_nonce_mismatch" == await rejected_because(token(claims(nonce=[NONCE])))

    async def test_nonce_missing(self) -> None:
        """A token without a nonce is refused."""
        assert "id_token_missing_claim" == await rejected_because(token(claims(nonce=DROP)))


class TestRefreshedToken:
    """``nonce_hash=None``: an ID token from a refresh, which Entra sends without a nonce."""

    async def test_no_nonce_is_accepted(self) -> None:
        """A refreshed ID token without a nonce is valid."""
        payload = claims(nonce=DROP)
        assert payload == await validate(token(payload), nonce_hash=None)

    @pytest.mark.parametrize(("changes", "reason"), [
        ({"aud": "other-app"}, "id_token_wrong_audience"),
        ({"iss": "https://login.microsoftonline.com/common/v2.0"}, "id_token_wrong_issuer"),
        ({"exp": int(NOW - LEEWAY)}, "id_token_expired"),
        ({"sub": ""}, "id_token_missing_claim"),
    ])
    async def test_every_other_check_still_applies(self, changes: dict[str, object],
                                                   reason: str) -> None:
        """Without a nonce to compare, audience, issuer, expiry and subject still count."""
        raw = token(claims(nonce=DROP, **changes))
        assert reason == await rejected_because(raw, nonce_hash=None)

    async def test_signature_still_applies(self) -> None:
        """A refreshed token signed by another key is refused."""
        raw = token(claims(nonce=DROP), key=OTHER_KEY)
        assert "id_token_bad_signature" == await rejected_because(raw, nonce_hash=None)

    async def test_tenant_still_applies(self) -> None:
        """A refreshed token of another tenant is refused."""
        error = await refused(token(claims(nonce=DROP, tid="99999999-86f1-41af-91ab-2d7cd011db47")),
                              nonce_hash=None)
        assert "wrong_tenant" == error.reason


class TestSubject:
    async def test_subject_missing(self) -> None:
        """A token without sub is refused."""
        assert "id_token_missing_claim" == await rejected_because(token(claims(sub=DROP)))

    async def test_subject_empty(self) -> None:
        """An empty sub names nobody and is refused."""
        assert "id_token_missing_claim" == await rejected_because(token(claims(sub="")))

    @pytest.mark.parametrize("value", [42, ["s"], {"id": "s"}])
    async def test_subject_not_a_string(self, value: object) -> None:
        """A non-string sub is refused."""
        assert await rejected_because(token(claims(sub=value))) in {
            "id_token_missing_claim", "id_token_malformed"}


class TestObjectId:
    async def test_object_id_is_optional(self) -> None:
        """Without oid the token stands on sub (sign-in falls back to it)."""
        assert "oid" not in await validate(token(claims(oid=DROP)))

    @pytest.mark.parametrize("value", [42, "", ["11111111-2222-3333-4444-555555555555"],
                                       {"id": "x"}, True])
    async def test_object_id_not_a_nonempty_string(self, value: object) -> None:
        """An oid that is not a non-empty string is refused, not turned into the session's id."""
        assert "id_token_malformed" == await rejected_because(token(claims(oid=value)))
