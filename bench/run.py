"""``python -m bench [--smoke] [--out PATH]``: run every measurement, print a table, write JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from . import idtoken, metrics
from .load import client_name, run_load
from .nginx import console_pairs
from .report import evaluate, metrics_targets, table
from .stack import (
    REFRESH_TOKEN_CHARS,
    ROOT,
    AgentProcess,
    cpu_seconds,
    free_port,
    seed_sessions,
    sign_in,
    start_idp,
    write_config,
)

COOKIE = "__Host-sensor_session"
FULL: dict[str, Any] = {"seconds": 3.0, "warmup": 0.5, "repeats": 3, "sessions": 100_000,
                        "sign_ins": 200, "sign_in_concurrency": 4, "token_seconds": 2.0,
                        "revalidating_sessions": 300, "revalidate_window": 10.0}
SMOKE: dict[str, Any] = {"seconds": 1.0, "warmup": 0.0, "repeats": 1, "sessions": 1_000,
                         "sign_ins": 4, "sign_in_concurrency": 2, "token_seconds": 0.2,
                         "revalidating_sessions": 20, "revalidate_window": 2.0}
REVALIDATE_INTERVAL = 10.0  # the shortest allowed: 300 sessions = 9,000 at the default 5 min
CONNECTIONS = (8, 64)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import aiohttp as aio

    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "aiohttp": aio.__version__,
            "load_client": client_name(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "loadavg_at_start": os.getloadavg()[0]}


async def _wait_http(url: str, limit_s: float = 20.0, headers: dict[str, str] | None = None
                     ) -> int:
    deadline = time.perf_counter() + limit_s
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url, headers=headers, allow_redirects=False) as resp:
                    return resp.status
            except aiohttp.ClientError:
                if time.perf_counter() > deadline:
                    raise
                await asyncio.sleep(0.02)


async def _measure(url: str, headers: dict[str, str], conns: int, p: dict[str, Any],
                   pid: int) -> dict[str, Any]:
    """One load run, plus the server's own CPU time per request (robust to a busy machine)."""
    if p["warmup"]:
        await run_load(url, headers, conns, p["warmup"])
    cpu0 = cpu_seconds(pid)
    load = await run_load(url, headers, conns, p["seconds"])
    cpu = cpu_seconds(pid) - cpu0
    result = load.as_dict()
    result["server_cpu_us_per_request"] = (round(cpu * 1e6 / load.requests, 1)
                                           if load.requests else None)
    return result


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the most req/s; latency percentiles and CPU per request are the lowest of
    all the runs (each figure's least contended value)."""
    best = dict(max(runs, key=lambda r: r["rps"]))
    for name in ("p50_ms", "p99_ms", "server_cpu_us_per_request"):
        values = [r[name] for r in runs if r[name] is not None]
        best[name] = min(values) if values else None
    best["runs"] = len(runs)
    return best


async def _alternate(targets: dict[str, tuple[str, int, str]], p: dict[str, Any]
                     ) -> dict[str, dict[str, Any]]:
    """``targets``: name → (URL, server PID, session cookie). At each connection count their
    runs alternate, ``repeats`` times each, and the best of each is kept (other work on a
    shared machine only ever makes a run slower, and alternating spreads it evenly)."""
    out: dict[str, dict[str, Any]] = {}
    for conns in CONNECTIONS:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
        for _ in range(p["repeats"]):
            for name, (url, pid, cookie) in targets.items():
                runs[name].append(await _measure(url, {"Cookie": f"{COOKIE}={cookie}"}, conns,
                                                 p, pid))
        out[f"c{conns}"] = {name: _best(done) for name, done in runs.items()}
    return out


def _ratio(a: dict[str, Any], b: dict[str, Any]) -> tuple[float | None, float | None]:
    """``a`` against ``b``: by req/s and by server CPU per request (higher is better for a)."""
    a_cpu, b_cpu = a["server_cpu_us_per_request"], b["server_cpu_us_per_request"]
    return (round(a["rps"] / b["rps"], 3) if b["rps"] else None,
            round(b_cpu / a_cpu, 3) if a_cpu and b_cpu else None)


async def _sign_ins(agent: AgentProcess, idp: Any, tls: ssl.SSLContext,
                    p: dict[str, Any]) -> dict[str, Any]:
    before = dict(idp.requests)
    # A Popen (not asyncio's) so the probe is its own process we signal; starting it is quick.
    probe = subprocess.Popen(  # noqa: S603, ASYNC220 - our own module, fixed arguments
        [sys.executable, "-m", "bench.probe", f"{agent.url}/healthz"],
        stdout=subprocess.PIPE, cwd=ROOT)
    await asyncio.sleep(0.2)
    cpu0 = agent.cpu_seconds()
    queue = list(range(p["sign_ins"]))
    failures = 0

    async def worker() -> None:
        nonlocal failures
        while queue:
            queue.pop()
            try:
                await sign_in(agent.url, idp, tls)
            except Exception:  # noqa: BLE001 - counted and reported
                failures += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(p["sign_in_concurrency"])))
    elapsed = time.perf_counter() - t0
    cpu = agent.cpu_seconds() - cpu0
    probe.send_signal(signal.SIGTERM)
    probe_out, _ = probe.communicate(timeout=10)
    after = dict(idp.requests)
    done = p["sign_ins"] - failures
    return {
        "sign_ins": done, "failures": failures, "concurrency": p["sign_in_concurrency"],
        "seconds": round(elapsed, 2), "per_s": round(done / elapsed, 1),
        "agent_cpu_ms_per_sign_in": round(cpu * 1000 / max(done, 1), 2),
        "discovery_fetches": after.get("discovery", 0) - before.get("discovery", 0),
        "jwks_fetches": after.get("jwks", 0) - before.get("jwks", 0),
        "healthz_during_sign_ins": json.loads(probe_out.decode() or "{}"),
    }


