"""Metrics on against off (issue 21): ``/auth/check`` of two one-session agents, the second
with ``[metrics] listen`` (so every answer is timed into the histogram), runs alternated;
the idle RSS of an agent with metrics on; what a scrape costs the agent.

``python -m bench --only metrics`` runs just this section (a few minutes); the full run
includes it beside the one-session agent of section 1.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from .stack import AgentProcess, cpu_seconds, free_port, sign_in, start_idp, write_config

Alternate = Callable[[dict[str, tuple[str, int, str]], dict[str, Any]],
                     Awaitable[dict[str, dict[str, Any]]]]
Ratio = Callable[[dict[str, Any], dict[str, Any]], tuple[float | None, float | None]]
SCRAPES = 200


async def compare(tmp: Path, idp: Any, tls: ssl.SSLContext, off: tuple[str, int, str],
                  p: dict[str, Any], alternate: Alternate, ratio: Ratio) -> dict[str, Any]:
    """The metrics-on agent against ``off`` (URL, PID, cookie of a metrics-off agent)."""
    port, metrics_port = free_port(), free_port()
    idp.redirect_uris.append(f"http://127.0.0.1:{port}/auth/sso/callback")
    agent = AgentProcess(write_config(tmp / "metrics.toml", idp, port, tmp / "state-metrics",
                                      extra=f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n'),
                         port, tmp / "agent-metrics.log")
    try:
        agent.start()
        await agent.wait_ready()
        await asyncio.sleep(0.5)
        rss_idle = agent.rss_mib()
        cookie = await sign_in(agent.url, idp, tls)
        rows = await alternate({"metrics_on": (f"{agent.url}/auth/check", agent.pid, cookie),
                                "metrics_off": off}, p)
        for row in rows.values():
            row["ratio"], row["cpu_ratio"] = ratio(row["metrics_on"], row["metrics_off"])
        scrape = await _scrapes(f"http://127.0.0.1:{metrics_port}/metrics", agent.pid)
    finally:
        agent.stop()
    return {"rss_idle_metrics_on_mib": rss_idle, "scrape": scrape, **rows}


async def _scrapes(url: str, pid: int) -> dict[str, Any]:
    """``SCRAPES`` scrapes one after another: the agent's CPU and the wall time per scrape."""
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            body = await resp.read()
        cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
        for _ in range(SCRAPES):
            async with http.get(url) as resp:
                await resp.read()
        cpu, wall = cpu_seconds(pid) - cpu0, time.perf_counter() - wall0
    return {"bytes": len(body), "samples": sum(1 for line in body.splitlines()
                                               if line and not line.startswith(b"#")),
            "agent_cpu_ms_per_scrape": round(cpu * 1000 / SCRAPES, 2),
            "wall_ms_per_scrape": round(wall * 1000 / SCRAPES, 2)}


async def run_only(p: dict[str, Any], alternate: Alternate, ratio: Ratio,
                   machine: dict[str, Any]) -> dict[str, Any]:
    """``--only metrics``: the metrics-off agent, the metrics-on agent, their comparison."""
    results: dict[str, Any] = {"mode": "only metrics", "parameters": p, "machine": machine}
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp_name:
        tmp = Path(tmp_name)
        idp = start_idp(port)
        await idp.start()
        tls = ssl.create_default_context(cafile=str(idp.ca_file))
        off = AgentProcess(write_config(tmp / "a.toml", idp, port, tmp / "state-a"), port,
                           tmp / "agent-a.log")
        try:
            off.start()
            await off.wait_ready()
            await asyncio.sleep(0.5)
            rss_off = off.rss_mib()
            cookie = await sign_in(off.url, idp, tls)
            results["metrics"] = await compare(tmp, idp, tls,
                                               (f"{off.url}/auth/check", off.pid, cookie), p,
                                               alternate, ratio)
            results["metrics"]["rss_idle_metrics_off_mib"] = rss_off
        finally:
            off.stop()
            await idp.stop()
    results["machine"]["loadavg_at_end"] = os.getloadavg()[0]
    return results


def rows(m: dict[str, Any], lat: Callable[[dict[str, Any]], str]) -> list[str]:
    """The table's lines for the section."""
    out = []
    for name in ("c8", "c64"):
        row = m[name]
        out.append(f"| /auth/check with metrics on, {name[1:]} conns | {lat(row['metrics_on'])}"
                   f"; {row['ratio']}× metrics off by req/s, {row['cpu_ratio']}× by CPU per "
                   f"request (runs alternated with: {lat(row['metrics_off'])}) |")
    s = m["scrape"]
    out.append(f"| RSS idle with metrics on | {m['rss_idle_metrics_on_mib']} MiB"
               + (f" (off: {m['rss_idle_metrics_off_mib']} MiB)"
                  if "rss_idle_metrics_off_mib" in m else "") + " |")
    out.append(f"| one scrape of /metrics ({s['samples']} samples, {s['bytes']:,} bytes) | "
               f"agent CPU {s['agent_cpu_ms_per_scrape']} ms, {s['wall_ms_per_scrape']} ms "
               "wall |")
    return out
