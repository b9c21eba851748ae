"""What a console user pays: one console request through real nginx (TLS, the shipped
snippets, the shipped upstream with its keepalive to the agent) with ``auth_request`` against
the same request without it; and again with the optional /auth/check cache installed.

The console is a static page nginx serves itself (a second ``server``, proxied to over a
keepalive upstream), so the pair differs only by the auth subrequest. One nginx process
(``master_process off``, one worker): its CPU time and the agent's are both reported per
console request.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from agent.devidp.certs import make_tls_material

from .load import run_load
from .stack import ROOT, cpu_seconds, free_port

SHIPPED = ROOT / "config" / "nginx"
CONNECTIONS = 32
COOKIE = "__Host-sensor_session"
# What a browser sends with a console page request (besides Host), so nginx and the agent
# see a realistic request: the console's own cookie beside the session's.
BROWSER = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/131.0.0.0 Safari/537.36",
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "en-US,en;q=0.9",
    "Accept-Encoding": "gzip, deflate, br",
    "Referer": "https://sensor-01.plant.example/overview",
}


def find_nginx() -> str | None:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


SITE = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include conf.d/*.conf;
    upstream console {{ server 127.0.0.1:{console_port}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{console_port};
        location / {{ default_type text/plain; return 200 "console page\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {tmp}/server.pem;
        ssl_certificate_key {tmp}/server-key.pem;
        include snippets/sensor-sso.conf;
        location /console/ {{
            auth_request /auth/check;
            include snippets/sensor-sso-auth.conf;
            proxy_pass http://console;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location /open/ {{
            proxy_pass http://console;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, tmp: Path, agent_port: int, cached: bool) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        (tmp / "conf.d").mkdir(parents=True)
        (tmp / "snippets").mkdir()
        (tmp / "conf.d" / "sensor-sso-upstream.conf").write_text(
            (SHIPPED / "sensor-sso-upstream.conf").read_text().replace(
                "127.0.0.1:8080", f"127.0.0.1:{agent_port}"))
        for name in ("sensor-sso.conf", "sensor-sso-auth.conf"):
            shutil.copy(SHIPPED / name, tmp / "snippets" / name)
        if cached:
            shutil.copy(SHIPPED / "sensor-sso-check-cache.conf", tmp / "snippets")
            (tmp / "conf.d" / "sensor-sso-check-cache-zone.conf").write_text(
                (SHIPPED / "sensor-sso-check-cache-zone.conf").read_text().replace(
                    "/run/nginx-sensor-sso-check ", f"{tmp}/cache "))
        make_tls_material().write(tmp)
        (tmp / "nginx.conf").write_text(SITE.format(tmp=tmp, port=self.port,
                                                    console_port=free_port()))

    def start(self, binary: str) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - nginx, fixed arguments
            [binary, "-p", str(self.tmp), "-c", str(self.tmp / "nginx.conf"), "-e",
             str(self.tmp / "error.log")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def wait_listening(self) -> None:
        deadline = time.perf_counter() + 10
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited; see {self.tmp / 'error.log'}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            except OSError:
                if time.perf_counter() > deadline:
                    raise
                await asyncio.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


async def _run(url: str, cookie: str, p: dict[str, Any], nginx_pid: int,
               agent_pid: int) -> dict[str, Any]:
    headers = {**BROWSER, "Cookie": f"theme=dark; {COOKIE}={cookie}"}
    if p["warmup"]:
        await run_load(url, headers, CONNECTIONS, p["warmup"])
    n0, a0 = cpu_seconds(nginx_pid), cpu_seconds(agent_pid)
    load = await run_load(url, headers, CONNECTIONS, p["seconds"])
    n1, a1 = cpu_seconds(nginx_pid), cpu_seconds(agent_pid)
    out = load.as_dict()
    out["nginx_cpu_us_per_request"] = round((n1 - n0) * 1e6 / load.requests, 1) \
        if load.requests else None
    out["agent_cpu_us_per_request"] = round((a1 - a0) * 1e6 / load.requests, 1) \
        if load.requests else None
    return out


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    best = dict(max(runs, key=lambda r: r["rps"]))
    for name in ("p50_ms", "p99_ms", "nginx_cpu_us_per_request", "agent_cpu_us_per_request"):
        values = [r[name] for r in runs if r[name] is not None]
        best[name] = min(values) if values else None
    best["runs"] = len(runs)
    return best


async def console_pairs(tmp: Path, agent_port: int, agent_pid: int, cookie: str,
                        p: dict[str, Any]) -> dict[str, Any]:
    """Both pairs (without and with the cache), each alternating ``repeats`` times."""
    binary = find_nginx()
    if binary is None:
        return {"skipped": "nginx is not installed"}
    out: dict[str, Any] = {"connections": CONNECTIONS, "nginx_workers": 1, "tls": True}
    for name, cached in (("no_cache", False), ("check_cache", True)):
        nginx = Nginx(tmp / f"nginx-{name}", agent_port, cached)
        nginx.start(binary)
        try:
            await nginx.wait_listening()
            assert nginx.proc is not None
            base = f"https://127.0.0.1:{nginx.port}"
            checked, plain = [], []
            for _ in range(p["repeats"]):
                checked.append(await _run(f"{base}/console/page", cookie, p, nginx.proc.pid,
                                          agent_pid))
                plain.append(await _run(f"{base}/open/page", cookie, p, nginx.proc.pid,
                                        agent_pid))
        finally:
            nginx.stop()
        with_auth, without = _best(checked), _best(plain)
        out[name] = {"auth_request": with_auth, "without": without,
                     "ratio": round(with_auth["rps"] / without["rps"], 3)
                     if without["rps"] else None}
    return out
