"""``sensor-sso-agent status [--json]``: what an operator reads at 3 a.m.

Asks the running agent over its admin socket (``[server] admin_socket``; root or the service
user) and prints which agent answered (pid, configuration, listen addresses), its uptime,
ready or not and why, what is degraded, sessions by role and method, sign-ins and refusals
of the last hour by reason, the dependencies, the re-validation lag, session state, the
background tasks and reloads. ``--json``: the admin socket's answer as it came.

Exit status: 0 ready with nothing degraded, 2 not ready or something degraded, 1 the agent
could not be asked.
"""

from __future__ import annotations

import datetime
import json
import sys
from typing import Any

from .sessions.cli import answered_by, ask
from .settings import load_or_report


def status_command(config: str, as_json: bool = False) -> int:
    settings = load_or_report(config)
    if settings is None:
        return 1
    answer = ask(settings.server.admin_socket, "GET", "/status")
    if answer is None:
        return 1
    status, data = answer
    if status != 200:
        if isinstance(data.get("agent"), dict):
            print(answered_by(data["agent"]))
        print(f"the agent refused: {data.get('error', f'HTTP {status}')}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print("\n".join(describe(data)))
    healthy = data.get("ready") is True and not data.get("degraded") and \
        not (data.get("tasks") or {}).get("failing")
    return 0 if healthy else 2


def _when(value: object) -> str:
    if not isinstance(value, int | float):
        return "never"
    return datetime.datetime.fromtimestamp(value, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _ago(seconds: object) -> str:
    """3725 → ``1h 2m 5s`` (whole seconds)."""
    if not isinstance(seconds, int | float):
        return "-"
    left, parts = round(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    if left or not parts:
        parts.append(f"{left}s")
    return " ".join(parts)


def _counts(counts: object) -> str:
    if not isinstance(counts, dict) or not counts:
        return "none"
    return ", ".join(f"{key} {value}" for key, value in counts.items())


def describe(data: dict[str, Any]) -> list[str]:
    """The lines ``status`` prints for the admin socket's answer."""
    agent = data.get("agent") or {}
    lines = [f"sensor-sso-agent {agent.get('version', '?')}, pid {agent.get('pid', '?')}, "
             f"up {_ago(data.get('uptime_s'))} (since {_when(agent.get('started'))})",
             f"configuration: {agent.get('config') or '(none)'}",
             f"listening on:  {agent.get('listen', '?')}"]
    if agent.get("metrics_problem"):
        lines.append(f"metrics:       NOT served on {agent.get('metrics')}: "
                     f"{agent['metrics_problem']}")
    else:
        lines.append(f"metrics:       {agent.get('metrics') or 'off ([metrics] listen unset)'}")
    if data.get("ready"):
        lines.append("ready:         yes")
    else:
        lines.append(f"ready:         NO: {data.get('why_not_ready') or 'unknown'}")
    for name, why in (data.get("degraded") or {}).items():
        lines.append(f"degraded:      {name}: {why}")
    if "sessions" not in data:
        return lines
    sessions = data.get("sessions") or []
    total = sum(int(row.get("count", 0)) for row in sessions)
    detail = ", ".join(f"{row.get('role')}/{row.get('method')} {row.get('count')}"
                       for row in sessions)
    lines.append(f"sessions:      {total}" + (f" ({detail})" if detail else ""))
    hour = data.get("last_hour") or {}
    lines.append(f"last hour:     signed in: {_counts(hour.get('sign_ins'))}; "
                 f"refused: {_counts(hour.get('refusals'))}")
    for reason, count in (hour.get("refusals_by_reason") or {}).items():
        lines.append(f"  refused {count} x {reason}")
    for name, dep in (data.get("dependencies") or {}).items():
        up = "up" if dep.get("up") else f"DOWN: {dep.get('why') or 'failing'}"
        seen = f" (last answered {_when(dep.get('last_success'))})" \
            if dep.get("last_success") is not None else ""
        lines.append(f"dependency:    {name} {up}{seen}")
    revalidation = data.get("revalidation") or {}
    lines.append(f"re-validation: lag {_ago(revalidation.get('lag_s'))} (interval "
                 f"{_ago(revalidation.get('interval_s'))}); since start: "
                 f"{_counts(data.get('revalidations'))}")
    state = data.get("state") or {}
    lines.append("session state: writable" if state.get("writable")
                 else f"session state: NOT writable: {state.get('problem')}")
    tasks = data.get("tasks") or {}
    failing = tasks.get("failing") or []
    failures = {task: n for task, n in (tasks.get("failures") or {}).items() if n}
    lines.append("tasks:         " + (f"FAILING: {', '.join(failing)}" if failing else
                                      "all running") +
                 (f" (failures since start: {_counts(failures)})" if failures else ""))
    reloads = dict(data.get("reloads") or {})
    last = reloads.pop("last_success", None)
    lines.append(f"reloads:       {_counts(reloads)}; configuration applied {_when(last)}")
    return lines
