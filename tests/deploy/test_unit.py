"""The systemd unit: rated 1.5 or lower, verified, and its directives let the agent run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.devidp import DevIdentityProvider
from tests.deploy.support import (
    REPO,
    AgentProcess,
    SignInClient,
    agent_config_for,
    free_port,
    write_config,
)
from tests.needs import unavailable

UNIT = REPO / "systemd" / "sensor-sso-agent.service"
EXE = "/opt/sensor-sso-agent/venv/bin/sensor-sso-agent"
CONFIG = "/etc/sensor-sso-agent/agent.toml"


@pytest.fixture
def analyze() -> str:
    """The path of systemd-analyze (Debian package systemd; .ci/apt-packages.txt lists it)."""
    path = shutil.which("systemd-analyze")
    if path is None:
        unavailable("systemd-analyze is not installed "
                    "(Debian package systemd; .ci/apt-packages.txt lists it)")
    return path


def directives() -> list[tuple[str, str]]:
    pairs = []
    for line in UNIT.read_text().splitlines():
        if line.strip() and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


def values(key: str) -> list[str]:
    return [v for k, v in directives() if k == key]


def test_the_unit_runs_what_the_package_installs() -> None:
    """The unit runs the installed command as its own user, checks the file first, reloads on
    HUP."""
    assert values("Type") == ["notify"]
    assert values("ExecStart") == [f"{EXE} serve --config {CONFIG}"]
    assert values("ExecStartPre") == [f"{EXE} check-config --config {CONFIG}"]
    assert values("ExecReload")[-1] == "/bin/kill -HUP $MAINPID"
    assert values("User") == values("Group") == ["sensor-sso-agent"]
    assert "DynamicUser" not in dict(directives())
    assert values("StateDirectory") == values("ConfigurationDirectory") == ["sensor-sso-agent"]
    # The admin socket's directory (default [server] admin_socket), private to the service.
    from agent.settings import ServerSettings

    assert values("RuntimeDirectory") == [ServerSettings().admin_socket.parent.name]
    assert values("RuntimeDirectoryMode") == ["0700"]
    assert values("Restart") == ["on-failure"]
    watchdog = values("WatchdogSec")[0]
    assert watchdog.endswith("s") and int(watchdog[:-1]) >= 10
    # READY may wait for the agent's grace period when Entra ID is unreachable
    from agent.lifecycle import READY_GRACE, SHUTDOWN_TIMEOUT

    assert int(values("TimeoutStartSec")[0].rstrip("s")) > READY_GRACE
    assert int(values("TimeoutStopSec")[0].rstrip("s")) > SHUTDOWN_TIMEOUT
    assert values("RestrictAddressFamilies") == ["AF_UNIX AF_INET AF_INET6"]


def test_systemd_analyze_security_rates_it_1_5_or_lower(analyze: str) -> None:
    """systemd-analyze security rates the unit's exposure 1.5 or lower."""
    result = subprocess.run(  # noqa: S603
        [analyze, "security", "--offline=yes", str(UNIT)], capture_output=True, text=True,
        timeout=60, check=False)
    match = re.search(r"Overall exposure level for sensor-sso-agent\.service: (\d+\.\d+)",
                      result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 1.5, result.stdout


def test_systemd_analyze_verify_passes(tmp_path: Path, analyze: str) -> None:
    """Verify in a root holding the unit, the system's units and the unit's executables
    (a stand-in for the venv's entry point, which the package builds at install time)."""
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system" / UNIT.name)
    system_units = Path("/lib/systemd/system")
    shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
    (root / "lib").symlink_to("usr/lib")
    exe = root / EXE.lstrip("/")
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    (root / "bin").mkdir()
    shutil.copy(shutil.which("kill") or "/bin/kill", root / "bin/kill")
    # Documentation=man:sensor-sso-agent(1): verify runs man; give it the packaged page.
    man = tmp_path / "man" / "man1"
    man.mkdir(parents=True)
    shutil.copy(REPO / "packaging" / "sensor-sso-agent.1", man)
    env = {**os.environ, "MANPATH": str(man.parent)}
    result = subprocess.run(  # noqa: S603
        [analyze, "verify", f"--man={'yes' if shutil.which('man') else 'no'}",
         f"--root={root}", UNIT.name], capture_output=True, text=True, timeout=60,
        check=False, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr  # no ignored or unknown directives


_MDWE = """
import ctypes, runpy, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN (Linux >= 6.3)
    sys.exit(77)
sys.argv = ["sensor-sso-agent", *sys.argv[1:]]
runpy.run_module("agent", run_name="__main__")
"""


def mdwe_supported() -> bool:
    probe = _MDWE.split("sys.argv = ")[0]
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True,  # noqa: S603
                            timeout=30, check=False)
    return result.returncode == 0


async def test_the_agent_signs_users_in_without_writable_executable_memory(
        tmp_path: Path, idp: DevIdentityProvider) -> None:
    """MemoryDenyWriteExecute=yes: Python, cryptography (cffi), aiohttp and MSAL must not
    need W+X mappings. The kernel's equivalent (prctl PR_SET_MDWE) stands in for systemd."""
    if not mdwe_supported():
        unavailable("the kernel has no PR_SET_MDWE (Linux 6.3 or later)")
    port = free_port()
    config = write_config(tmp_path / "agent.toml",
                          agent_config_for(idp, port, tmp_path / "state"))
    wrapper = tmp_path / "mdwe.py"
    wrapper.write_text(_MDWE)
    agent = AgentProcess(config, port, argv=[sys.executable, str(wrapper), "serve",
                                             "--config", str(config)])
    client = SignInClient(agent.url, idp)
    try:
        await agent.wait_healthy()
        await client.sign_in("admin@contoso.example")
        status, headers, _ = await client.get("/auth/check")
        assert status == 200 and headers["X-Auth-Request-Role"] == "admin"
    finally:
        await client.close()
        agent.kill()
