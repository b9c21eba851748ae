"""``sensor-sso-agent demo``: the whole sign-in on this machine, no Entra tenant needed.

Starts the local Entra-like identity provider (HTTPS on 127.0.0.1, throwaway CA) with demo
users for every role and every refusal, and the agent in front of a small console stand-in
("Overview"), then prints the sign-in URL and the users. Ctrl-C stops both.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
from pathlib import Path

from aiohttp import web

from .devidp import DEMO_PASSWORD, DevIdentityProvider, DevUser, demo_users
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


def demo_settings(idp: DevIdentityProvider, port: int, state_dir: Path) -> Settings:
    return settings_from_mapping({
        "server": {"listen": f"127.0.0.1:{port}", "sensor_name": "Demo sensor · Plant A",
                   "access_contact": "the demo's administrator"},
        "entra": {"tenant_id": DEMO_TENANT, "client_id": DEMO_CLIENT,
                  "redirect_uri": f"http://127.0.0.1:{port}/auth/sso/callback",
                  "authority_host": idp.authority_host, "graph_url": idp.graph_url,
                  "ca_bundle": str(idp.ca_file)},
        "roles": DEMO_GROUPS,
        "session": {"state_dir": str(state_dir)},
    }, source="<demo>")


def describe(user: DevUser, groups: dict[str, list[str]]) -> str:
    roles = [role for role, ids in groups.items() if set(ids) & set(user.groups)]
    notes = []
    if user.mfa:
        notes.append("MFA approval")
    if not user.optional_claims:
        notes.append("profile and groups from Graph")
    if user.overage:
        notes.append("group overage")
    if user.family_name is None:
        notes.append("no last name: refused")
    if user.upn is None:
        notes.append("no UPN: refused")
    if not roles:
        notes.append("no mapped group: refused")
    text = ", ".join(roles) or "-"
    return f"{user.username:34} {text:28} {'; '.join(notes)}"


async def serve_demo(port: int, ready: asyncio.Event | None = None,
                     stop: asyncio.Event | None = None) -> None:
    with tempfile.TemporaryDirectory(prefix="sensor-sso-demo-") as tmp:
        users = demo_users(DEMO_GROUPS)
        idp = DevIdentityProvider(
            tenant_id=DEMO_TENANT, client_id=DEMO_CLIENT,
            redirect_uris=[f"http://127.0.0.1:{port}/auth/sso/callback"], users=users,
            state_dir=Path(tmp) / "idp", pages_over_http=True)
        await idp.start()
        runner = FrontDoorRunner(create_app(demo_settings(idp, port, Path(tmp) / "agent"),
                                            console=True))
        try:
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            print(f"\nsensor-sso-agent demo\n"
                  f"  Open http://127.0.0.1:{port}/login in a browser on this machine.\n"
                  f"  Identity provider (local, Entra-like): {idp.pages_url} for the browser, "
                  f"{idp.url} for the agent\n"
                  f"  Every demo password: {DEMO_PASSWORD}\n\n"
                  f"  {'user':34} {'role groups':28} notes", flush=True)
            for user in users:
                print("  " + describe(user, DEMO_GROUPS), flush=True)
            print("\n  Ctrl-C stops the demo.\n", flush=True)
            if ready is not None:
                ready.set()
            await (stop or asyncio.Event()).wait()
        finally:
            await runner.cleanup()
            await idp.stop()


def run_demo(port: int) -> int:
    configure_logging()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve_demo(port, stop=stop)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0


__all__ = ["DEMO_CLIENT", "DEMO_GROUPS", "DEMO_TENANT", "run_demo", "serve_demo"]
