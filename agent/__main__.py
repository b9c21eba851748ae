"""Command line: parse, load settings, dispatch (``sensor-sso-agent`` / ``python -m agent``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from . import __version__
from .settings import default_config_path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sensor-sso-agent",
        description="Microsoft Entra ID single sign-on for an OT network sensor's console.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (("serve", "run the service"),
                       ("check-config", "validate the configuration file"),
                       ("check-connectivity", "check the way to Entra ID and Microsoft Graph"),
                       ("show-config", "print the effective SSO setting for this sensor and why "
                                       "(secrets masked)"),
                       ("status", "the running agent at a glance: ready or why not, sessions, "
                                  "the last hour's sign-ins and refusals, dependencies, "
                                  "re-validation lag (root or the service user)")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--config", default=None, metavar="PATH",
                       help="configuration file (default: $SENSOR_SSO_AGENT_CONFIG or "
                            "/etc/sensor-sso-agent/agent.toml)")
        if name == "status":
            p.add_argument("--json", action="store_true", dest="as_json",
                           help="the agent's answer as JSON")
        if name == "check-config":
            p.add_argument("--user", default=None, metavar="NAME",
                           help="when run as root, read the files as this user (default: "
                                "sensor-sso-agent, the service's user)")
    add_sessions_parser(sub)
    from .local.cli import add_parser as add_local_user

    add_local_user(sub, "configuration file (default: $SENSOR_SSO_AGENT_CONFIG or "
                        "/etc/sensor-sso-agent/agent.toml)")
    from .wiring.cli import add_parser as add_check_nginx

    add_check_nginx(sub)
    from .rehearsal import add_parser as add_devidp

    add_devidp(sub, "the agent's configuration, whose tenant, client, redirect URI and role "
                    "groups the provider takes (default: $SENSOR_SSO_AGENT_CONFIG or "
                    "/etc/sensor-sso-agent/agent.toml)")
    demo = sub.add_parser("demo", help="the whole sign-in on this machine, no tenant needed",
                          description="Start a local Entra-like identity provider and the agent.")
    demo.add_argument("--port", type=int, default=8080, help="agent port (default 8080)")
    demo.add_argument("--roles", choices=("groups", "app_roles"), default="groups",
                      help="where roles come from: Entra groups (default) or app roles")
    return parser


def add_sessions_parser(sub: Any) -> None:
    """``sessions list | revoke --upn UPN | revoke --all | revalidate [--upn UPN]``."""
    text = "list, end or re-validate sign-in sessions of the running agent (root or the " \
           "service user)"
    sessions = sub.add_parser("sessions", help=text, description=text)
    actions = sessions.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every session: UPN, role, sign-in method, "
                                 "created, last seen, last re-validated")
    revoke = actions.add_parser("revoke", help="end one user's sessions, or everyone's")
    who = revoke.add_mutually_exclusive_group(required=True)
    who.add_argument("--upn", help="the user principal name whose sessions end")
    who.add_argument("--all", action="store_true", dest="everyone", help="every session")
    again = actions.add_parser("revalidate", help="ask Entra ID about the sessions now")
    again.add_argument("--upn", help="only this user's sessions")
    for p in (listing, revoke, again):
        p.add_argument("--config", default=None, metavar="PATH",
                       help="configuration file (names the admin socket)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = getattr(args, "config", None) or default_config_path()
    if args.command == "check-config":
        from .commands import check_config

        return check_config(config, args.user)
    if args.command == "check-connectivity":
        from .commands import check_connectivity

        return check_connectivity(config)
    if args.command == "show-config":
        from .show_config import show_config

        return show_config(config)
    if args.command == "serve":
        from .commands import serve

        return serve(config)
    if args.command == "local-user":
        from .local.cli import run as local_user

        return local_user(args, config)
    if args.command == "sessions":
        from .sessions.cli import sessions_command

        return sessions_command(config, args.action, getattr(args, "upn", None),
                                getattr(args, "everyone", False))
    if args.command == "check-nginx":
        from .wiring.cli import run_check_nginx

        return run_check_nginx(args.file, args.url, args.nginx_args, args.ca_file, args.insecure)
    if args.command == "devidp":
        from .rehearsal import run_devidp

        return run_devidp(config, args.listen, args.name, args.redirect_uri, args.state_dir)
    if args.command == "status":
        from .status import status_command

        return status_command(config, args.as_json)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args.port, args.roles)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
