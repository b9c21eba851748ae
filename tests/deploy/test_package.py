"""The .deb: built from a clean checkout, lintian-clean, and installable offline."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import agent
from agent.devidp import DevIdentityProvider
from tests.deploy.support import (
    REPO,
    AgentProcess,
    SignInClient,
    agent_config_for,
    free_port,
    write_config,
)
from tests.needs import need

NAME = "sensor-sso-agent"
MINOR = f"{sys.version_info[0]}.{sys.version_info[1]}"


@pytest.fixture(autouse=True)
def _dpkg_deb_installed() -> None:
    need(shutil.which("dpkg-deb"), "needs dpkg-deb (Debian package dpkg)")


def run(*argv: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    done: subprocess.CompletedProcess[str] = subprocess.run(  # noqa: S603
        [str(a) for a in argv], text=True, capture_output=True, timeout=600, check=False,
        **kwargs)  # type: ignore[call-overload]  # kwargs: whatever the caller passes on
    return done


def arch() -> str:
    return run("dpkg", "--print-architecture").stdout.strip()


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build from a clean clone of the committed tree, as a release build would."""
    work = tmp_path_factory.mktemp("deb")
    if (REPO / ".git").exists():
        clone = run("git", "clone", "--quiet", "--no-hardlinks", REPO, work / "src")
        assert clone.returncode == 0, clone.stderr
    else:  # a source tree without history (an unpacked release archive)
        shutil.copytree(REPO, work / "src", ignore=shutil.ignore_patterns(
            "dist", "build", ".venv", "node_modules", "__pycache__", "*.egg-info"))
    env = {**os.environ, "PYTHON": sys.executable}
    built = run(work / "src" / "packaging" / "build-deb.sh", work / "dist", env=env)
    assert built.returncode == 0, built.stdout + built.stderr
    path = Path(built.stdout.strip().splitlines()[-1])
    assert path.name == f"{NAME}_{agent.__version__}_{arch()}.deb"
    assert path.is_file()
    return path


