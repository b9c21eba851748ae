"""What an administrator set on the app registration and in the tenant (``application.py``
answers with it): ``idp.policies``."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class AppPolicies:
    app_disabled: bool = False  # enterprise application: "Enabled for users to sign in" = No
    app_deleted: bool = False
    client_secret_expired: bool = False
    consent_withdrawn: set[str] = field(default_factory=set)  # oids, or "*" for the tenant
    blocked_addresses: set[str] = field(default_factory=set)  # a CA location policy
    loop_limit: tuple[int, float] | None = None  # (refreshes, seconds) before AADSTS50196
    recent_refreshes: dict[str, deque[float]] = field(default_factory=dict)  # oid → times
    # The upn optional claim's additional property: guests get a upn claim only with it.
    include_externally_authenticated_upn: bool = False
