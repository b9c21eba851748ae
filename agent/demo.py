"""``sensor-sso-agent demo``: the whole sign-in on this machine, no Entra tenant needed.

Starts the local Entra-like identity provider (HTTPS on 127.0.0.1, throwaway CA) with demo
users for every role and every refusal, and the agent in front of a small console stand-in
("Overview"), then prints the sign-in URL and the users. Ctrl-C stops both.

It also creates one local break-glass account (``[local]``) and prints it. Pressing Enter in
the terminal switches the identity provider off (every endpoint answers 503, as when the
sensor cannot reach Entra ID) and on again, so a newcomer sees the sign-in page offer the
local account while Entra ID is unreachable and stop offering it when it is back.

The provider's app registration defines three app roles (``DEMO_APP_ROLES``), each assigned
to the role's demo group, and one more user holds an app role directly and is in no mapped
group. ``demo --roles app_roles`` runs the agent with ``[roles] source = "app_roles"``: every
role then comes from the ID token's ``roles`` claim, and that user signs in as Security
analyst (the default, ``groups``, refuses them).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import secrets
import signal
import sys
import tempfile
from pathlib import Path

from aiohttp import web

from .devidp import DEMO_PASSWORD, ENDPOINTS, DevIdentityProvider, DevUser, Fault, demo_users
from .local.accounts import Account, write_accounts
from .local.passwords import hash_password
from .logging import configure_logging
from .settings import Settings, settings_from_mapping
from .web.app import create_app
from .web.server import FrontDoorRunner

DEMO_TENANT = "6f1c2a9e-4b7d-4e2a-9c3f-0d8b5e7a1c24"
DEMO_CLIENT = "3d9e8f70-1a2b-4c5d-8e6f-7a8b9c0d1e2f"
DEMO_GROUPS = {
    "admin": ["a1d5e6f7-0000-4000-8000-00000000000a"],
    "security_analyst": ["b2e6f7a8-0000-4000-8000-00000000000b"],
    "read_only": ["c3f7a8b9-0000-4000-8000-00000000000c"],
}
# The app registration's app roles (value → display name) and what they map to.
DEMO_APP_ROLES = {"Sensor.Admin": "Sensor Admin",
                  "Sensor.SecurityAnalyst": "Sensor Security analyst",
                  "Sensor.ReadOnly": "Sensor Read only"}
DEMO_APP_ROLE_MAPPING = {"admin": ["Sensor.Admin"],
                         "security_analyst": ["Sensor.SecurityAnalyst"],
                         "read_only": ["Sensor.ReadOnly"]}

BREAK_GLASS = "breakglass"
PROBE_INTERVAL = 2.0  # the demo notices the switched-off provider within seconds


def demo_settings(idp: DevIdentityProvider, port: int, state_dir: Path,
                  accounts_file: Path | None = None, roles_source: str = "groups"
                  ) -> Settings:
    local = {"local": {"accounts_file": str(accounts_file)}} if accounts_file else {}
    roles: dict[str, object] = dict(DEMO_GROUPS)
    if roles_source == "app_roles":
        roles = {"source": "app_roles", **DEMO_APP_ROLE_MAPPING}
    return settings_from_mapping({
        "server": {"listen": f"127.0.0.1:{port}", "sensor_name": "Demo sensor · Plant A",
                   "access_contact": "the demo's administrator"},
        "entra": {"tenant_id": DEMO_TENANT, "client_id": DEMO_CLIENT,
                  "redirect_uri": f"http://127.0.0.1:{port}/auth/sso/callback",
                  "authority_host": idp.authority_host, "graph_url": idp.graph_url,
                  "ca_bundle": str(idp.ca_file)},
        "roles": roles,
        # Short, so that a change on the provider's directory page shows within seconds.
        "session": {"state_dir": str(state_dir), "revalidate_interval": "15s",
                    "revalidate_grace": "1m"},
        **local,
    }, source="<demo>")


def break_glass_account(path: Path) -> str:
    """Write the demo's one local admin to ``path``; returns its (random) password."""
    password = secrets.token_urlsafe(12)
    write_accounts(path, {BREAK_GLASS: Account.create(
        BREAK_GLASS, "admin", "Break", "Glass", hash_password(password))})
    return password


def switch_provider(idp: DevIdentityProvider) -> bool:
    """Off (every endpoint answers 503) when on, on when off; returns whether it is on now."""
    if idp.faults:
        idp.faults.clear()
        return True
    for name in ENDPOINTS:
        idp.faults[name] = Fault(status=503, body=b'{"error":"temporarily_unavailable"}')
    return False


def describe(user: DevUser, groups: dict[str, list[str]],
             idp: DevIdentityProvider | None = None, roles_source: str = "groups") -> str:
    """One line of the printed user list: the roles the user gets here, and why not."""
    notes = []
    if roles_source == "app_roles" and idp is not None:
        assigned = idp.assigned_app_roles(user)
        roles = [role for role, values in DEMO_APP_ROLE_MAPPING.items()
                 if set(values) & set(assigned)]
        direct = [v for v in user.app_roles if v in assigned]
        if direct:
            notes.append(f"app role {', '.join(direct)} assigned directly")
    else:
        roles = [role for role, ids in groups.items() if set(ids) & set(user.groups)]
        if user.app_roles and not roles:
            notes.append(f"app role {', '.join(user.app_roles)} only: see demo "
                         "--roles app_roles")
    if user.mfa:
        notes.append("MFA approval")
    app_roles = roles_source == "app_roles"
    if not user.optional_claims:
        notes.append("profile from Graph" if app_roles else "profile and groups from Graph")
    if user.overage:
        notes.append("group overage (the roles claim has none)" if app_roles
                     else "group overage")
    if user.family_name is None:
        notes.append("no last name: refused")
    if user.upn is None:
        notes.append("no UPN: refused")
    if not roles:
        notes.append("no mapped app role: refused" if roles_source == "app_roles"
                     else "no mapped group: refused")
    text = ", ".join(roles) or "-"
    return f"{user.username:34} {text:28} {'; '.join(notes)}"


