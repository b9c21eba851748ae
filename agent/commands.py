"""The command line's actions: check-config, serve, check-connectivity."""

from __future__ import annotations

import asyncio
import signal
import ssl
import sys

import structlog
from aiohttp import web

from .errors import ConfigError
from .logging import configure_logging
from .settings import Settings, load_settings


def check_config(path: str) -> int:
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        print(f"{path}: configuration is invalid ({len(exc.problems)} problem"
              f"{'s' if len(exc.problems) != 1 else ''}):", file=sys.stderr)
        for key, value, why in exc.problems:
            shown = f" = {value}" if value else ""
            print(f"  {key}{shown}: {why}", file=sys.stderr)
        return 1
    groups = sum(len(g) for g in settings.roles.values())
    print(f"{path}: configuration is valid (tenant {settings.entra.tenant_id}, "
          f"{groups} group{'s' if groups != 1 else ''} mapped, callback "
          f"{settings.entra.redirect_path})")
    return 0


def check_connectivity(path: str) -> int:
    print("check-connectivity is not available in this version yet", file=sys.stderr)
    return 2


def serve(path: str) -> int:
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        for key, value, why in exc.problems:
            print(f"{key}{' = ' + value if value else ''}: {why}", file=sys.stderr)
        return 1
    configure_logging()
    try:
        asyncio.run(run_service(settings))
    except OSError as exc:
        structlog.get_logger("agent").error("serve_failed", error=exc.strerror,
                                            listen=f"{settings.server.listen_host}:"
                                                   f"{settings.server.listen_port}")
        return 1
    return 0


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.server.tls_cert_file is None or settings.server.tls_key_file is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(settings.server.tls_cert_file, settings.server.tls_key_file)
    return ctx


async def run_service(settings: Settings) -> None:
    from .web.app import create_app

    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=10)
    await runner.setup()
    site = web.TCPSite(runner, settings.server.listen_host, settings.server.listen_port,
                       ssl_context=server_ssl_context(settings))
    await site.start()
    log = structlog.get_logger("agent")
    log.info("agent_started", listen=f"{settings.server.listen_host}:"
                                     f"{settings.server.listen_port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("agent_stopping")
        await runner.cleanup()
