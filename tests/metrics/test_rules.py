"""The alert rules shipped in config/prometheus: valid for Prometheus, and each alert fires on
what it is for (``promtool test rules`` with tests/metrics/alerts.test.yml)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.needs import need

HERE = Path(__file__).resolve().parent
RULES = HERE.parents[1] / "config" / "prometheus" / "sensor-sso-agent.rules.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    need(tool, "no promtool (Debian's prometheus package ships it)")
    assert tool is not None
    return subprocess.run([tool, *args], capture_output=True, text=True,  # noqa: S603
                          timeout=60, check=False, cwd=HERE)


def test_the_rules_file_is_valid() -> None:
    """``promtool check rules`` accepts the shipped file and counts every alert in it."""
    done = promtool("check", "rules", str(RULES))
    assert 0 == done.returncode, done.stdout + done.stderr
    assert "SUCCESS: 6 rules found" in done.stdout


def test_every_alert_fires_on_what_it_is_for() -> None:
    """``promtool test rules``: each alert fires after its ``for:`` on the failure it names
    (re-validation stalled, Entra ID unreachable, refusal spike, state unwritable, task
    failing, agent down), with the summary it is written with, and not on healthy series."""
    done = promtool("test", "rules", "alerts.test.yml")
    assert 0 == done.returncode, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_test() -> None:
    """No alert of the rules file goes without a case in alerts.test.yml."""
    alerts = {line.split(":", 1)[1].strip() for line in RULES.read_text().splitlines()
              if line.strip().startswith("- alert:")}
    tested = {line.split(":", 1)[1].strip() for line in
              (HERE / "alerts.test.yml").read_text().splitlines()
              if line.strip().startswith("alertname:")}
    assert 6 == len(alerts)
    assert alerts == tested
