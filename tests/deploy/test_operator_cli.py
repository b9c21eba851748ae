"""What an operator meets on the command line during a first install and on day two:
refusal events that name what is wrong, check-connectivity and check-config on a wrong
authority URL, a sensor no setting applies to, show-config as the file writes it, and the
files the package ships for the documentation it points to."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.devidp import DevIdentityProvider
from agent.devidp.faults import Fault
from tests.deploy.support import (
    REPO,
    AgentProcess,
    SignInClient,
    agent_config_for,
    free_port,
    write_ca,
    write_config,
)
from tests.harness import CLIENT, PASSWORD, ROLE_GROUPS, TENANT
from tests.needs import need


def agent_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "agent", *map(str, args)], cwd=REPO, env=env, text=True,
        capture_output=True, timeout=120, check=False)


class TestRefusalEvents:
    async def test_refusals_name_the_missing_attributes_and_the_object_id(
            self, idp: DevIdentityProvider, tmp_path: Path) -> None:
        """sso_login_refused names the missing attributes, and the object id of a user
        without a UPN (as the service logs it on stdout)."""
        port = free_port()
        config = write_config(tmp_path / "agent.toml",
                              agent_config_for(idp, port, tmp_path / "state"))
        agent = AgentProcess(config, port)
        try:
            await agent.wait_healthy()
            by_name = {u.username: u for u in idp.users}
            for username in ("nolastname@contoso.example", "noupn@contoso.example"):
                client = SignInClient(agent.url, idp)
                try:
                    status, _, _ = await client.get(await client.authorize(username))
                    assert status == 403
                finally:
                    await client.close()
            await agent.wait_event("sso_login_refused", count=2)
        finally:
            agent.kill()
        refused = [e for e in agent.events() if e.get("event") == "sso_login_refused"]
        no_last, no_upn = refused
        assert no_last["reason"] == "missing_attributes"
        assert no_last["missing"] == ["Last name"]
        assert no_last["oid"] == by_name["nolastname@contoso.example"].oid
        assert no_upn["missing"] == ["User principal name"]
        assert no_upn["upn"] is None
        assert no_upn["oid"] == by_name["noupn@contoso.example"].oid
        assert PASSWORD not in agent.log_path.read_text()


class TestInvalidConfiguration:
    @pytest.mark.parametrize("command", [("check-config",), ("local-user", "list"),
                                         ("sessions", "list")])
    def test_each_command_names_every_problem_of_the_file(
            self, tmp_path: Path, command: tuple[str, ...]) -> None:
        """check-config, local-user and sessions say the same of an invalid file: how many
        problems it has, and each one with its key, value and why; nothing on stdout."""
        config = write_config(tmp_path / "agent.toml", {
            "entra": {"tenant_id": "not-a-guid", "client_id": CLIENT,
                      "redirect_uri": "https://sensor-01.example/auth/sso/callback"},
            "roles": {"admin": list(ROLE_GROUPS["admin"])},
            "server": {"listen": "nowhere"}})
        result = agent_cli(*command, "--config", config)
        assert 1 == result.returncode, result.stdout + result.stderr
        assert "" == result.stdout
        assert [f"{config}: configuration is invalid (2 problems):",
                "  server.listen = 'nowhere': must be host:port, e.g. 127.0.0.1:8080",
                "  entra.tenant_id = 'not-a-guid': must be a GUID (the Directory (tenant) ID "
                "in Entra ID)"] == [line for line in result.stderr.splitlines()
                                    if not line.startswith("note: ")]  # as root: as whom


class TestWrongAuthority:
    def test_check_config_refuses_an_authority_host_with_a_path(self, tmp_path: Path) -> None:
        """The tenant pasted into authority_host is a configuration error, not a 404 later."""
        config = tmp_path / "agent.toml"
        wrong = EXAMPLE.replace(
            'authority_host = "https://login.microsoftonline.com"',
            'authority_host = "https://login.microsoftonline.com/'
            '72f988bf-86f1-41af-91ab-2d7cd011db47"')
        assert wrong != EXAMPLE
        config.write_text(wrong)
        result = agent_cli("check-config", "--config", config)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "entra.authority_host" in result.stderr
        assert "scheme and host only" in result.stderr

    async def test_a_wrong_discovery_url_is_shown_with_a_fix_that_fits(
            self, idp: DevIdentityProvider, tmp_path: Path) -> None:
        """When dns, tcp and tls pass but discovery answers 404, the line shows the URL it
        tried and the fix names the settings that build it (not failed checks above)."""
        config = write_config(tmp_path / "agent.toml",
                              agent_config_for(idp, free_port(), tmp_path / "state"))
        # what a web server answers for a path it does not know
        idp.faults["discovery"] = Fault(status=404, body=b"<html>Not Found</html>",
                                        content_type="text/html")
        result = await asyncio.to_thread(agent_cli, "check-connectivity", "--config", config)
        assert result.returncode == 1
        lines = result.stdout.splitlines()
        failed = [ln for ln in lines if ln.startswith("FAIL")]
        assert len(failed) == 1 and failed[0].split()[1] == "discovery", result.stdout
        url = f"{idp.authority}/v2.0/.well-known/openid-configuration"
        assert url in failed[0]
        fix = lines[lines.index(failed[0]) + 1]
        assert "fix:" in fix and "failed dns/tcp/tls" not in fix
        assert "entra.tenant_id" in fix and "entra.authority_host" in fix


# The example with the ids an operator fills in (check-config and serve refuse its placeholders)
EXAMPLE = (REPO / "config" / "agent.example.toml").read_text().replace(
    "00000000-0000-0000-0000-", "6e2f3c4d-1a2b-4c5d-8e9f-").replace(
    "11111111-1111-1111-1111-", "6e2f3c4d-1a2b-4c5d-8e9f-").replace(
    "22222222-2222-2222-2222-", "7e2f3c4d-1a2b-4c5d-8e9f-").replace(
    "33333333-3333-3333-3333-", "8e2f3c4d-1a2b-4c5d-8e9f-")

FLEET = """
[sensor]
name = "s-09"
site = "bremen"
zone = "line-1"
[entra]
tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47"
redirect_uri = "https://s-09.example/auth/sso/callback"
[[setting]]
name = "Hamburg"
sites = ["hamburg"]
[setting.entra]
client_id = "0b5b0b4e-3c8b-4bfb-8f0e-6c0f1c2d3e4f"
[setting.roles]
admin = ["aaaaaaaa-0000-4000-8000-000000000001"]
[[setting]]
name = "Kiel packaging"
sites = ["kiel"]
zones = ["packaging"]
sensors = ["s-01", "s-02"]
[setting.entra]
client_id = "0b5b0b4e-3c8b-4bfb-8f0e-6c0f1c2d3e4f"
[setting.roles]
admin = ["aaaaaaaa-0000-4000-8000-000000000001"]
"""


class TestSmallerPoints:
    def test_check_config_warns_when_no_setting_applies(self, tmp_path: Path) -> None:
        """A sensor whose site no [[setting]] names: a warning listing the sites, zones and
        sensors the file knows (still exit 0: the sign-in page says SSO is off)."""
        config = tmp_path / "agent.toml"
        config.write_text(FLEET)
        result = agent_cli("check-config", "--config", config)
        assert result.returncode == 0, result.stderr
        assert "warning: no [[setting]] applies to this sensor" in result.stderr
        assert "sites named in [[setting]] blocks: 'hamburg', 'kiel'" in result.stderr
        assert "zones named in [[setting]] blocks: 'packaging'" in result.stderr
        assert "sensors named in [[setting]] blocks: 's-01', 's-02'" in result.stderr

    def test_show_config_writes_values_as_the_file_does(self, tmp_path: Path) -> None:
        """Durations as "30m", and listen = "host:port" instead of listen_host/listen_port."""
        config = tmp_path / "agent.toml"
        config.write_text(EXAMPLE)
        result = agent_cli("show-config", "--config", config)
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert "listen = '127.0.0.1:8080'" in lines
        assert not any(ln.startswith(("listen_host", "listen_port")) for ln in lines)
        assert "idle_timeout = '30m'" in lines
        assert "absolute_timeout = '12h'" in lines
        assert "timeout = '10s'" in lines
        assert not any(ln.endswith(("1800.0", "43200.0")) for ln in lines), result.stdout

    def test_show_config_shows_local_and_no_none_sensor(self, tmp_path: Path) -> None:
        """[local] is shown like the other sections; a single-setting file without [sensor]
        does not print ``name=None``."""
        config = tmp_path / "agent.toml"
        config.write_text(EXAMPLE)
        result = agent_cli("show-config", "--config", config)
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert "[local]" in lines
        assert "accounts_file = '/etc/sensor-sso-agent/local-accounts'" in lines
        assert "sign_in = 'when-sso-unavailable'" in lines
        assert "None" not in result.stdout
        assert "sensor: (no [sensor] table: not needed without [[setting]] blocks)" in lines

    def test_the_man_page_lists_every_command(self) -> None:
        """Every command of the command line has its entry in the man page."""
        import argparse

        from agent.__main__ import build_parser

        man = (REPO / "packaging" / "sensor-sso-agent.1").read_text()
        commands = [name for action in build_parser()._actions  # argparse keeps them there
                    if isinstance(action, argparse._SubParsersAction)
                    for name in action.choices]
        assert "show-config" in commands
        for command in commands:
            assert f".B {command}\n" in man, command

    def test_what_the_example_and_the_docs_point_to_is_shipped(self) -> None:
        """The example's pointer to the multi-site example and fleet.md names files the
        package installs; docs/fleet.md carries no editing note."""
        build = (REPO / "packaging" / "build-deb.sh").read_text()
        assert "agent.multi-site.example.toml\" \"$share/agent.multi-site.example.toml\"" \
            in build
        assert 'for page in "$src"/docs/*.md' in build
        assert "/usr/share/sensor-sso-agent/agent.multi-site.example.toml" in EXAMPLE
        assert "/usr/share/doc/sensor-sso-agent/fleet.md.gz" in EXAMPLE
        fleet = (REPO / "docs" / "fleet.md").read_text()
        assert "for the lead" not in fleet and "to merge" not in fleet

    def test_the_unit_states_the_rating_the_docs_give(self) -> None:
        """The unit's hardening comment and docs/install.md give the same rating."""
        unit = (REPO / "systemd" / "sensor-sso-agent.service").read_text()
        install = (REPO / "docs" / "install.md").read_text()
        assert "1.5 or lower" not in unit
        assert "rates this 1.1" in unit and "rates it 1.1" in install


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory other users may enter (pytest's own tmp_path is 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix="wt-check-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


class TestCheckConfigAsTheServiceUser:
    """check-config as root reads the files as the service's user (here ``nobody``, as
    ``--user`` names it; on a sensor the default, sensor-sso-agent)."""

    @pytest.fixture(autouse=True)
    def as_root(self) -> None:
        """Locally skipped without root; in CI a failure (tests/needs.py), never a skip."""
        need(os.geteuid() == 0, "dropping to another user needs root")

    def config(self, directory: Path, ca_mode: int, config_mode: int = 0o644) -> Path:
        ca = directory / "corp-ca.pem"
        ca.write_text(write_ca(directory).read_text())
        ca.chmod(ca_mode)
        path = write_config(directory / "agent.toml", {
            "entra": {"tenant_id": TENANT, "client_id": CLIENT, "ca_bundle": str(ca),
                      "redirect_uri": "https://sensor-01.plant.example/auth/sso/callback"},
            "roles": {k: list(v) for k, v in ROLE_GROUPS.items()},
        })
        path.chmod(config_mode)
        return path

    def test_a_root_only_ca_bundle_fails_and_names_the_user(self, shared_dir: Path) -> None:
        """A 0600 root-owned CA bundle: invalid, 'not readable by user nobody', and no
        misleading 'is not a PEM file' after it."""
        result = agent_cli("check-config", "--user", "nobody", "--config",
                           self.config(shared_dir, 0o600))
        assert result.returncode == 1, result.stdout + result.stderr
        problems = [ln for ln in result.stderr.splitlines() if ln.startswith("  ")]
        assert len(problems) == 1, result.stderr
        assert "entra.ca_bundle" in problems[0]
        assert "not readable by user nobody (Permission denied)" in problems[0]
        assert "PEM" not in result.stderr

    def test_a_root_only_config_file_fails_and_names_the_user(self, shared_dir: Path) -> None:
        """A 0600 root-owned agent.toml cannot be read by the service: say so."""
        result = agent_cli("check-config", "--user", "nobody", "--config",
                           self.config(shared_dir, 0o644, config_mode=0o600))
        assert result.returncode == 1
        assert "not readable by user nobody (Permission denied)" in result.stderr

    def test_readable_files_pass_and_say_as_whom(self, shared_dir: Path) -> None:
        """What the user can read passes, and the output says whose view it checked."""
        result = agent_cli("check-config", "--user", "nobody", "--config",
                           self.config(shared_dir, 0o644))
        assert result.returncode == 0, result.stderr
        assert "configuration is valid" in result.stdout
        assert "note: files read as user nobody" in result.stdout