async def _revalidating_agent(tmp: Path, idp: Any, port: int,
                              p: dict[str, Any]) -> AgentProcess:
    state = tmp / "state-c"
    seed_sessions(state, p["revalidating_sessions"], refresh_tokens=True, idp=idp,
                  interval=REVALIDATE_INTERVAL)
    agent = AgentProcess(write_config(tmp / "c.toml", idp, port, state,
                                      f'revalidate_interval = "{int(REVALIDATE_INTERVAL)}s"'),
                         port, tmp / "agent-c.log")
    agent.start()
    await agent.wait_ready()
    return agent


async def _revalidation(agent: AgentProcess, idp: Any, tls: ssl.SSLContext,
                        p: dict[str, Any]) -> dict[str, Any]:
    """Agent CPU per re-validation: a quiet window where re-validation is all it does (at
    least ``revalidate_window`` seconds, longer until a few re-validations happened)."""
    await asyncio.sleep(1.0)
    refreshes0, cpu0 = idp.requests["token_refresh"], agent.cpu_seconds()
    t0 = time.perf_counter()
    while True:
        await asyncio.sleep(0.25)
        elapsed = time.perf_counter() - t0
        refreshes = idp.requests["token_refresh"] - refreshes0
        if elapsed >= p["revalidate_window"] and refreshes >= 3 or \
                elapsed >= 4 * REVALIDATE_INTERVAL:
            break
    cpu = agent.cpu_seconds() - cpu0
    return {"sessions": p["revalidating_sessions"], "interval_s": REVALIDATE_INTERVAL,
            "window_s": round(elapsed, 2), "refreshes": refreshes,
            "per_s": round(refreshes / elapsed, 1),
            "agent_cpu_ms_per_revalidation": round(cpu * 1000 / refreshes, 2)
            if refreshes else None,
            "refreshes_before": idp.requests["token_refresh"]}


