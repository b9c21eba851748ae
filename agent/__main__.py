"""Command line: parse, load settings, dispatch (``sensor-sso-agent`` / ``python -m agent``)."""

from __future__ import annotations

import argparse
import sys

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
                                       "(secrets masked)")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--config", default=None, metavar="PATH",
                       help="configuration file (default: $SENSOR_SSO_AGENT_CONFIG or "
                            "/etc/sensor-sso-agent/agent.toml)")
        if name == "check-config":
            p.add_argument("--user", default=None, metavar="NAME",
                           help="when run as root, read the files as this user (default: "
                                "sensor-sso-agent, the service's user)")
    from .local.cli import add_parser as add_local_user

    add_local_user(sub, "configuration file (default: $SENSOR_SSO_AGENT_CONFIG or "
                        "/etc/sensor-sso-agent/agent.toml)")
    demo = sub.add_parser("demo", help="the whole sign-in on this machine, no tenant needed",
                          description="Start a local Entra-like identity provider and the agent.")
    demo.add_argument("--port", type=int, default=8080, help="agent port (default 8080)")
    return parser


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
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args.port)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
