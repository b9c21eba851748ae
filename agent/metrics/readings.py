"""What the running application says about itself, read when asked (a scrape, ``status``).

Built by the web layer (``agent.web.health``) from the current application, so that this
package reads the agent without importing it. Everything here is cheap to read: counts the
session store keeps as sessions come and go, the lag the re-validation's last pass found,
flags; nothing walks the sessions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Dependency:
    """One thing the agent needs from outside: is it answering, and when did it last?"""

    up: bool
    last_success: float | None = None  # Unix time; None: never since start
    why: str | None = None  # when down: what failed (for ``status``; never a label)


@dataclass(frozen=True)
class Readings:
    ready: bool
    why_not_ready: str | None = None
    degraded: Mapping[str, str] = field(default_factory=dict)  # what /readyz lists and why
    sessions: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (role, method)
    revalidation_lag: float = 0.0  # s since the least recently confirmed SSO session was
    revalidate_interval: float = 0.0  # [session] revalidate_interval, for the alert rules
    state_writable: bool = True
    state_problem: str | None = None
    dependencies: Mapping[str, Dependency] = field(default_factory=dict)  # labels.DEPENDENCIES
    task_failures: Mapping[str, int] = field(default_factory=dict)  # task name → failures
    failing_tasks: tuple[str, ...] = ()
