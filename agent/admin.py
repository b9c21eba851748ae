"""The admin socket: ``sensor-sso-agent sessions list|revoke|revalidate`` reach the agent here.

A Unix socket at ``[server] admin_socket`` (mode 0600, in the directory systemd's
``RuntimeDirectory=`` creates), served by a small JSON app. Each connection's peer is read
with ``SO_PEERCRED``: only root and the agent's own user are served; anyone else gets 403.
Every action — and every refusal — is audited as ``sessions_admin`` with the caller's uid.
No tokens ever cross it (the session list has names, roles and times only).
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from .web import keys

audit = structlog.get_logger("agent.audit")
log = structlog.get_logger("agent")

_CREDS = struct.Struct("3i")  # struct ucred: pid, uid, gid
# An action: the current application, the caller's uid and the request's JSON object.
_Act = Callable[[web.Application, int, dict[str, Any]], Awaitable[web.Response]]


def peer_uid(request: web.Request) -> int | None:
    """The connecting process's uid (``SO_PEERCRED``), or None when unknown."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return None
    try:
        _, uid, _ = _CREDS.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                  _CREDS.size))
    except OSError:
        return None
    return int(uid)


def session_row(session: Any) -> dict[str, Any]:
    return {"upn": session.upn, "role": session.role,
            "method": getattr(session, "method", "sso"), "created": session.created,
            "last_seen": session.last_seen,
            "revalidated": session.revalidated if session.has_refresh_token else None}


class AdminSocket:
    """Serves the ``sessions`` commands for whichever agent application is current."""

    def __init__(self, path: Path, current_app: Callable[[], web.Application | None]) -> None:
        self.path = path
        self.current_app = current_app
        self._runner: web.AppRunner | None = None

    async def start(self) -> bool:
        """Listen on ``path``; False (logged, the agent serves on) when it cannot."""
        if not self.path.parent.is_dir():
            log.warning("admin_socket_unavailable", path=str(self.path),
                        why="its directory does not exist (the unit's RuntimeDirectory= "
                            "creates it)", effect="the sessions commands cannot reach the agent")
            return False
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                    os.unlink(self.path)  # left by an agent that was killed
            sock.bind(str(self.path))
            os.chmod(self.path, 0o600)  # before listen: nobody else can ever connect
            sock.listen(16)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            log.warning("admin_socket_unavailable", path=str(self.path),
                        why=exc.strerror or str(exc),
                        effect="the sessions commands cannot reach the agent")
            return False
        app = web.Application(client_max_size=16 * 1024)
        app.router.add_get("/sessions", self._action("list", _list))
        app.router.add_post("/sessions/revoke", self._action("revoke", _revoke))
        app.router.add_post("/sessions/revalidate", self._action("revalidate", _revalidate))
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runner = runner
        log.info("admin_socket_listening", path=str(self.path))
        return True

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    # ----- requests -----------------------------------------------------------------------

    def _action(self, name: str, act: _Act) -> Callable[[web.Request], Awaitable[web.Response]]:
        """One handler for every action: the caller's uid checked (and refusals audited),
        the current application found, a POST's JSON object read, then ``act``."""
        async def handler(request: web.Request) -> web.Response:
            uid = peer_uid(request)
            if uid is None or uid not in (0, os.geteuid()):
                audit.warning("sessions_admin", action=name, caller_uid=uid, refused=True,
                              why="only root and the service user may manage sessions")
                return web.json_response({"error": "only root and the service user may use "
                                                   "this socket"}, status=403)
            app = self.current_app()
            if app is None:
                return web.json_response({"error": "the agent is starting"}, status=503)
            return await act(app, uid, await _payload(request) if request.method == "POST"
                             else {})
        return handler


async def _payload(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


async def _list(app: web.Application, uid: int, _: dict[str, Any]) -> web.Response:
    rows = [session_row(s) for s in app[keys.SESSIONS].live()]
    rows.sort(key=lambda r: (r["upn"].casefold(), r["created"]))
    audit.info("sessions_admin", action="list", caller_uid=uid, sessions=len(rows))
    return web.json_response({"sessions": rows})


async def _revoke(app: web.Application, uid: int, data: dict[str, Any]) -> web.Response:
    upn = data.get("upn")
    everyone = data.get("all") is True
    if everyone == isinstance(upn, str):
        return web.json_response({"error": "give either upn or all"}, status=400)
    store = app[keys.SESSIONS]
    wanted = upn.casefold() if isinstance(upn, str) else None
    chosen = [s for s in store.live() if wanted is None or s.upn.casefold() == wanted]
    ended = 0
    for session in chosen:
        ended += await store.end(session, "admin_revoke", via="sessions_command",
                                 caller_uid=uid)
    audit.warning("sessions_admin", action="revoke", caller_uid=uid,
                  upn=upn if wanted else None, all=everyone, revoked=ended)
    return web.json_response({"revoked": ended})


async def _revalidate(app: web.Application, uid: int, data: dict[str, Any]) -> web.Response:
    upn = data.get("upn") if isinstance(data.get("upn"), str) else None
    outcomes = await app[keys.REVALIDATOR].revalidate_now(upn)
    audit.info("sessions_admin", action="revalidate", caller_uid=uid, upn=upn,
               sessions=len(outcomes))
    return web.json_response({"outcomes": [
        {"upn": o.upn, "result": o.result, "detail": o.detail} for o in outcomes]})