async def run(smoke: bool) -> dict[str, Any]:
    p = SMOKE if smoke else FULL
    results: dict[str, Any] = {"mode": "smoke" if smoke else "full", "parameters": p,
                               "machine": machine()}
    port, port_many, port_rv, ceiling_port = free_port(), free_port(), free_port(), free_port()
    ceiling_url = f"http://127.0.0.1:{ceiling_port}/auth/check"
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp_name:
        tmp = Path(tmp_name)
        idp = start_idp(port)
        idp.redirect_uris += [f"http://127.0.0.1:{p}/auth/sso/callback"
                              for p in (port_many, port_rv)]
        await idp.start()
        tls = ssl.create_default_context(cafile=str(idp.ca_file))
        # The agent with one session: the reference of every comparison below, running
        # beside the others so that their runs alternate with its runs.
        agent = AgentProcess(write_config(tmp / "a.toml", idp, port, tmp / "state-a"), port,
                             tmp / "agent-a.log")
        others: list[AgentProcess] = []
        ceiling: subprocess.Popen[bytes] | None = None
        try:
            # 1. one session: /auth/check beside the ceiling; idle RSS; ready time.
            agent.start()
            ready = await agent.wait_ready()
            await asyncio.sleep(0.5)
            rss_idle = agent.rss_mib()
            cookie = await sign_in(agent.url, idp, tls)
            status = await _wait_http(f"{agent.url}/auth/check",
                                      headers={"Cookie": f"{COOKIE}={cookie}"})
            if status != 200:
                raise RuntimeError(f"/auth/check with the bench session answered {status}")
            await asyncio.sleep(0.5)
            rss_signed_in = agent.rss_mib()  # MSAL and requests are imported at a sign-in
            one = (f"{agent.url}/auth/check", agent.pid, cookie)
            ceiling = _start_ceiling(ceiling_port, cookie)
            await _wait_http(ceiling_url)
            pair = await _alternate({"agent": one, "ceiling": (ceiling_url, ceiling.pid,
                                                                cookie)}, p)
            results["auth_check"] = {}
            for name, row in pair.items():
                ratio, cpu_ratio = _ratio(row["agent"], row["ceiling"])
                results["auth_check"][name] = {**row, "ratio": ratio, "cpu_ratio": cpu_ratio}
            results["console_through_nginx"] = await console_pairs(
                tmp, port, agent.pid, cookie, p)
            # 1b. the same agent with [metrics] listen (every /auth/check timed) against it.
            results["metrics"] = await metrics.compare(tmp, idp, tls, one, p, _alternate,
                                                       _ratio)

            # 2. many sessions, written into the journal before that agent starts; its runs
            # alternate with the one-session agent's. Every seeded session holds a refresh
            # token of Entra's size; the interval is long enough that none is due meanwhile.
            many_agent, seeded_s, ready_many, cookie_b = await _restoring_agent(
                tmp, "b", idp, tls, port_many, p["sessions"], refresh_tokens=True)
            others.append(many_agent)
            rss_loaded = many_agent.rss_mib()
            many = await _alternate({
                "agent": (f"{many_agent.url}/auth/check", many_agent.pid, cookie_b),
                "one_session": one}, p)
            for row in many.values():
                row["vs_one_session"], row["vs_one_session_cpu"] = _ratio(row["agent"],
                                                                          row["one_session"])
            rss_after = many_agent.rss_mib()
            many_agent.stop()
            # 2b. as many sessions without refresh tokens (local accounts, sessions from
            # before re-validation): what docs/performance.md's memory and start targets are
            # set for.
            plain_agent, _, ready_plain, _ = await _restoring_agent(
                tmp, "c", idp, tls, port_many, p["sessions"], refresh_tokens=False)
            others.append(plain_agent)
            rss_plain = plain_agent.rss_mib()
            plain_agent.stop()
            results["auth_check_many_sessions"] = {
                "sessions": p["sessions"] + 1,
                "restored_by_agent": many_agent.restored_sessions(),
                "seeded_via": "SessionJournal.append of journal_items(session) before start",
                "seed_seconds": round(seeded_s, 2), **many}
            results["resources"] = {
                "rss_idle_mib": rss_idle, "rss_signed_in_mib": rss_signed_in,
                "rss_with_sessions_mib": rss_after,
                # against the one-session agent after its sign-in: both have MSAL imported
                "rss_sessions_delta_mib": round(rss_after - rss_signed_in, 1),
                "rss_right_after_restore_mib": rss_loaded,
                "ready_s": round(ready, 3), "ready_with_sessions_s": round(ready_many, 3),
                "refresh_token_chars": REFRESH_TOKEN_CHARS,
                "rss_with_sessions_no_refresh_tokens_mib": rss_plain,
                "rss_sessions_no_refresh_tokens_delta_mib": round(rss_plain - rss_signed_in, 1),
                "ready_with_sessions_no_refresh_tokens_s": round(ready_plain, 3)}

            # 3. re-validation running: sessions confirmed with the provider all the time;
            # its runs alternate with the one-session agent's and the ceiling's.
            rv_agent = await _revalidating_agent(tmp, idp, port_rv, p)
            others.append(rv_agent)
            results["revalidation"] = await _revalidation(rv_agent, idp, tls, p)
            cookie_c = await sign_in(rv_agent.url, idp, tls)
            ceiling.terminate()
            ceiling.wait(10)
            ceiling = _start_ceiling(ceiling_port, cookie_c)
            await _wait_http(ceiling_url)
            during = await _alternate({
                "agent": (f"{rv_agent.url}/auth/check", rv_agent.pid, cookie_c),
                "without": one, "ceiling": (ceiling_url, ceiling.pid, cookie_c)}, p)
            refreshed = idp.requests["token_refresh"] - results["revalidation"]["refreshes_before"]
            for row in during.values():
                row["ratio"], row["cpu_ratio"] = _ratio(row["agent"], row["ceiling"])
                row["vs_without_revalidation"], row["vs_without_revalidation_cpu"] = \
                    _ratio(row["agent"], row["without"])
            results["auth_check_revalidating"] = {
                "sessions": p["revalidating_sessions"], "interval_s": REVALIDATE_INTERVAL,
                "refreshes_during_runs": refreshed, **during}
            rv_agent.stop()

            # 4. complete sign-ins, last: they leave the one-session agent with many sessions.
            results["sign_in"] = await _sign_ins(agent, idp, tls, p)
        finally:
            if ceiling is not None:
                ceiling.terminate()
                ceiling.wait(10)
            for other in others:
                other.stop()
            agent.stop()
            await idp.stop()
    results["id_token"] = await idtoken.measure(p["token_seconds"])
    results["machine"]["loadavg_at_end"] = os.getloadavg()[0]
    results["targets"] = evaluate(results)
    return results


