"""The agent's process lifecycle under systemd: start, readiness, watchdog, reload, stop.

``serve`` runs the agent as systemd's ``Type=notify`` unit expects: ``READY=1`` once the
tenant's discovery document and signing keys are loaded (TenantMetadata's readiness event), or,
so that systemd does not kill an agent that already serves existing sessions, after
``READY_GRACE`` seconds with a status saying what is missing; ``WATCHDOG=1`` every half
``$WATCHDOG_USEC`` while the supervised background tasks are alive (agent/supervisor.py);
``STOPPING=1`` on SIGTERM/SIGINT followed by a graceful stop (in-flight requests finish,
sessions are flushed).

SIGHUP reloads the configuration file: an invalid file is rejected (``config_reload_rejected``
with every problem) and the running configuration is kept; a valid one replaces the web
application in the same process. The listening socket stays open throughout, so connections
arriving during the swap wait in its backlog instead of being refused, and sessions survive
because the old application flushes them to ``state_dir`` before the new one loads them.
The admin socket (agent/admin.py) always serves whichever application is current.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import time
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from .entra.discovery import TenantMetadata
from .errors import ConfigError
from .monitor import Monitor
from .settings import Settings, listen_text, load_settings, problem_lines
from .supervisor import Supervisor
from .systemd import Notifier
from .web.server import ACCEPT_BURST, quiet_accept_failures

if TYPE_CHECKING:
    from .admin import AdminSocket

log = structlog.get_logger("agent")

READY_GRACE = 60.0  # seconds; below the unit's TimeoutStartSec
SHUTDOWN_TIMEOUT = 10.0  # in-flight requests get this long; below the unit's TimeoutStopSec


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.server.tls_cert_file is None or settings.server.tls_key_file is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(settings.server.tls_cert_file, settings.server.tls_key_file)
    return ctx


def listen_address(settings: Settings) -> str:
    return listen_text(settings.server.listen_host, settings.server.listen_port)


def bind_listener(settings: Settings) -> socket.socket:
    """The listening socket for ``server.listen`` (kept open across reloads)."""
    host, port = settings.server.listen_host, settings.server.listen_port
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(ACCEPT_BURST)  # what asyncio sets it to when a site starts
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Service:
    """The agent's web application on a listening socket, replaceable in place (reload)."""

    def __init__(self, settings: Settings, *, config_path: str | None = None,
                 notifier: Notifier | None = None, ready_grace: float = READY_GRACE,
                 console: bool = False) -> None:
        self.settings = settings
        self.config_path = config_path or (None if settings.source.startswith("<")
                                           else settings.source)
        self.notifier = notifier or Notifier(None)
        self.ready_grace = ready_grace
        self.console = console
        self.sock: socket.socket | None = None
        self.app: web.Application | None = None
        self.runner: web.AppRunner | None = None
        self.supervisor = Supervisor()  # the watchdog and the readiness announcement
        self.admin: AdminSocket | None = None  # the sessions commands' socket
        self.started = time.time()
        self.monitor = Monitor(lambda: self.app)  # counts and the [metrics] listener
        self.metrics = self.monitor.counts

    async def start(self) -> None:
        ssl_ctx = server_ssl_context(self.settings)
        self.sock = sock = bind_listener(self.settings)
        try:
            await self._start_app(self.settings, ssl_ctx, sock)
        except BaseException:
            sock.close()
            self.sock = None
            raise
        log.info("agent_started", listen=listen_address(self.settings),
                 tls=ssl_ctx is not None, config=self.config_path)
        await self._start_admin()
        await self.monitor.serve(self.settings.metrics)
        interval = self.notifier.watchdog_interval
        if interval is not None:
            self.supervisor.start("watchdog", lambda: self._watchdog(interval))

    async def _start_app(self, settings: Settings, ssl_ctx: ssl.SSLContext | None,
                         sock: socket.socket) -> None:
        from .web.app import create_app
        from .web.keys import SUPERVISOR, TENANT
        from .web.server import FrontDoorRunner

        app = create_app(settings, console=self.console, metrics=self.metrics)
        runner = FrontDoorRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT,
                               handle_signals=False)
        await runner.setup()
        try:
            # The site owns (and closes) a duplicate; ``sock`` keeps listening meanwhile.
            await web.SockSite(runner, sock.dup(), ssl_context=ssl_ctx,
                               backlog=ACCEPT_BURST).start()
        except BaseException:
            await runner.cleanup()
            raise
        if self.app is not None:  # a reload: the counts of its tasks' failures live on
            self.metrics.replaced(self.app[SUPERVISOR].failures())
        self.app, self.runner = app, runner
        await self.supervisor.cancel("ready_announcer")  # the previous application's
        self.supervisor.start("ready_announcer", lambda: self._announce_ready(app[TENANT]),
                              once=True)

    async def _announce_ready(self, tenant: TenantMetadata) -> None:
        where = f"serving on {listen_address(self.settings)}"
        try:
            await asyncio.wait_for(tenant.wait_ready(), self.ready_grace)
        except TimeoutError:
            reason = tenant.not_ready_reason or "unknown"
            log.warning("agent_serving_without_identity_provider", reason=reason,
                        fix="run sensor-sso-agent check-connectivity")
            self.notifier.ready(f"{where}; NOT READY, sign-in unavailable: {reason}")
            await tenant.wait_ready()
            log.info("agent_ready", listen=listen_address(self.settings))
            self.notifier.status(f"{where}; identity provider ready")
            return
        log.info("agent_ready", listen=listen_address(self.settings))
        self.notifier.ready(f"{where}; identity provider ready")

    async def _watchdog(self, interval: float) -> None:
        """``WATCHDOG=1`` while the event loop turns and the application's supervised
        background tasks are alive (agent/supervisor.py): an agent whose background work
        has stopped is restarted by systemd instead of being reported healthy."""
        from .web.keys import SUPERVISOR

        while True:
            app = self.app
            if app is not None and app[SUPERVISOR].alive():
                self.notifier.watchdog()
            await asyncio.sleep(interval)

    async def reload(self) -> bool:
        """Re-read the configuration file; True when the new one now serves."""
        path = self.config_path
        if path is None:
            log.error("config_reload_rejected", problems=["no configuration file to re-read"])
            return False
        try:
            new = await asyncio.to_thread(load_settings, path)
            ssl_ctx = server_ssl_context(new)
        except ConfigError as exc:
            log.error("config_reload_rejected", config=path, problems=problem_lines(exc),
                      action="keeping the running configuration")
            self.metrics.reloaded("rejected")
            return False
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.error("config_reload_rejected", config=path, action="keeping the running "
                      "configuration", problems=[f"server.tls_cert_file/tls_key_file: {exc}"])
            self.metrics.reloaded("rejected")
            return False
        old, old_sock, runner = self.settings, self.sock, self.runner
        if old_sock is None or runner is None:
            raise RuntimeError("Service.reload() before Service.start()")
        sock = old_sock
        if listen_address(new) != listen_address(old):
            try:
                sock = bind_listener(new)
            except OSError as exc:
                log.error("config_reload_rejected", config=path, action="keeping the running "
                          "configuration", problems=[f"server.listen = {listen_address(new)}: "
                                                      f"{exc.strerror or exc}"])
                self.metrics.reloaded("rejected")
                return False
        self.notifier.reloading("reloading the configuration")
        await runner.cleanup()  # in-flight requests finish; sessions are flushed
        if sock is not old_sock:
            old_sock.close()
            self.sock = sock
        changed = [name for name in ("server", "entra", "roles", "session", "sensor", "local",
                                     "metrics")
                   if getattr(old, name) != getattr(new, name)]
        try:
            self.settings = new
            await self._start_app(new, ssl_ctx, sock)
        except Exception as exc:  # e.g. state_dir not writable: fall back to the old settings
            log.error("config_reload_failed", config=path, error=str(exc),
                      action="serving with the previous configuration")
            self.settings = old
            await self._start_app(old, server_ssl_context(old), sock)
            self.metrics.reloaded("failed")
            return False
        log.info("config_reloaded", config=path, changed=changed, listen=listen_address(new))
        self.metrics.reloaded("applied")
        if new.server.admin_socket != old.server.admin_socket:
            await self._start_admin()
        if new.metrics != old.metrics:
            await self.monitor.serve(new.metrics)
        return True

    def identity(self) -> dict[str, object]:
        """Which agent this is (the admin socket's ``agent`` in every answer)."""
        from . import __version__

        return {"pid": os.getpid(), "config": self.config_path,
                "listen": listen_address(self.settings), "version": __version__,
                "started": self.started, "metrics": self.settings.metrics.listen or None,
                "metrics_problem": self.monitor.problem}

    async def _start_admin(self) -> None:
        """The ``sessions`` commands' socket; the agent serves on without it."""
        from .admin import AdminSocket

        if self.admin is not None:
            await self.admin.stop()
        self.admin = AdminSocket(self.settings.server.admin_socket, lambda: self.app,
                                 self.identity)
        await self.admin.start()

    async def stop(self) -> None:
        self.notifier.stopping("stopping: finishing requests, saving sessions")
        log.info("agent_stopping")
        await self.supervisor.cancel("ready_announcer")
        await self.monitor.stop()
        if self.admin is not None:
            await self.admin.stop()
            self.admin = None
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        await self.supervisor.stop()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        log.info("agent_stopped")


async def run_service(settings: Settings, *, config_path: str | None = None,
                      notifier: Notifier | None = None,
                      ready_grace: float = READY_GRACE) -> None:
    """Serve until SIGTERM/SIGINT; SIGHUP reloads the configuration file."""
    service = Service(settings, config_path=config_path,
                      notifier=notifier or Notifier.from_environ(), ready_grace=ready_grace)
    events: asyncio.Queue[str] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    quiet_accept_failures(loop)
    # Handlers first: a SIGTERM or SIGHUP during start-up waits in the queue instead of
    # killing the process with the default action.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, events.put_nowait, "stop")
    loop.add_signal_handler(signal.SIGHUP, events.put_nowait, "reload")
    try:
        await service.start()
        try:
            while await events.get() != "stop":
                log.info("config_reload_requested", config=service.config_path)
                await service.reload()  # READY=1 follows from the new application
        finally:
            await service.stop()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
