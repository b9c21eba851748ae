"""Checks beyond the shape of the file: placeholders left from the example, and warnings.

``config/agent.example.toml`` parses as a valid file, but with its all-zero tenant and client
ids and its example group ids no one can ever sign in. ``placeholder_problems`` names each
one left, so ``check-config`` exits 1 and ``serve`` refuses to start until they are replaced.
``config_warnings`` are printed by ``check-config`` and logged by ``serve`` but do not fail them.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..clientaddr import exposure_warnings, parse_address
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
    metrics open beyond loopback, the example's host in the redirect URI."""
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
    out.extend(metrics_warnings(settings))
    out.extend(entra_warnings(settings))
    if not settings.sso_off and \
            urlsplit(settings.entra.redirect_uri).hostname == EXAMPLE_REDIRECT_HOST:
        out.append(f"entra.redirect_uri: still the example's host {EXAMPLE_REDIRECT_HOST}: "
                   "set this sensor's URL exactly as registered in the app registration")
    return out


def metrics_warnings(settings: Settings) -> list[str]:
    """``[metrics] listen`` beyond loopback: the listener has no authentication and no TLS."""
    host = settings.metrics.listen_host
    if host is None or host == "localhost":
        return []
    address = parse_address(host)
    if address is not None and address.is_loopback:
        return []
    return [f"metrics.listen = {settings.metrics.listen!r} is not a loopback address: the "
            "metrics listener has no authentication and no TLS, so anyone who reaches it "
            "reads the sign-in counts and the agent's health; bind it to 127.0.0.1 (scrape "
            "through a Prometheus agent or a tunnel on the sensor) or to a monitoring "
            "network only, behind a firewall"]


MIN_SAFE_MAX_AGE = 300.0  # a slow MFA approval must fit (auth_time is the first factor)
MIN_SAFE_REVALIDATE = 60.0  # below this, one session refreshes dozens of times in 5 minutes


def refreshes_in_five_minutes(interval: float) -> int:
    """How often one session is refreshed in 5 minutes (every 75-87.5 % of an interval)."""
    return round(300.0 / (interval * 0.8125))


def entra_warnings(settings: Settings) -> list[str]:
    """Values Entra ID makes risky: a short max_age, a short revalidate_interval, a
    login_hint that is never sent."""
    if settings.sso_off:
        return []
    entra, out = settings.entra, []
    if entra.max_age is not None and entra.max_age < MIN_SAFE_MAX_AGE:
        out.append(f"entra.max_age = {entra.max_age:g}s is below 5 minutes: auth_time is when "
                   "the first factor was entered, so a slow MFA approval makes sign-ins fail "
                   "as reauthentication_required, and Entra shortens the ID token to max_age "
                   "(it can arrive expired); use at least \"5m\"")
    interval = settings.session.revalidate_interval
    if interval < MIN_SAFE_REVALIDATE:
        out.append(f"session.revalidate_interval = {interval:g}s: each SSO session is refreshed "
                   f"about {refreshes_in_five_minutes(interval)} times in 5 minutes, and Entra "
                   "ID's loop detection (AADSTS50196) may refuse such repeated refreshes "
                   "(re-validation then pauses as if Entra ID were unavailable); use at least "
                   "\"1m\"")
    if entra.login_hint and entra.prompt == "select_account":
        out.append("entra.login_hint is never sent: Entra does not accept it with prompt = "
                   "\"select_account\"; remove one of them")
    return out


def entra_notes(settings: Settings) -> list[str]:
    """What check-config says about [entra] keys whose effect depends on the tenant."""
    if settings.sso_off:
        return []
    entra, out = settings.entra, []
    if entra.require_auth_context:
        out.append(f"entra.require_auth_context = {entra.require_auth_context!r} proves nothing "
                   "by itself: Entra ID puts a requested context in acrs even when no "
                   "Conditional Access policy targets it. Bind one: Entra admin center > "
                   "Conditional Access > a policy whose Target resources are Authentication "
                   f"context {entra.require_auth_context!r} with the grant controls you "
                   "require (e.g. phishing-resistant MFA)")
    if entra.allow_guests:
        out.append("entra.allow_guests = true: guests sign in; revoking a guest's sessions in "
                   "this tenant does not end them (only the guest's home tenant can revoke "
                   "its refresh tokens): remove the guest from the sensor's groups or delete "
                   "the guest user")
    else:
        out.append("entra.allow_guests = false: guests (B2B, #EXT# accounts) are refused as "
                   "guest_not_allowed")
    return out