async def _restoring_agent(tmp: Path, name: str, idp: Any, tls: ssl.SSLContext,
                           port: int, count: int, refresh_tokens: bool,
                           ) -> tuple[AgentProcess, float, float, str]:
    """An agent that restores ``count`` sessions seeded into its journal before it starts
    (none due for re-validation meanwhile), signed in once so that MSAL is loaded as in the
    one-session agent: the agent, seconds to seed, seconds to ready, the bench cookie."""
    state = tmp / f"state-{name}"
    seeded_s = seed_sessions(state, count, refresh_tokens=refresh_tokens)
    agent = AgentProcess(write_config(tmp / f"{name}.toml", idp, port, state,
                                      'revalidate_interval = "1h"'), port,
                         tmp / f"agent-{name}.log")
    agent.start()
    ready = await agent.wait_ready()
    cookie = await sign_in(agent.url, idp, tls)
    await asyncio.sleep(0.5)
    return agent, seeded_s, ready, cookie


def _start_ceiling(port: int, cookie: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - our module, fixed arguments
        [sys.executable, "-m", "bench.ceiling", str(port)], cwd=ROOT,
        env={**os.environ, "BENCH_COOKIE": cookie})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny and quick (for the tests)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest.json"),
                        help="where the JSON goes (default bench/results/latest.json)")
    parser.add_argument("--only", choices=["metrics"], default=None,
                        help="only this section: metrics = /auth/check with [metrics] listen "
                             "against without, idle RSS, a scrape's cost")
    args = parser.parse_args(argv)
    if args.only == "metrics":
        p = SMOKE if args.smoke else FULL
        results = asyncio.run(metrics.run_only(p, _alternate, _ratio, machine()))
        results["targets"] = metrics_targets(results["metrics"])
    else:
        results = asyncio.run(run(args.smoke))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nJSON: {out}")
    return 0
