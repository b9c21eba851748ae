"""Password hashing (scrypt) and the rules a new password must meet.

scrypt from the standard library (``hashlib.scrypt``, OpenSSL's implementation): memory-hard,
no new dependency to ship offline in the .deb, and the parameters travel in each stored hash
so they can be raised later without breaking existing accounts. The cost is OWASP's
``N=2**15, r=8, p=3`` (one of its equal-strength scrypt settings): 32 MiB and ~0.4 s per
hash on a small appliance, with at most ``CONCURRENT_HASHES`` at a time so a flood of
sign-ins cannot exhaust memory.

Nothing here logs, prints or puts a password into an exception message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import lru_cache
from importlib import resources

from ..errors import AgentError

N, R, P = 2**15, 8, 3
DKLEN = 32
MAXMEM = 256 * 1024 * 1024  # OpenSSL's default limit (32 MiB) is just below 128*N*r
MIN_LENGTH = 12
MAX_LENGTH = 256
CONCURRENT_HASHES = 2
_SCHEME = "scrypt"


class WeakPassword(AgentError, ValueError):
    """A new password breaks a rule; the message says which (never the password)."""


def hash_password(password: str, *, n: int = N, r: int = R, p: int = P) -> str:
    """``scrypt$n=…,r=…,p=…$salt$hash`` (salt and hash base64, unpadded)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r,
                            p=p, maxmem=MAXMEM, dklen=DKLEN)
    return f"{_SCHEME}$n={n},r={r},p={p}${_b64(salt)}${_b64(digest)}"


def _parsed(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    """(n, r, p, salt, digest) of a stored hash that scrypt can check, else None."""
    try:
        scheme, params, salt_text, digest_text = stored.split("$")
        values = dict(item.split("=", 1) for item in params.split(","))
        n, r, p = int(values["n"]), int(values["r"]), int(values["p"])
        salt, expected = _unb64(salt_text), _unb64(digest_text)
    except (ValueError, KeyError):
        return None
    if scheme != _SCHEME or not (2 <= n <= 2**20 and 1 <= r <= 32 and 1 <= p <= 16) \
            or n & (n - 1) or 128 * n * r * (p + 1) > MAXMEM or not 16 <= len(expected) <= 64:
        return None
    return n, r, p, salt, expected


def is_hash(stored: object) -> bool:
    """Whether ``stored`` is a hash ``verify_password`` can check (the accounts file's load)."""
    return isinstance(stored, str) and _parsed(stored) is not None


def verify_password(stored: str, password: str) -> bool:
    """Whether ``password`` matches ``stored``; constant-time comparison; False if malformed."""
    parsed = _parsed(stored)
    if parsed is None:
        return False
    n, r, p, salt, expected = parsed
    digest = hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r,
                            p=p, maxmem=MAXMEM, dklen=len(expected))
    return hmac.compare_digest(digest, expected)


@lru_cache(maxsize=1)
def dummy_hash() -> str:
    """A hash of a random password with the default cost: what unknown names are checked
    against, so an unknown name costs the same work as a wrong password."""
    return hash_password(secrets.token_urlsafe(24))


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    text = resources.files("agent.local").joinpath("common-passwords.txt").read_text("utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines()
                     if line.strip() and not line.startswith("#"))


def check_new_password(password: str, name: str) -> None:
    """Raise ``WeakPassword`` saying which rule ``password`` breaks."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"too short: at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"too long: at most {MAX_LENGTH} characters")
    if not password.isprintable():
        raise WeakPassword("contains control characters")
    lowered = password.lower()
    common = common_passwords()
    stem = lowered.rstrip("0123456789!@#$%^&*()-_=+.?,;:~ ")
    if lowered in common or stem in common or _repeats(lowered) or _repeats(stem):
        raise WeakPassword("one of the commonest passwords (or one with digits appended); "
                           "choose a longer passphrase")
    if name and name.lower() in lowered:
        raise WeakPassword("contains the account name")


def _repeats(text: str) -> bool:
    """A short unit repeated (``abcabcabcabc``), or empty."""
    return not text or any(len(text) % k == 0 and text[:k] * (len(text) // k) == text
                           for k in range(1, min(5, len(text)) + 1))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
