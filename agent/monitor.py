"""The process's monitoring: counts that outlive a reload and the ``[metrics] listen`` listener.

``Service`` (lifecycle.py) owns one ``Monitor``: every application a reload builds adds to
the same ``AgentMetrics``, and the listener (when ``[metrics] listen`` is set) reads whichever
application is current. A listener that cannot bind is logged once
(``metrics_listener_unavailable``) and the agent serves on without it; ``status`` says so.
``prometheus_client`` is imported only when the listener starts.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from .metrics.tally import AgentMetrics
from .settings import MetricsSettings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from .metrics.listener import MetricsListener
    from .metrics.readings import Readings

log = structlog.get_logger("agent")


class Monitor:
    def __init__(self, current_app: Callable[[], web.Application | None],
                 clock: Callable[[], float] = time.time) -> None:
        self.current_app = current_app
        self.counts = AgentMetrics(clock)  # for as long as the process lives
        self.listener: MetricsListener | None = None
        self.problem: str | None = None  # why [metrics] listen is not served
        self._registry: CollectorRegistry | None = None

    async def serve(self, wanted: MetricsSettings) -> None:
        """Listen where ``wanted`` says (stopping a previous listener); nothing when off."""
        await self.stop()
        self.problem = None
        if wanted.listen_host is None:
            return
        from .metrics.listener import MetricsListener  # prometheus_client: only when asked

        if self._registry is None:
            self._registry = self._build_registry()
        listener = MetricsListener(wanted.listen_host, wanted.listen_port, self._registry)
        try:
            await listener.start()
        except OSError as exc:
            self.problem = exc.strerror or str(exc)
            log.error("metrics_listener_unavailable", listen=wanted.listen, why=self.problem,
                      effect="no metrics; the agent serves on",
                      fix="set [metrics] listen to a free address and reload")
            return
        self.listener = listener

    async def stop(self) -> None:
        if self.listener is not None:
            await self.listener.stop()
            self.listener = None

    def _build_registry(self) -> CollectorRegistry:
        from . import __version__
        from .metrics.exposition import AgentCollector, agent_registry
        from .web.health import readings

        def current() -> Readings | None:
            app = self.current_app()
            return readings(app) if app is not None else None

        return agent_registry(AgentCollector(self.counts, current, __version__,
                                             platform.python_version()))
