"""``check-nginx`` against real nginx with the shipped snippets: each wiring mistake of issue 24
named statically (nginx -T, file:line and the line to add), the open console caught live."""

from __future__ import annotations

import asyncio
import contextlib
import io
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from agent.__main__ import main
from agent.devidp import DevIdentityProvider
from agent.settings import settings_from_mapping
from agent.web.app import create_app
from agent.wiring.cli import run_check_nginx
from agent.wiring.static import PUBLIC_MARKER
from tests.deploy.support import REPO, agent_config_for, free_port
from tests.deploy.test_nginx import (
    NGINX,
    install_shipped_snippets,
    start_console,
    wait_agent_ready,
    wait_listening,
)
from tests.needs import need

MAIN = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include conf.d/*.conf;
    upstream console {{ server 127.0.0.1:{console_port}; }}
    include sites/console.conf;
}}
"""

CORRECT = """server {
    listen 127.0.0.1:PORT;
    include snippets/sensor-sso.conf;
    location / {
        auth_request /auth/check;
        include snippets/sensor-sso-auth.conf;
        proxy_pass http://console;
    }
    location /admin/ {
        auth_request /auth/check-admin;
        include snippets/sensor-sso-auth.conf;
        proxy_pass http://console;
    }
    location = /health {  # sensor-sso-agent: public (the load balancer's probe)
        proxy_set_header X-Auth-Request-User "";
        proxy_set_header X-Auth-Request-Role "";
        proxy_set_header X-Auth-Request-Name "";
        proxy_set_header X-Auth-Request-Method "";
        proxy_pass http://console;
    }
}
"""

NO_SERVER_SNIPPET = CORRECT.replace("    include snippets/sensor-sso.conf;\n", "")
NO_AUTH_SNIPPET = CORRECT.replace("""        auth_request /auth/check;
        include snippets/sensor-sso-auth.conf;""", "        auth_request /auth/check;")
NO_AUTH_REQUEST = CORRECT.replace("""        auth_request /auth/check;
        include snippets/sensor-sso-auth.conf;""", "        include snippets/sensor-sso-auth.conf;")
OPEN = CORRECT.replace("""        auth_request /auth/check;
        include snippets/sensor-sso-auth.conf;
""", "")


@pytest.fixture(autouse=True)
def _nginx_installed() -> None:
    need(NGINX, "nginx is not installed (Debian package nginx-light; .ci/run installs it)")


def lay_out(conf_dir: Path, site: str, port: int = 9, agent_port: int = 8080,
            console_port: int = 9) -> Path:
    """The Debian layout: nginx.conf including conf.d/*.conf and the console's site file."""
    install_shipped_snippets(conf_dir, agent_port)
    (conf_dir / "sites").mkdir()
    (conf_dir / "sites" / "console.conf").write_text(site.replace("PORT", str(port)))
    conf = conf_dir / "nginx.conf"
    conf.write_text(MAIN.format(tmp=conf_dir, console_port=console_port))
    return conf


def check(conf_dir: Path, conf: Path, url: str | None = None) -> tuple[int, str]:
    out = io.StringIO()
    status = run_check_nginx(None, url, ["-p", str(conf_dir), "-c", str(conf)], out=out)
    return status, out.getvalue()


def fails(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("FAIL")]


def site_line(conf_dir: Path, text: str) -> str:
    """``file:line`` of the first line of the site file holding ``text``."""
    path = conf_dir / "sites" / "console.conf"
    number = next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)
    return f"{path}:{number}"


class TestStatic:
    def test_the_shipped_wiring_passes(self, tmp_path: Path) -> None:
        """The wiring of docs/install.md passes, and the marked public location is listed as
        public."""
        conf = lay_out(tmp_path, CORRECT)
        status, output = check(tmp_path, conf)
        assert 0 == status, output
        assert [] == fails(output)
        assert f"NOTE location  {site_line(tmp_path, 'location = /health')}: location = " \
               "/health -> http://console: marked public" in output
        assert output.count("OK   location") == 2

    def test_the_server_without_sensor_sso_conf_is_named(self, tmp_path: Path) -> None:
        """Without ``include snippets/sensor-sso.conf;`` (nginx -t passes, every page is a
        bare 500) the server's line is named with the include to add."""
        conf = lay_out(tmp_path, NO_SERVER_SNIPPET)
        status, output = check(tmp_path, conf)
        assert 1 == status
        problems = fails(output)
        assert 1 == len(problems), output
        assert problems[0].startswith(f"FAIL server    {site_line(tmp_path, 'server {')}: ")
        assert "anyone gets in" in problems[0] and "@sensor_sso_unavailable" in problems[0]
        assert "fix:      add in this server { }: include snippets/sensor-sso.conf;" in output

    def test_a_location_without_the_auth_snippet_is_named(self, tmp_path: Path) -> None:
        """``auth_request`` without sensor-sso-auth.conf: no identity headers, forged ones pass,
        a bare 401; the location's line and the include are named."""
        conf = lay_out(tmp_path, NO_AUTH_SNIPPET)
        status, output = check(tmp_path, conf)
        assert 1 == status
        problems = fails(output)
        assert 1 == len(problems), output
        assert problems[0].startswith(
            f"FAIL location  {site_line(tmp_path, 'location / {')}: location / -> "
            "http://console has auth_request /auth/check but not sensor-sso-auth.conf")
        assert "bare 401" in problems[0]
        assert "fix:      add in this location, after the auth_request line: " \
               "include snippets/sensor-sso-auth.conf;" in output

    def test_a_location_without_auth_request_is_named(self, tmp_path: Path) -> None:
        """The snippet without ``auth_request``: the console is open to anyone there."""
        conf = lay_out(tmp_path, NO_AUTH_REQUEST)
        status, output = check(tmp_path, conf)
        assert 1 == status
        problems = fails(output)
        assert [f"FAIL location  {site_line(tmp_path, 'location / {')}: location / -> "
                "http://console has no auth_request: the console is open to anyone here"
                ] == problems
        assert "fix:      add in this location: auth_request /auth/check;\n" in output

    def test_a_location_with_neither_lets_forged_headers_through(self, tmp_path: Path) -> None:
        """Neither line: open to anyone and the browser's forged identity headers reach the
        console; both lines are given."""
        conf = lay_out(tmp_path, OPEN)
        status, output = check(tmp_path, conf)
        assert 1 == status
        problems = fails(output)
        assert 1 == len(problems), output
        assert "open to anyone here, and a browser's forged X-Auth-Request-User/-Role headers " \
               "reach it" in problems[0]
        assert "fix:      add in this location: auth_request /auth/check; " \
               "include snippets/sensor-sso-auth.conf;" in output

    def test_a_check_location_made_public_and_a_header_from_the_client(
            self, tmp_path: Path) -> None:
        """``internal`` taken out of /auth/check-admin and a console header copied from the
        browser's: both named where they are."""
        site = CORRECT.replace('X-Auth-Request-Method "";',
                               "X-Auth-Request-Method $http_x_auth_request_method;")
        conf = lay_out(tmp_path, site)
        snippet = tmp_path / "snippets" / "sensor-sso.conf"
        text = snippet.read_text()
        admin = text.index("location = /auth/check-admin {")
        snippet.write_text(text[:admin] + text[admin:].replace("    internal;\n", "", 1))
        line = text[:admin].count("\n") + 1
        status, output = check(tmp_path, conf)
        assert 1 == status
        problems = fails(output)
        assert f"FAIL internal  {snippet}:{line}: location = /auth/check-admin is not " \
               "internal: any browser can ask the agent's check directly, with its own " \
               "X-Original-URI" in problems
        forged = site_line(tmp_path, "$http_x_auth_request_method")
        assert any(p.startswith(f"FAIL headers   {forged}: ") for p in problems), output
        assert any(p.startswith("FAIL location ") and "marked public but passes" in p
                   for p in problems), output

    def test_saved_output_and_a_missing_upstream(self, tmp_path: Path) -> None:
        """Saved ``nginx -T`` output (``--file``) is read like nginx's own; without the
        agent's upstream the main file is named with the copy that fixes it."""
        conf = lay_out(tmp_path, CORRECT)
        dump = subprocess.run([str(NGINX), "-T", "-p", str(tmp_path), "-c", str(conf)],  # noqa: S603 - nginx, test paths
                              capture_output=True, text=True, check=True).stdout
        saved = tmp_path / "nginx-T.txt"
        saved.write_text(dump.replace("upstream sensor_sso_agent", "upstream other_name"))
        out = io.StringIO()
        assert 1 == run_check_nginx(str(saved), None, [], out=out)
        assert f"FAIL upstream  {conf}: no upstream sensor_sso_agent" in out.getvalue()
        saved.write_text(dump)
        out = io.StringIO()
        assert 0 == run_check_nginx(str(saved), None, [], out=out), out.getvalue()

    def test_a_copied_snippet_older_than_the_package_is_noted(self, tmp_path: Path) -> None:
        """After an upgrade ships a new sensor-sso.conf, the copy nginx still reads is named
        with the cp that refreshes it (a note: the wiring itself still holds)."""
        conf_dir = tmp_path / "nginx"
        conf_dir.mkdir()
        conf = lay_out(conf_dir, CORRECT)
        shipped = tmp_path / "shipped"
        shipped.mkdir()
        for name in ("sensor-sso.conf", "sensor-sso-auth.conf"):
            (shipped / name).write_text((conf_dir / "snippets" / name).read_text())
        out = io.StringIO()
        args = ["-p", str(conf_dir), "-c", str(conf)]
        assert 0 == run_check_nginx(None, None, args, out=out, shipped=shipped)
        assert "NOTE snippet" not in out.getvalue()
        (shipped / "sensor-sso.conf").write_text("# a newer version\n")
        out = io.StringIO()
        assert 0 == run_check_nginx(None, None, args, out=out, shipped=shipped)
        copy = conf_dir / "snippets" / "sensor-sso.conf"
        assert f"NOTE snippet   {copy}: differs from the installed package's " \
               f"{shipped / 'sensor-sso.conf'}: after an upgrade, copy it again" in out.getvalue()

    def test_the_command_line_passes_arguments_after_the_double_dash(
            self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """``check-nginx -- -p DIR -c FILE`` runs nginx -T with them; a config nginx -t
        refuses is reported as such."""
        conf = lay_out(tmp_path, CORRECT.replace("proxy_pass http://console;\n    }\n}",
                                                 "proxy_pass http://console;\n    }\n"))
        assert 1 == main(["check-nginx", "--", "-p", str(tmp_path), "-c", str(conf)])
        assert "nginx -t fails: " in capsys.readouterr().out

    def test_the_docs_and_the_package_tell_the_installer(self) -> None:
        """docs/install.md runs check-nginx after wiring and defines the public marker the
        checker reads; postinst names the command."""
        install = (REPO / "docs" / "install.md").read_text()
        wiring = install[install.index("### 8. Put nginx in front"):]
        assert "\nsensor-sso-agent check-nginx " in wiring
        assert f"# {PUBLIC_MARKER}" in wiring and f"# {PUBLIC_MARKER}" in CORRECT
        assert "check-nginx" in (REPO / "packaging" / "debian" / "postinst").read_text()


@dataclass
class Front:
    url: str
    conf_dir: Path
    conf: Path


@contextlib.asynccontextmanager
async def running(tmp_path: Path, idp: DevIdentityProvider, site: str) -> AsyncIterator[Front]:
    """The agent, a console stand-in and real nginx with ``site``."""
    assert NGINX is not None
    seen: list[dict[str, str]] = []
    console, console_port = await start_console(seen)
    port, agent_port = free_port(), free_port()
    data = agent_config_for(idp, agent_port, tmp_path / "state",
                            public_url=f"http://127.0.0.1:{port}")
    agent = web.AppRunner(create_app(settings_from_mapping(data)), access_log=None,
                          shutdown_timeout=0.5)
    await agent.setup()
    await web.TCPSite(agent, "127.0.0.1", agent_port).start()
    conf_dir = tmp_path / "nginx"
    conf_dir.mkdir()
    conf = lay_out(conf_dir, site, port, agent_port, console_port)
    nginx = await asyncio.create_subprocess_exec(
        NGINX, "-p", str(conf_dir), "-c", str(conf), "-e", str(conf_dir / "error.log"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_listening(port, nginx, conf_dir)
        await wait_agent_ready(f"http://127.0.0.1:{agent_port}")
        yield Front(f"http://127.0.0.1:{port}/", conf_dir, conf)
    finally:
        if nginx.returncode is None:
            nginx.terminate()
            await nginx.wait()
        await agent.cleanup()
        await console.cleanup()


class TestLive:
    async def test_the_shipped_wiring_passes_from_outside(
            self, tmp_path: Path, idp: DevIdentityProvider) -> None:
        """Anonymous and forged-header requests go to /login, the check locations answer 404,
        /login is the agent's page."""
        async with running(tmp_path, idp, CORRECT) as front:
            status, output = await asyncio.to_thread(check, front.conf_dir, front.conf,
                                                     front.url)
        assert 0 == status, output
        assert f"OK   forged    {front.url}: a request with forged X-Auth-Request-User/-Role " \
               f"headers is sent to the sign-in page ({front.url}login?next=/)" in output
        assert f"OK   login     {front.url}login: the agent's sign-in page" in output
        assert 4 == output.count("OK   internal")

    async def test_the_open_console_fails_live(self, tmp_path: Path,
                                               idp: DevIdentityProvider) -> None:
        """A console location without auth_request fails both live requests: the console
        answered them."""
        async with running(tmp_path, idp, OPEN) as front:
            status, output = await asyncio.to_thread(check, front.conf_dir, front.conf,
                                                     front.url)
        assert 1 == status
        assert f"FAIL anonymous {front.url}: an anonymous request was answered 200: the " \
               "console is open to anyone" in output
        assert f"FAIL forged    {front.url}: a request with forged X-Auth-Request-User/-Role " \
               "headers was answered 200: the console is open to anyone" in output

    async def test_the_server_without_sensor_sso_conf_fails_live(
            self, tmp_path: Path, idp: DevIdentityProvider) -> None:
        """Without sensor-sso.conf, nginx asks the console's own location for /auth/check,
        which lets everyone in; /login is not the agent's."""
        async with running(tmp_path, idp, NO_SERVER_SNIPPET) as front:
            status, output = await asyncio.to_thread(check, front.conf_dir, front.conf,
                                                     front.url)
        assert 1 == status
        assert f"FAIL anonymous {front.url}: an anonymous request was answered 200: the " \
               "console is open to anyone" in output
        assert "FAIL login     " in output
