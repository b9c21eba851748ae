"""The benchmark runs end to end in its smoke mode and reports every section (never speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.needs import unavailable

Smoke = tuple[dict[str, Any], str]

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = {"mode", "parameters", "machine", "auth_check", "sign_in",
            "auth_check_many_sessions", "resources", "id_token", "targets",
            "console_through_nginx", "revalidation", "auth_check_revalidating", "metrics"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Smoke:
    out = tmp_path_factory.mktemp("bench") / "smoke.json"
    done = subprocess.run(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)], cwd=ROOT,
        capture_output=True, text=True, timeout=150, check=False)
    assert 0 == done.returncode, done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


class TestBenchmarkSmoke:
    def test_json_has_every_section(self, smoke: Smoke) -> None:
        """The JSON carries every section the issue asks for."""
        assert SECTIONS == SECTIONS & set(smoke[0])

    def test_auth_check_rows_beside_the_ceiling(self, smoke: Smoke) -> None:
        """Both connection counts are measured for the agent and the bare handler."""
        rows = smoke[0]["auth_check"]
        assert ["c64", "c8"] == sorted(rows)
        for row in rows.values():
            assert {"agent", "ceiling", "ratio", "cpu_ratio"} == set(row)
            assert 0 == row["agent"]["bad_responses"]

    def test_metrics_on_against_off(self, smoke: Smoke) -> None:
        """The agent with [metrics] listen alternates with the one without at both
        connection counts, every answer a 200; its idle RSS and a scrape are measured."""
        m = smoke[0]["metrics"]
        for name in ("c8", "c64"):
            assert {"metrics_on", "metrics_off", "ratio", "cpu_ratio"} == set(m[name])
            for kind in ("metrics_on", "metrics_off"):
                assert 0 < m[name][kind]["requests"]
                assert 0 == m[name][kind]["bad_responses"]
        assert 0 < m["rss_idle_metrics_on_mib"]
        assert 0 < m["scrape"]["samples"] and 0 < m["scrape"]["bytes"]

    def test_console_pairs_through_nginx(self, smoke: Smoke) -> None:
        """Through real nginx, with and without auth_request, without and with the optional
        /auth/check cache: every console request answered 200."""
        nginx = smoke[0]["console_through_nginx"]
        if "skipped" in nginx:
            unavailable(nginx["skipped"])
        for name in ("no_cache", "check_cache"):
            row = nginx[name]
            assert {"auth_request", "without", "ratio"} == set(row)
            for kind in ("auth_request", "without"):
                assert 0 < row[kind]["requests"]
                assert (0, 0) == (row[kind]["bad_responses"], row[kind]["errors"])

    def test_every_sign_in_succeeded(self, smoke: Smoke) -> None:
        """The real flow signed in every session it was asked for."""
        sign_in = smoke[0]["sign_in"]
        assert (0, smoke[0]["parameters"]["sign_ins"]) == (sign_in["failures"],
                                                            sign_in["sign_ins"])

    def test_many_sessions_were_restored(self, smoke: Smoke) -> None:
        """The agent restored every seeded session from the journal before serving."""
        many = smoke[0]["auth_check_many_sessions"]
        assert smoke[0]["parameters"]["sessions"] == many["restored_by_agent"]
        assert 0 == many["c64"]["agent"]["bad_responses"]

    def test_revalidation_ran_beside_auth_check(self, smoke: Smoke) -> None:
        """Sessions were re-validated (CPU per re-validation measured) while /auth/check ran,
        and every /auth/check answer was good."""
        assert smoke[0]["revalidation"]["refreshes"] > 0
        assert smoke[0]["revalidation"]["agent_cpu_ms_per_revalidation"] is not None
        during = smoke[0]["auth_check_revalidating"]
        assert 0 == during["c64"]["agent"]["bad_responses"]

    def test_every_target_is_judged(self, smoke: Smoke) -> None:
        """Each of the issues' targets (the /auth/check ratios also by CPU, the start with
        sessions to restore with and without refresh tokens, metrics on against off at both
        connection counts) has a value and a verdict."""
        targets = smoke[0]["targets"]
        assert 22 == len(targets)
        assert all(t["met"] in (True, False) for t in targets)

    def test_sessions_without_refresh_tokens_are_measured(self, smoke: Smoke) -> None:
        """The memory and start targets are judged on sessions without refresh tokens; the
        sessions holding them are reported beside."""
        res = smoke[0]["resources"]
        assert res["rss_with_sessions_no_refresh_tokens_mib"] > res["rss_idle_mib"]
        assert res["ready_with_sessions_no_refresh_tokens_s"] > 0
        judged = {t["target"]: t["value"] for t in smoke[0]["targets"]}
        assert res["rss_sessions_no_refresh_tokens_delta_mib"] == judged[
            "RSS added by the sessions, without refresh tokens (MiB)"]

    def test_table_printed(self, smoke: Smoke) -> None:
        """The printed table names the machine and the targets."""
        assert "Machine:" in smoke[1] and "| target |" in smoke[1]
