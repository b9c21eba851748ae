"""The admin socket: ``sensor-sso-agent sessions list|revoke|revalidate`` reach the agent here.

A Unix socket at ``[server] admin_socket`` (mode 0600, in the directory systemd's
``RuntimeDirectory=`` creates), served by a small JSON app. Each connection's peer is read
with ``SO_PEERCRED``: only root and the agent's own user are served; anyone else gets 403.
Every action — and every refusal — is audited as ``sessions_admin`` with the caller's uid.
No tokens ever cross it (the session list has names, roles and times only).

One owner per socket: before binding, the agent connects to whatever socket is at the path.
When something answers there (another agent started by hand beside the service), the path is
left alone (``admin_socket_in_use``, naming the path, the ``[server] admin_socket`` key and
the other agent's pid) and this agent serves HTTP without an admin socket; only a socket
nobody listens on (left by a killed agent) is replaced. ``stop()`` removes the path only
while it is still the socket this agent bound (same device and inode).

Its HTTP is the public port's front door (``web.server.FrontDoorRunner``): a malformed
request gets the generic 400 (no bytes of it echoed, one rate-limited
``http_request_malformed`` line), the same head and body deadlines and a connection cap; a
body that is not a JSON object (malformed, nested too deep for the parser, not UTF-8) is a
400 naming that, never a logged ``RecursionError``.

Every answer to a permitted caller carries ``agent``: ``{pid, config, listen, version,
started}`` (the owner's ``identity`` callable, agent/lifecycle.py's ``Service.identity``);
``GET /agent`` answers that alone. The ``sessions`` command prints it, so an operator always
sees which agent did what was asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from .metrics.summary import summary
from .web import keys
from .web.health import readings
from .web.server import FrontDoorRunner

audit = structlog.get_logger("agent.audit")
log = structlog.get_logger("agent")

_CREDS = struct.Struct("3i")  # struct ucred: pid, uid, gid
_ASK_TIMEOUT = 2.0  # seconds to wait for an agent already on the path to answer
_MAX_CONNECTIONS = 64  # the sessions commands open one at a time
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

    def __init__(self, path: Path, current_app: Callable[[], web.Application | None],
                 identity: Callable[[], dict[str, Any]] | None = None) -> None:
        self.path = path
        self.current_app = current_app
        self.identity = identity or (lambda: {"pid": os.getpid()})
        self._runner: web.AppRunner | None = None
        self._bound: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket it bound

    async def start(self) -> bool:
        """Listen on ``path``; False (logged, the agent serves on) when it cannot."""
        if not self.path.parent.is_dir():
            log.warning("admin_socket_unavailable", path=str(self.path),
                        why="its directory does not exist (the unit's RuntimeDirectory= "
                            "creates it)", effect="the sessions commands cannot reach the agent")
            return False
        other = await live_owner(self.path)
        if other is not None:
            log.warning("admin_socket_in_use", path=str(self.path), key="[server] admin_socket",
                        other_pid=other.get("pid"), other_config=other.get("config"),
                        effect="this agent serves HTTP without an admin socket; the sessions "
                               "commands reach the other agent",
                        fix="stop the other agent, or give this one its own "
                            "[server] admin_socket")
            return False
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                    os.unlink(self.path)  # nobody listens: left by an agent that was killed
            sock.bind(str(self.path))
            os.chmod(self.path, 0o600)  # before listen: nobody else can ever connect
            bound = os.lstat(self.path)
            self._bound = (bound.st_dev, bound.st_ino)
            sock.listen(16)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            log.warning("admin_socket_unavailable", path=str(self.path),
                        why=exc.strerror or str(exc),
                        effect="the sessions commands cannot reach the agent")
            return False
        app = web.Application(client_max_size=16 * 1024)
        app.router.add_get("/agent", self._action("identity", _identity))
        app.router.add_get("/sessions", self._action("list", _list))
        app.router.add_post("/sessions/revoke", self._action("revoke", _revoke))
        app.router.add_post("/sessions/revalidate", self._action("revalidate", _revalidate))
        app.router.add_get("/status", self._action("status", _status))
        runner = FrontDoorRunner(app, handle_signals=False, max_connections=_MAX_CONNECTIONS)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runner = runner
        log.info("admin_socket_listening", path=str(self.path))
        return True

    async def stop(self) -> None:
        """Stop serving; remove the path only while it is still the socket bound here."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            with contextlib.suppress(OSError):
                now = os.lstat(self.path)
                if (now.st_dev, now.st_ino) == self._bound:
                    os.unlink(self.path)
            self._bound = None

    # ----- requests -----------------------------------------------------------------------

    def _action(self, name: str, act: _Act) -> Callable[[web.Request], Awaitable[web.Response]]:
        """One handler for every action: the caller's uid checked (and refusals audited),
        the current application found, a POST's JSON object read, then ``act``; the answer
        names the agent that gave it (``agent``)."""
        async def handler(request: web.Request) -> web.Response:
            uid = peer_uid(request)
            if uid is None or uid not in (0, os.geteuid()):
                audit.warning("sessions_admin", action=name, caller_uid=uid, refused=True,
                              why="only root and the service user may manage sessions")
                return web.json_response({"error": "only root and the service user may use "
                                                   "this socket"}, status=403)
            app = self.current_app()
            if app is None:
                return web.json_response({"error": "the agent is starting",
                                          "agent": self.identity()}, status=503)
            payload = await _payload(request) if request.method == "POST" else {}
            if payload is None:
                return web.json_response({"error": "the request body must be a JSON object",
                                          "agent": self.identity()}, status=400)
            answer = await act(app, uid, payload)
            body = json.loads(answer.text or "{}")
            return web.json_response({**body, "agent": self.identity()}, status=answer.status)
        return handler


async def live_owner(path: Path) -> dict[str, Any] | None:
    """Who listens on the socket at ``path``: its ``/agent`` answer (``{}`` when what answers
    is not an agent, or says nothing in time), or None when nothing listens there."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)),
                                                _ASK_TIMEOUT)
    except (OSError, TimeoutError):  # ENOENT, ECONNREFUSED (stale), ENOTSOCK, EACCES ...
        return None
    try:
        writer.write(b"GET /agent HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(16 * 1024), _ASK_TIMEOUT)
        data = json.loads(raw.partition(b"\r\n\r\n")[2] or b"{}")
    except (OSError, TimeoutError, ValueError, RecursionError):
        return {}
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    agent = data.get("agent") if isinstance(data, dict) else None
    return agent if isinstance(agent, dict) else {}


async def _payload(request: web.Request) -> dict[str, Any] | None:
    """The body's JSON object ({} for no body), or None when it is anything else."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return data if isinstance(data, dict) else None


async def _identity(app: web.Application, uid: int, _: dict[str, Any]) -> web.Response:
    return web.json_response({})  # the handler adds who answered


async def _status(app: web.Application, uid: int, _: dict[str, Any]) -> web.Response:
    """``sensor-sso-agent status``: counts and readings, never a name (not audited: it says
    nothing about anyone)."""
    return web.json_response(summary(app[keys.METRICS], readings(app)))


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