@pytest.fixture(scope="module")
def unpacked(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    result = run("dpkg-deb", "-x", deb, root)
    assert result.returncode == 0, result.stderr
    return root


def test_control_fields(deb: Path) -> None:
    """The .deb's control fields: name, version, this architecture, python3 and adduser."""
    fields = run("dpkg-deb", "-f", deb, "Package", "Version", "Architecture", "Depends").stdout
    assert f"Package: {NAME}" in fields
    assert f"Version: {agent.__version__}" in fields
    # compiled wheels (cryptography, aiohttp, ...) tie the package to this architecture
    assert f"Architecture: {arch()}" in fields
    assert f"python3 (>= {MINOR})" in fields and "adduser" in fields


def test_contents(deb: Path, unpacked: Path) -> None:
    """The .deb holds root-owned files, the bundled wheels and the unit; no prebuilt venv."""
    listing = run("dpkg-deb", "-c", deb).stdout.splitlines()
    assert all(" root/root " in line for line in listing), "files must belong to root"
    assert not any(" ./opt/" in line for line in listing), "the venv is built by postinst"
    wheels = {p.name.split("-")[0].lower() for p in
              (unpacked / "usr/lib" / NAME / "wheels").glob("*.whl")}
    assert {"sensor_sso_agent", "aiohttp", "cryptography", "msal", "pyjwt", "structlog",
            "jinja2", "requests", "prometheus_client", "pip"} <= wheels
    unit = unpacked / "lib/systemd/system" / f"{NAME}.service"
    assert unit.read_text() == (REPO / "systemd" / f"{NAME}.service").read_text()
    assert (unpacked / "usr/share" / NAME / "agent.example.toml").is_file()
    # what the example and the man page point to
    assert (unpacked / "usr/share" / NAME / "agent.multi-site.example.toml").is_file()
    docs = {p.name for p in (unpacked / "usr/share/doc" / NAME).iterdir()}
    assert {"install.md.gz", "fleet.md.gz", "security.md.gz", "siem.md.gz",
            "monitoring.md.gz"} <= docs
    rules = unpacked / "usr/share" / NAME / "prometheus" / "sensor-sso-agent.rules.yml"
    assert rules.read_text() == (REPO / "config/prometheus/sensor-sso-agent.rules.yml").read_text()
    assert {p.name for p in (unpacked / "usr/share" / NAME / "nginx").iterdir()} == \
        {"sensor-sso.conf", "sensor-sso-auth.conf", "sensor-sso-upstream.conf",
         "sensor-sso-check-cache.conf", "sensor-sso-check-cache-zone.conf"}
    # the optional rsyslog rule that forwards the audit events to a SIEM (docs/siem.md)
    assert {p.name for p in (unpacked / "usr/share" / NAME / "rsyslog").iterdir()} == \
        {p.name for p in (REPO / "config" / "rsyslog").glob("*.conf")} == \
        {"sensor-sso-agent-audit.conf", "sensor-sso-agent-collector.conf",
         "sensor-sso-agent-journal.conf"}
    assert os.readlink(unpacked / "usr/bin" / NAME) == f"/opt/{NAME}/venv/bin/{NAME}"


def test_maintainer_scripts(deb: Path, tmp_path: Path) -> None:
    """postinst, prerm and postrm are executable valid sh and keep an existing configuration."""
    assert run("dpkg-deb", "-e", deb, tmp_path / "control").returncode == 0
    for script in ("postinst", "prerm", "postrm"):
        path = tmp_path / "control" / script
        assert path.stat().st_mode & 0o111, f"{script} is not executable"
        assert run("sh", "-n", path).returncode == 0, script
    postinst = (tmp_path / "control" / "postinst").read_text()
    # the example config only when there is none, readable by root and the service group
    assert 'if [ ! -e "/etc/$NAME/agent.toml" ]' in postinst
    assert "install -m 0640 -o root -g \"$NAME\"" in postinst
    # the checks it suggests run as the service's user, as the service reads the files
    assert "'runuser -u $NAME -- $NAME check-config'" in postinst
    # systemctl only where systemd runs: a chroot or container install must not fail
    assert "[ -d /run/systemd/system ]" in postinst


def test_lintian_reports_no_errors(deb: Path) -> None:
    """lintian finds no error in the .deb."""
    need(shutil.which("lintian"), "lintian is not installed (.ci/apt-packages.txt lists it)")
    result = run("lintian", "--fail-on", "error", deb)
    errors = [ln for ln in result.stdout.splitlines() if ln.startswith("E:")]
    assert errors == [] and result.returncode == 0, result.stdout + result.stderr


def offline(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """Run with networking blocked: a network namespace with no interfaces when the kernel
    lets us make one, else proxies that lead nowhere; pip is --no-index either way."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIP_") and "proxy" not in k.lower()}
    dead = "http://127.0.0.1:9"
    env.update(https_proxy=dead, http_proxy=dead, HTTPS_PROXY=dead, HTTP_PROXY=dead)
    if shutil.which("unshare") and run("unshare", "-rn", "true").returncode == 0:
        return ["unshare", "-rn", *argv], env
    return argv, env


def filled_in(example: str) -> str:
    """The example with the operator's own tenant, application and group ids."""
    for placeholder in ("00000000-0000-0000-0000-", "11111111-1111-1111-1111-",
                        "22222222-2222-2222-2222-", "33333333-3333-3333-3333-"):
        assert placeholder in example
        example = example.replace(placeholder, "6e2f3c4d-1a2b-4c5d-8e9f-")
    return example


def target_python() -> str:
    """The sensor's interpreter (Debian's /usr/bin/python3) when it is this minor version."""
    system = Path("/usr/bin/python3")
    if system.exists():
        version = run(system, "-c", "import sys; print(*sys.version_info[:2], sep='.')")
        if version.stdout.strip() == MINOR:
            return str(system)
    return sys.executable


def test_offline_install_into_a_temporary_prefix(unpacked: Path, tmp_path: Path) -> None:
    """install-venv builds the agent's venv offline from the bundled wheels; it runs."""
    prefix = tmp_path / "opt" / NAME
    install = str(unpacked / "usr/lib" / NAME / "install-venv")
    argv, env = offline([install, str(prefix), target_python()])
    result = run(*argv, env=env)
    assert result.returncode == 0, result.stdout + result.stderr

    exe = prefix / "venv" / "bin" / NAME
    version = run(exe, "--version")
    assert version.stdout.strip() == f"{NAME} {agent.__version__}", version.stderr
    example = unpacked / "usr/share" / NAME / "agent.example.toml"
    checked = run(exe, "check-config", "--config", example)  # as postinst installs it
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "entra.tenant_id" in checked.stderr and "placeholder" in checked.stderr
    filled = tmp_path / "agent.toml"
    filled.write_text(filled_in(example.read_text()))
    checked = run(exe, "check-config", "--config", filled)
    assert checked.returncode == 0, checked.stderr
    assert "configuration is valid" in checked.stdout
    imports = run(prefix / "venv/bin/python", "-c",
                  "import agent.web.app, agent.connectivity, agent.commands, "
                  "agent.metrics.exposition")  # [metrics] listen: prometheus_client offline
    assert imports.returncode == 0, imports.stderr

    # an upgrade builds a second venv and switches to it; pruning keeps only the one in use
    first = os.readlink(prefix / "venv")
    again = run(*offline([install, str(prefix), target_python()])[0], env=env)
    assert again.returncode == 0, again.stderr
    assert os.readlink(prefix / "venv") != first
    assert run(install, "--prune", prefix).returncode == 0
    assert [p.name for p in prefix.glob("venv-*")] == [os.readlink(prefix / "venv")]
    assert re.fullmatch(r"venv-\d{14}-\d+", os.readlink(prefix / "venv"))
    assert run(exe, "--version").returncode == 0


async def test_upgrades_under_a_running_agent(unpacked: Path, tmp_path: Path,
                                              idp: DevIdentityProvider) -> None:
    """No systemd: install, start the agent from PREFIX/venv, then install the package twice
    more, each time with postinst's prune. The venv the running agent uses is kept, so it
    keeps answering (its sign-in page, its session, a SIGHUP reload); the unused middle venv
    goes, and once the agent has stopped the next prune removes its venv too."""
    prefix = tmp_path / "opt" / NAME
    install = str(unpacked / "usr/lib" / NAME / "install-venv")

    def upgrade() -> str:
        argv, env = offline([install, str(prefix), target_python()])
        built = run(*argv, env=env)
        assert built.returncode == 0, built.stdout + built.stderr
        pruned = run(install, "--prune", prefix)  # as postinst does, after its try-restart
        assert pruned.returncode == 0, pruned.stderr
        return os.readlink(prefix / "venv")

    def venvs() -> set[str]:
        return {p.name for p in prefix.glob("venv-*")}

    first = upgrade()
    port = free_port()
    config = write_config(tmp_path / "agent.toml",
                          agent_config_for(idp, port, tmp_path / "state"))
    agent = AgentProcess(config, port, env={"PYTHONPATH": ""},  # the venv's agent, not ours
                         argv=[str(prefix / "venv/bin" / NAME), "serve", "--config", str(config)])
    client = SignInClient(agent.url, idp)
    try:
        await agent.wait_healthy()
        await client.sign_in("admin@contoso.example")
        second = upgrade()
        third = upgrade()
        assert {first, third} == venvs() and second not in venvs()
        status, _, body = await client.get("/login")
        assert status == 200 and "SSO Sign-in" in body
        assert 200 == (await client.get("/auth/check"))[0]
        agent.proc.send_signal(signal.SIGHUP)
        await agent.wait_event("config_reloaded")
        assert 200 == (await client.get("/login"))[0]
        assert 200 == (await client.get("/auth/check"))[0]
    finally:
        await client.close()
        agent.proc.terminate()
        agent.proc.wait(timeout=15)
    assert run(install, "--prune", prefix).returncode == 0
    assert {third} == venvs()


def test_removal_warns_while_nginx_still_includes_the_snippets(deb: Path,
                                                                tmp_path: Path) -> None:
    """prerm on removal names nginx's leftover wiring (console pages would answer 503);
    copied snippet files alone, or an upgrade, say nothing."""
    assert run("dpkg-deb", "-e", deb, tmp_path / "control").returncode == 0
    nginx = tmp_path / "etc" / "nginx"
    (nginx / "snippets").mkdir(parents=True)
    for conf in (REPO / "config" / "nginx").glob("*.conf"):
        shutil.copy(conf, nginx / "snippets" / conf.name)  # their comments show includes
    prerm = (tmp_path / "control" / "prerm").read_text().replace("/etc/nginx", str(nginx))
    script = tmp_path / "prerm"
    script.write_text(prerm)
    assert run("sh", script, "remove").stderr == ""
    (nginx / "sites-enabled").mkdir()
    (nginx / "sites-enabled" / "console").write_text(
        "server {\n    include snippets/sensor-sso.conf;\n    location / {\n"
        "        auth_request /auth/check;\n        include snippets/sensor-sso-auth.conf;\n"
        "    }\n}\n")
    removed = run("sh", script, "remove")
    assert removed.returncode == 0
    assert "nginx still includes the sign-in snippets" in removed.stderr
    assert "Sign-in service unavailable" in removed.stderr
    assert run("sh", script, "upgrade", "0.1.0").stderr == ""


def test_the_removal_warning_names_the_copied_files(tmp_path: Path) -> None:
    """The warning names each copy docs/install.md made in conf.d/ and snippets/ (and only
    those present), so that removing the wiring leaves nothing of the agent in nginx."""
    nginx = tmp_path / "etc" / "nginx"
    (nginx / "snippets").mkdir(parents=True)
    (nginx / "conf.d").mkdir()
    (nginx / "sites-enabled").mkdir()
    shutil.copy(REPO / "config" / "nginx" / "sensor-sso-upstream.conf", nginx / "conf.d")
    for name in ("sensor-sso.conf", "sensor-sso-auth.conf"):
        shutil.copy(REPO / "config" / "nginx" / name, nginx / "snippets")
    (nginx / "sites-enabled" / "console").write_text(
        "server {\n    include snippets/sensor-sso.conf;\n}\n")
    script = tmp_path / "prerm"
    script.write_text((REPO / "packaging" / "debian" / "prerm").read_text().replace(
        "/etc/nginx", str(nginx)))
    removed = run("sh", script, "remove")
    assert removed.returncode == 0
    for copy in (nginx / "conf.d" / "sensor-sso-upstream.conf",
                 nginx / "snippets" / "sensor-sso.conf",
                 nginx / "snippets" / "sensor-sso-auth.conf"):
        assert f" {copy}" in removed.stderr, removed.stderr
    assert "check-cache" not in removed.stderr  # not copied, not named


def test_the_docs_say_how_to_build_the_upgrade() -> None:
    """docs/install.md says where the package's version comes from and that an upgrade needs
    a higher one, built with build-deb.sh."""
    install = (REPO / "docs" / "install.md").read_text()
    upgrade = install[install.index("### Upgrade and removal"):]
    assert "packaging/build-deb.sh" in upgrade and "__version__" in upgrade
    assert "__version__ = " in (REPO / "agent" / "__init__.py").read_text()


@pytest.fixture(scope="module")
def installed(unpacked: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package's virtual environment, built offline as postinst builds it."""
    prefix = tmp_path_factory.mktemp("opt") / NAME
    argv, env = offline([str(unpacked / "usr/lib" / NAME / "install-venv"), str(prefix),
                         target_python()])
    result = run(*argv, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return prefix / "venv" / "bin" / NAME


def configured_as_the_docs_say(example: str, idp: Any, agent_port: int, public: str,
                               state_dir: Path) -> str:
    """docs/install.md step 5 on the packaged example: tenant, client, redirect URI, the
    groups of each role and the CA bundle; authority and Graph of the local provider that
    stands in for Entra ID; the listen port and state directory of this test."""
    from tests.harness import CLIENT, ROLE_GROUPS, TENANT

    edits = {
        'listen = "127.0.0.1:8080"': f'listen = "127.0.0.1:{agent_port}"',
        'tenant_id = "00000000-0000-0000-0000-000000000000"': f'tenant_id = "{TENANT}"',
        'client_id = "00000000-0000-0000-0000-000000000000"': f'client_id = "{CLIENT}"',
        'redirect_uri = "https://sensor-01.plant.example/auth/sso/callback"':
            f'redirect_uri = "{public}/auth/sso/callback"',
        'authority_host = "https://login.microsoftonline.com"':
            f'authority_host = "{idp.authority_host}"',
        'graph_url = "https://graph.microsoft.com"': f'graph_url = "{idp.graph_url}"',
        'admin = ["11111111-1111-1111-1111-111111111111"]':
            f"admin = {json.dumps(ROLE_GROUPS['admin'])}",
        'security_analyst = ["22222222-2222-2222-2222-222222222222"]':
            f"security_analyst = {json.dumps(ROLE_GROUPS['security_analyst'])}",
        'read_only = ["33333333-3333-3333-3333-333333333333"]':
            f"read_only = {json.dumps(ROLE_GROUPS['read_only'])}",
        'state_dir = "/var/lib/sensor-sso-agent"': f'state_dir = "{state_dir}"',
    }
    for old, new in edits.items():
        assert old in example, old
        example = example.replace(old, new)
    lines = example.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith("# ca_bundle = "))
    lines[at] = f'ca_bundle = "{idp.ca_file}"'
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(600)  # may build the package and its venv first (module fixtures)
async def test_a_fresh_install_signs_a_user_in_through_nginx(
        unpacked: Path, installed: Path, tmp_path: Path, idp: Any) -> None:
    """From the package alone, as docs/install.md goes: the example filled in (step 5),
    check-config (6), the installed agent serving as the unit runs it (7), nginx with the
    packaged snippets and the docs' server block (8), then a deep link opened without a
    session ends signed in on that very page, the console told who the user is (9)."""
    from tests.deploy.support import AgentProcess, SignInClient, free_port
    from tests.deploy.test_nginx import NGINX, SITE, start_console, wait_listening

    need(NGINX, "nginx is not installed (Debian package nginx-light; .ci/run installs it)")
    share = unpacked / "usr/share" / NAME
    port, agent_port = free_port(), free_port()
    public = f"http://127.0.0.1:{port}"
    idp.redirect_uris.append(f"{public}/auth/sso/callback")
    config = tmp_path / "agent.toml"
    config.write_text(configured_as_the_docs_say(
        (share / "agent.example.toml").read_text(), idp, agent_port, public,
        tmp_path / "state"))
    checked = await asyncio.to_thread(run, installed, "check-config", "--config", config)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    conf_dir = tmp_path / "nginx"
    (conf_dir / "conf.d").mkdir(parents=True)
    (conf_dir / "snippets").mkdir()
    upstream = (share / "nginx" / "sensor-sso-upstream.conf").read_text()
    (conf_dir / "conf.d" / "sensor-sso-upstream.conf").write_text(
        upstream.replace("127.0.0.1:8080", f"127.0.0.1:{agent_port}"))  # = server.listen
    for name in ("sensor-sso.conf", "sensor-sso-auth.conf"):
        shutil.copy(share / "nginx" / name, conf_dir / "snippets" / name)
    seen: list[dict[str, str]] = []
    console, console_port = await start_console(seen)
    (conf_dir / "nginx.conf").write_text(SITE.format(tmp=conf_dir, port=port,
                                                     console_port=console_port))
    agent = AgentProcess(config, agent_port, argv=[str(installed), "serve", "--config",
                                                   str(config)])
    assert NGINX is not None
    nginx = await asyncio.create_subprocess_exec(
        NGINX, "-p", str(conf_dir), "-c", str(conf_dir / "nginx.conf"), "-e",
        str(conf_dir / "error.log"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = SignInClient(public, idp)
    try:
        await agent.wait_healthy()
        await wait_listening(port, nginx, conf_dir)
        deep = "/alerts?from=2026-01-01&to=2026-02-01"
        status, headers, _ = await client.get(deep)
        assert status == 302
        status, _, page = await client.get(headers["Location"])
        assert status == 200 and "SSO Sign-in" in page
        next_path = parse_qs(urlsplit(headers["Location"]).query)["next"][0]
        assert next_path == deep
        await client.sign_in("analyst@contoso.example", next_path=next_path)
        status, _, body = await client.get(deep)
        assert status == 200, body
        assert seen[-1]["path"] == deep
        assert seen[-1]["X-Auth-Request-User"] == "analyst@contoso.example"
        assert seen[-1]["X-Auth-Request-Role"] == "security_analyst"
        assert "sso_login_succeeded" in agent.event_names()
    finally:
        await client.close()
        if nginx.returncode is None:
            nginx.terminate()
            await nginx.wait()
        agent.kill()
        await console.cleanup()
