"""Validation of the [local] keys: on-premises accounts beside SSO (part of ``settings``).

``accounts_file`` is where ``sensor-sso-agent local-user`` keeps the accounts;
``sign_in`` says when the sign-in page offers them: ``"never"``, ``"when-sso-unavailable"``
(default: only while Entra ID cannot be reached or SSO is off for this sensor) or
``"always"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .settings import _Validator as Validator

DEFAULT_ACCOUNTS_FILE = Path("/etc/sensor-sso-agent/local-accounts")
SIGN_IN_POLICIES = ("never", "when-sso-unavailable", "always")
LOCAL_KEYS = {"accounts_file", "sign_in"}


@dataclass(frozen=True)
class LocalSettings:
    accounts_file: Path = DEFAULT_ACCOUNTS_FILE
    sign_in: str = "when-sso-unavailable"


def build_local(self: Validator) -> LocalSettings:
    section: Mapping[str, Any] = self.section("local")
    d = LocalSettings()
    path = self.get(section, "local", "accounts_file", str, str(d.accounts_file))
    if not Path(path).is_absolute():
        self.problem("local.accounts_file", path, "must be an absolute path")
    policy = self.get(section, "local", "sign_in", str, d.sign_in)
    if policy not in SIGN_IN_POLICIES:
        self.problem("local.sign_in", policy,
                     "must be one of: " + ", ".join(f'"{p}"' for p in SIGN_IN_POLICIES))
        policy = d.sign_in
    return LocalSettings(accounts_file=Path(path), sign_in=policy)
