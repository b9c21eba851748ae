"""Load generation: ``wrk`` when installed, else an aiohttp client (slower: it measures less)."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from dataclasses import asdict, dataclass

import aiohttp

WRK = shutil.which("wrk")
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


@dataclass
class LoadResult:
    connections: int
    seconds: float
    requests: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    bad_responses: int
    errors: int
    client: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def client_name() -> str:
    return "wrk" if WRK else "aiohttp"


async def run_load(url: str, headers: dict[str, str], connections: int,
                   seconds: float) -> LoadResult:
    if WRK:
        return await _wrk(url, headers, connections, seconds)
    return await _aiohttp_load(url, headers, connections, seconds)


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"unreadable wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str, connections: int, seconds: float) -> LoadResult:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return LoadResult(connections, seconds, total, round(rps, 1),
                      round(_ms(pct["50"]), 3) if "50" in pct else None,
                      round(_ms(pct["99"]), 3) if "99" in pct else None,
                      int(bad.group(1)) if bad else 0,
                      sum(int(g) for g in errs.groups()) if errs else 0, "wrk")


async def _wrk(url: str, headers: dict[str, str], connections: int,
               seconds: float) -> LoadResult:
    args = [WRK or "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            "--latency", "--timeout", "5s"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    proc = await asyncio.create_subprocess_exec(*args, url, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {err.decode(errors='replace')[:500]}")
    return parse_wrk(out.decode(), connections, seconds)


async def _aiohttp_load(url: str, headers: dict[str, str], connections: int,
                        seconds: float) -> LoadResult:
    latencies: list[float] = []
    bad = errors = 0
    connector = aiohttp.TCPConnector(limit=connections, ssl=False)  # loopback, own CA
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal bad, errors
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    async with http.get(url, allow_redirects=False) as resp:
                        await resp.read()
                        if resp.status >= 400:
                            bad += 1
                except aiohttp.ClientError:
                    errors += 1
                    continue
                latencies.append((time.perf_counter() - t0) * 1000)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> float | None:
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 3)

    return LoadResult(connections, seconds, len(latencies), round(len(latencies) / elapsed, 1),
                      pct(0.5), pct(0.99), bad, errors, "aiohttp")
