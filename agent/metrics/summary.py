"""The admin socket's ``/status`` answer: what ``sensor-sso-agent status`` prints.

Pure: the process's counts and the current application's readings in, one JSON-ready
dictionary out (the admin socket adds ``agent``: which agent answered). No UPN or address
is in it: counts, reason codes, names of dependencies and tasks.
"""

from __future__ import annotations

from typing import Any

from .readings import Readings
from .tally import AgentMetrics


def summary(metrics: AgentMetrics, reading: Readings | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "uptime_s": round(metrics.clock() - metrics.started),
        "last_hour": metrics.last_hour(),
        "revalidations": dict(metrics.revalidations),
        "reloads": {**metrics.reloads, "last_success": metrics.last_reload_success},
    }
    if reading is None:  # the first application is still starting
        out["ready"] = False
        out["why_not_ready"] = "the agent is starting"
        return out
    out.update({
        "ready": reading.ready,
        "why_not_ready": reading.why_not_ready,
        "degraded": dict(reading.degraded),
        "sessions": [{"role": role, "method": method, "count": count}
                     for (role, method), count in sorted(reading.sessions.items())],
        "dependencies": {name: {"up": d.up, "last_success": d.last_success, "why": d.why}
                         for name, d in sorted(reading.dependencies.items())},
        "revalidation": {"lag_s": round(reading.revalidation_lag, 1),
                         "interval_s": reading.revalidate_interval},
        "state": {"writable": reading.state_writable, "problem": reading.state_problem},
        "tasks": {"failures": metrics.task_failures(reading.task_failures),
                  "failing": list(reading.failing_tasks)},
    })
    return out
