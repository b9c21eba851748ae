"""``[metrics] listen``: a listener of its own serving ``GET /metrics`` (Prometheus text).

Apart from the agent's listener on purpose: the console's nginx never proxies it, a scrape
never queues behind sign-ins, and the address can be bound to a monitoring network alone.
It answers ``/metrics`` only (anything else is 404); the families are built at each scrape
(``exposition``), so a slow scraper costs nothing between scrapes.
"""

from __future__ import annotations

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from .exposition import exposition

log = structlog.get_logger("agent")

# The text format every Prometheus reads (the library's newest may name another version).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsListener:
    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        self.host, self.port = host, port
        self.registry = registry
        self._runner: web.AppRunner | None = None

    @property
    def listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen; raises ``OSError`` when the address cannot be bound."""
        app = web.Application(client_max_size=4096)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port, reuse_address=True).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info("metrics_listening", listen=self.listen, path="/metrics")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        body = exposition(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE,
                                                "Cache-Control": "no-store"})
