"""The agent as a real process (`python -m agent serve --config FILE`): kill -9, log scans."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.harness import Stack, agent_config, write_config

ROOT = Path(__file__).resolve().parents[2]


class AgentProcess:
    """Runs the agent for ``stack`` (same port, config and state_dir) in a child process."""

    def __init__(self, stack: Stack, tmp_path: Path, **overrides: dict[str, Any]) -> None:
        self.stack = stack
        data = agent_config(stack.idp, stack.port, tmp_path / "state", **overrides)
        self.config = write_config(tmp_path / "agent.toml", data)
        self.log_dir = tmp_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        out = open(self.log_dir / f"agent-{self.runs}.out", "wb")  # noqa: SIM115 - the child owns it
        err = open(self.log_dir / f"agent-{self.runs}.err", "wb")  # noqa: SIM115
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "agent", "serve", "--config", str(self.config)],
            stdout=out, stderr=err, env=env, cwd=ROOT)
        out.close()
        err.close()

    async def ready(self, timeout: float = 20.0) -> None:
        """Wait until /readyz answers 200 (the port refuses connections until it listens)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession() as http:
            while loop.time() < deadline:
                assert self.proc is not None and self.proc.poll() is None, self.output()[-2000:]
                try:
                    async with http.get(f"{self.stack.url}/readyz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"agent did not get ready: {self.output()[-2000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr, every run."""
        parts = []
        for run in range(1, self.runs + 1):
            for stream in ("out", "err"):
                path = self.log_dir / f"agent-{run}.{stream}"
                if path.exists():
                    parts.append(path.read_text(encoding="utf-8", errors="replace"))
        return "\n".join(parts)
