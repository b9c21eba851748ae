"""Scraping the agent's metrics listener over HTTP, and a stack that serves them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from agent.monitor import Monitor
from tests.harness import Stack, free_port, make_stack

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape_text(url: str) -> tuple[int, str, str]:
    """``GET url``: status, content type, body."""
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


def samples(text: str) -> Samples:
    """Every sample of an exposition, by (name, labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


class Watched:
    """A stack whose agent is watched: its ``Monitor`` (counts that outlive the application,
    the listener) serving ``[metrics] listen`` as ``serve`` does."""

    def __init__(self, stack: Stack, monitor: Monitor, port: int) -> None:
        self.stack, self.monitor, self.port = stack, monitor, port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    async def scrape(self) -> Samples:
        status, _, text = await scrape_text(self.url)
        assert 200 == status, text
        return samples(text)

    async def close(self) -> None:
        await self.monitor.stop()
        await self.stack.close()


async def watched_stack(tmp_path: Path, config: Callable[[dict[str, Any]], None] | None = None,
                        wait_ready: bool = True,
                        before_start: Callable[[Stack], object] | None = None,
                        **options: Any) -> Watched:
    port = free_port()

    def configure(data: dict[str, Any]) -> None:
        data["metrics"] = {"listen": f"127.0.0.1:{port}"}
        if config is not None:
            config(data)

    stack = await make_stack(tmp_path, config=configure, start=False, **options)
    monitor = Monitor(lambda: stack.app, clock=stack.clock)
    stack.app_options["metrics"] = monitor.counts
    if before_start is not None:
        before_start(stack)
    await stack.start_agent(wait_ready=wait_ready)
    await monitor.serve(stack.settings.metrics)
    assert monitor.listener is not None, monitor.problem
    return Watched(stack, monitor, port)
