"""``sensor-sso-agent sessions list | revoke --upn UPN | revoke --all | revalidate [--upn UPN]``.

Talks to the running agent over its admin socket (``[server] admin_socket``); run it as root
or as the service user. The first line names the agent that answered (pid, configuration
file, listen address). Exit status 0 when the agent did it, 1 otherwise (with why).
"""

from __future__ import annotations

import datetime
import http.client
import json
import socket
import sys
from pathlib import Path
from typing import Any

from ..settings import load_or_report


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def call(path: Path, method: str, url: str, payload: dict[str, Any] | None = None,
         timeout: float = 120.0) -> tuple[int, dict[str, Any]]:
    """One request to the admin socket: (status, JSON body)."""
    connection = _UnixConnection(path, timeout)
    try:
        body = json.dumps(payload).encode() if payload is not None else None
        connection.request(method, url, body=body,
                           headers={"Content-Type": "application/json"} if body else {})
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = {}
    return response.status, data if isinstance(data, dict) else {}


def ask(path: Path, method: str, url: str,
        payload: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]] | None:
    """``call``, saying on stderr why when the agent cannot be reached (None)."""
    try:
        return call(path, method, url, payload)
    except (FileNotFoundError, ConnectionRefusedError):
        print(f"cannot reach the agent at {path}: is sensor-sso-agent running? "
              "(systemctl status sensor-sso-agent)", file=sys.stderr)
        return None
    except PermissionError:
        print(f"permission denied on {path}: run this as root or as the service user",
              file=sys.stderr)
        return None
    except OSError as exc:
        print(f"cannot talk to the agent at {path}: {exc.strerror or exc}", file=sys.stderr)
        return None


def _when(value: object) -> str:
    if not isinstance(value, int | float):
        return "-"
    return datetime.datetime.fromtimestamp(value, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                     .rstrip() for row in rows)


def answered_by(agent: dict[str, Any]) -> str:
    """The line naming the agent that answered (an admin socket answer's ``agent``)."""
    return (f"answered by: agent pid {agent.get('pid')}, config {agent.get('config') or '-'}, "
            f"listening on {agent.get('listen')}")


def sessions_command(config: str, action: str, upn: str | None = None,
                     everyone: bool = False) -> int:
    settings = load_or_report(config)
    if settings is None:
        return 1
    path = settings.server.admin_socket
    if action == "list":
        answer = ask(path, "GET", "/sessions")
    elif action == "revoke":
        answer = ask(path, "POST", "/sessions/revoke",
                     {"all": True} if everyone else {"upn": upn})
    else:
        answer = ask(path, "POST", "/sessions/revalidate", {"upn": upn} if upn else {})
    if answer is None:
        return 1
    status, data = answer
    if isinstance(data.get("agent"), dict):
        print(answered_by(data["agent"]))
    if status != 200:
        print(f"the agent refused: {data.get('error', f'HTTP {status}')}", file=sys.stderr)
        return 1
    if action == "list":
        sessions = data.get("sessions", [])
        rows = [["UPN", "ROLE", "METHOD", "CREATED", "LAST SEEN", "LAST RE-VALIDATED"]]
        rows += [[str(s.get("upn")), str(s.get("role")), str(s.get("method")),
                  _when(s.get("created")), _when(s.get("last_seen")),
                  _when(s.get("revalidated"))] for s in sessions]
        print(_table(rows))
        print(f"{len(sessions)} session{'s' if len(sessions) != 1 else ''}")
    elif action == "revoke":
        count = data.get("revoked", 0)
        print(f"revoked {count} session{'s' if count != 1 else ''}")
    else:
        outcomes = data.get("outcomes", [])
        for o in outcomes:
            detail = f" ({o['detail']})" if o.get("detail") else ""
            print(f"{o.get('upn')}: {o.get('result')}{detail}")
        print(f"re-validated {len(outcomes)} session{'s' if len(outcomes) != 1 else ''}")
    return 0
