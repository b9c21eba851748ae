"""One JSON log: the agent's events and every standard-library logger, one line each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import logging, structlog
from agent.logging import configure_logging
configure_logging()
try:
    raise ValueError("Cookie: __Host-sensor_session=SECRETVALUE")
except ValueError:
    logging.getLogger("aiohttp.server").exception("Error handling request from %s", "192.0.2.1")
logging.getLogger("asyncio").error("socket.accept() out of system resource")
structlog.get_logger("agent.audit").info("sso_login_started", source_ip="192.0.2.1")
structlog.get_logger("agent.web").warning("http_request_malformed", status=400)
"""


def run(tmp_path: Path, journal: bool) -> list[str]:
    out = tmp_path / "out.log"
    with out.open("wb") as sink:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("JOURNAL_STREAM", None)
        if journal:
            st = os.fstat(sink.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        subprocess.run([sys.executable, "-c", SCRIPT], stdout=sink,  # noqa: S603
                       stderr=subprocess.STDOUT, env=env, cwd=ROOT, check=True, timeout=60)
    return out.read_text().splitlines()


class TestOneJsonLog:
    def test_standard_library_loggers_are_json_lines(self, tmp_path: Path) -> None:
        """aiohttp's and asyncio's records are one JSON object a line; an exception is its
        type and frames, never its message (which may quote a cookie)."""
        lines = run(tmp_path, journal=False)
        events = [json.loads(line) for line in lines]
        assert ["Error handling request from 192.0.2.1",
                "socket.accept() out of system resource", "sso_login_started",
                "http_request_malformed"] == [e["event"] for e in events]
        assert "ValueError" == events[0]["error_type"]
        assert "aiohttp.server" == events[0]["logger"]
        assert "SECRETVALUE" not in "\n".join(lines)

    def test_journal_priorities(self, tmp_path: Path) -> None:
        """Under journald, audit events are notice (<5>) and other lines their level, so
        journald's per-priority rate limit keeps noise from dropping audit events."""
        lines = run(tmp_path, journal=True)
        assert ["<3>", "<3>", "<5>", "<4>"] == [line[:3] for line in lines]
        assert all(json.loads(line[3:]) for line in lines)
