"""``[local]``: on-premises accounts beside SSO.

``accounts_file`` is where ``sensor-sso-agent local-user`` keeps the accounts;
``sign_in`` says when the sign-in page offers them: ``"never"``, ``"when-sso-unavailable"``
(default: only while Entra ID cannot be reached or SSO is off for this sensor) or
``"always"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .model import SIGN_IN_POLICIES, LocalSettings
from .problems import Problems

LOCAL_KEYS = {"accounts_file", "sign_in"}


def build_local(p: Problems, section: Mapping[str, Any]) -> LocalSettings:
    d = LocalSettings()
    path = p.get(section, "local", "accounts_file", str, str(d.accounts_file))
    if not Path(path).is_absolute():
        p.problem("local.accounts_file", path, "must be an absolute path")
    policy = p.get(section, "local", "sign_in", str, d.sign_in)
    if policy not in SIGN_IN_POLICIES:
        p.problem("local.sign_in", policy,
                  "must be one of: " + ", ".join(f'"{x}"' for x in SIGN_IN_POLICIES))
        policy = d.sign_in
    return LocalSettings(accounts_file=Path(path), sign_in=policy)