async def serve_demo(port: int, ready: asyncio.Event | None = None,
                     stop: asyncio.Event | None = None,
                     switches: asyncio.Queue[None] | None = None,
                     roles_source: str = "groups") -> None:
    """Serve until ``stop``; each item put on ``switches`` switches the provider off or on.
    ``roles_source``: the agent's ``[roles] source`` (``groups`` or ``app_roles``)."""
    with tempfile.TemporaryDirectory(prefix="sensor-sso-demo-") as tmp:
        users = demo_users(DEMO_GROUPS)
        idp = DevIdentityProvider(
            tenant_id=DEMO_TENANT, client_id=DEMO_CLIENT,
            redirect_uris=[f"http://127.0.0.1:{port}/auth/sso/callback"], users=users,
            state_dir=Path(tmp) / "idp", pages_over_http=True,
            frontchannel_logout_url=f"http://127.0.0.1:{port}/auth/sso/frontchannel-logout",
            group_labels={gid: f"{role} group" for role, ids in DEMO_GROUPS.items()
                          for gid in ids},
            app_roles=dict(DEMO_APP_ROLES),
            group_app_roles={gid: list(DEMO_APP_ROLE_MAPPING[role])
                             for role, ids in DEMO_GROUPS.items() for gid in ids})
        await idp.start()
        accounts = Path(tmp) / "local-accounts"
        local_password = await asyncio.to_thread(break_glass_account, accounts)
        settings = demo_settings(idp, port, Path(tmp) / "agent", accounts, roles_source)
        runner = FrontDoorRunner(create_app(settings, console=True,
                                            probe_interval=PROBE_INTERVAL))
        try:
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            print(f"\nsensor-sso-agent demo\n"
                  f"  Open http://127.0.0.1:{port}/login in a browser on this machine.\n"
                  f"  Identity provider (local, Entra-like): {idp.pages_url} for the browser, "
                  f"{idp.url} for the agent\n"
                  f"  Every demo password: {DEMO_PASSWORD}\n"
                  f"  Offboard someone (block sign-in, change groups, revoke, sign out "
                  f"everywhere): {idp.pages_url}/directory\n"
                  f"  The sensor re-validates sessions every 15 s in the demo.\n"
                  f"  Roles from {_SOURCE_TEXT[roles_source]}.\n\n"
                  f"  {'user':34} {'roles':28} notes", flush=True)
            for user in users:
                print("  " + describe(user, DEMO_GROUPS, idp, roles_source), flush=True)
            print(f"\n  Local break-glass account (offered only while Entra ID cannot be "
                  f"reached):\n    user name {BREAK_GLASS}, password {local_password}\n"
                  f"  Press Enter here to switch the identity provider off (and again to switch "
                  f"it back on),\n  then reload the sign-in page.\n"
                  f"\n  Ctrl-C stops the demo.\n", flush=True)
            if ready is not None:
                ready.set()
            waiting = asyncio.ensure_future((stop or asyncio.Event()).wait())
            try:
                while switches is not None:
                    switched = asyncio.ensure_future(switches.get())
                    done, _ = await asyncio.wait({waiting, switched},
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if waiting in done:
                        switched.cancel()
                        break
                    up = switch_provider(idp)
                    print(f"  Identity provider {'ON' if up else 'OFF: Entra ID unreachable'}",
                          flush=True)
                await waiting
            finally:
                waiting.cancel()
        finally:
            await runner.cleanup()
            await idp.stop()


_SOURCE_TEXT = {
    "groups": "Entra groups ([roles] source = \"groups\"); `demo --roles app_roles` takes "
              "them from app roles",
    "app_roles": "app roles ([roles] source = \"app_roles\"): the ID token's roles claim; "
                 "the groups hold app roles, approle@ holds one directly",
}


def run_demo(port: int, roles_source: str = "groups") -> int:
    configure_logging()

    async def main() -> None:
        stop = asyncio.Event()
        switches: asyncio.Queue[None] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if sys.stdin.isatty():  # Enter switches the provider off and on
            def enter() -> None:
                sys.stdin.readline()
                switches.put_nowait(None)

            loop.add_reader(sys.stdin.fileno(), enter)
        try:
            await serve_demo(port, stop=stop, switches=switches, roles_source=roles_source)
        finally:
            if sys.stdin.isatty():
                loop.remove_reader(sys.stdin.fileno())

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        print(f"demo: port {port} on 127.0.0.1 is in use: choose another with --port, e.g. "
              f"sensor-sso-agent demo --port {port + 1}", file=sys.stderr)
        return 1
    return 0


__all__ = ["BREAK_GLASS", "DEMO_APP_ROLES", "DEMO_CLIENT", "DEMO_GROUPS", "DEMO_TENANT",
           "run_demo", "serve_demo"]
