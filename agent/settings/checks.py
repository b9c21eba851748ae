"""Checks beyond the shape of the file: placeholders left from the example, and warnings.

``config/agent.example.toml`` parses as a valid file, but with its all-zero tenant and client
ids and its example group ids no one can ever sign in. ``placeholder_problems`` names each
one left, so ``check-config`` exits 1 and ``serve`` refuses to start until they are replaced.
``config_warnings`` are printed by ``check-config`` and logged by ``serve`` but do not fail them.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..clientaddr import exposure_warnings
from .model import Settings
from .problems import Problem
from .values import ZERO_GUID

EXAMPLE_GROUPS = {"11111111-1111-1111-1111-111111111111": "admin",
                  "22222222-2222-2222-2222-222222222222": "security_analyst",
                  "33333333-3333-3333-3333-333333333333": "read_only"}
EXAMPLE_REDIRECT_HOST = "sensor-01.plant.example"


def placeholder_problems(settings: Settings) -> list[Problem]:
    """(key, value, why) for every example value still in ``settings``."""
    if settings.sso_off:  # no [[setting]] applies here: no tenant, no groups to check
        return []
    problems: list[Problem] = []
    for key, value, what in (
            ("entra.tenant_id", settings.entra.tenant_id,
             "Entra ID > Overview > Directory (tenant) ID"),
            ("entra.client_id", settings.entra.client_id,
             "the app registration's Overview > Application (client) ID")):
        if value == ZERO_GUID:
            problems.append((key, repr(value), f"still the example's placeholder: set {what}"))
    for role, groups in settings.roles.items():
        for group in groups:
            if group in EXAMPLE_GROUPS:
                problems.append((f"roles.{role}", repr(group), "still the example's "
                                 "placeholder: set the object ids of your Entra groups"))
    return problems


def config_warnings(settings: Settings) -> list[str]:
    """What works but is probably not meant: deprecated keys, self-chosen client addresses,
    the example's host in the redirect URI."""
    out = []
    server = settings.server
    if server.trust_forwarded_for is not None:
        now = ", ".join(f'"{p}"' for p in server.trusted_proxies)
        out.append(f"server.trust_forwarded_for is deprecated and will be removed: replace it "
                   f"by trusted_proxies (now in effect: [{now}]; the default is the "
                   "loopback proxy, [\"127.0.0.1\", \"::1\"])")
        if not server.trusted_proxies:
            out.append("server.trust_forwarded_for = false: every browser behind the "
                       "console's nginx counts as one client (the proxy's address), so one "
                       "client's limits refuse everyone; remove the line")
    out.extend(exposure_warnings(server.listen_host, server.trusted_proxies))
    if not settings.sso_off and \
            urlsplit(settings.entra.redirect_uri).hostname == EXAMPLE_REDIRECT_HOST:
        out.append(f"entra.redirect_uri: still the example's host {EXAMPLE_REDIRECT_HOST}: "
                   "set this sensor's URL exactly as registered in the app registration")
    return out
