"""The shipped rsyslog rule with Debian's real rsyslogd: the agent's audit events reach a
syslog collector on loopback over TLS, once each, in CEF and in RFC 5424 JSON."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.devidp import DevIdentityProvider, DevUser, demo_users
from tests.deploy.support import (
    REPO,
    AgentProcess,
    SignInClient,
    agent_config_for,
    free_port,
    write_config,
    write_server_cert,
)
from tests.harness import CLIENT, PASSWORD, ROLE_GROUPS, TENANT
from tests.local.helpers import LOCAL_ADMIN, LOCAL_PASSWORD, accounts_file, csrf_token
from tests.needs import need

RULES = REPO / "config" / "rsyslog"
RSYSLOGD = shutil.which("rsyslogd") or (Path("/usr/sbin/rsyslogd").is_file()
                                         and "/usr/sbin/rsyslogd") or None
GTLS = glob.glob("/usr/lib/*/rsyslog/lmnsd_gtls.so")
# A UPN holding what CEF escapes or splits on ('=', '\\', '|' and a fake header after
# them): Entra ID would not issue it; the local provider does and the agent passes it on.
# No CR LF: the agent refuses a UPN holding a control character (upn_unusable), so none
# reaches the audit trail; the rule escapes them all the same.
ODD_UPN = "o=brien\\ops|plant=CEF:0|x@contoso.example"
ODD_USER = "odd@contoso.example"
# What the four sign-ins write to the audit trail, and so what must arrive, once each.
EXPECTED = Counter({"sso_login_started": 2, "sso_login_succeeded": 1, "sso_login_refused": 1,
                    "sso_logout": 1, "local_login_succeeded": 1})


def need_rsyslog() -> str:
    need(RSYSLOGD, "rsyslogd is not installed (Debian package rsyslog; .ci/apt-packages.txt)")
    need(GTLS, "rsyslog's gtls driver is not installed (Debian package rsyslog-gnutls)")
    assert isinstance(RSYSLOGD, str)
    return RSYSLOGD


def collector_rule(port: int, ca: Path, template: str) -> str:
    """The shipped collector file with its four EDIT values set, nothing else changed."""
    text = (RULES / "sensor-sso-agent-collector.conf").read_text()
    for old, new in (('target="siem-collector.plant.example"', 'target="127.0.0.1"'),
                     ('port="6514"', f'port="{port}"'),
                     ('template="SensorSsoAgentCEF"', f'template="{template}"'),
                     ('PermittedPeers="siem-collector.plant.example"',
                      'PermittedPeers="127.0.0.1"'),
                     ('"/etc/ssl/certs/siem-collector-ca.pem"', f'"{ca}"')):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


@dataclass
class Collector:
    """A syslog receiver over TLS on loopback (LF-framed, as omfwd sends by default)."""

    context: ssl.SSLContext
    expected: int
    lines: list[str] = field(default_factory=list)
    enough: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._read, "127.0.0.1", 0, ssl=self.context)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while line := await reader.readline():
                self.lines.append(line.decode().rstrip("\n"))
                if len(self.lines) >= self.expected:
                    self.enough.set()
        writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


@contextlib.asynccontextmanager
async def rsyslogd(tmp: Path, agent_log: Path, port: int, ca: Path,
                   template: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """Debian's rsyslogd, unprivileged, its own config and work directory, reading the agent's
    output with imfile into the shipped audit ruleset (included unchanged)."""
    work = tmp / template
    work.mkdir()
    (work / "collector.conf").write_text(collector_rule(port, ca, template))
    (work / "rsyslog.conf").write_text(
        f'global(workDirectory="{work}")\n'
        'module(load="imfile")\n'
        f'include(file="{RULES / "sensor-sso-agent-audit.conf"}")\n'
        f'include(file="{work / "collector.conf"}")\n'
        f'input(type="imfile" file="{agent_log}" tag="sensor-sso-agent"'
        ' ruleset="sensor_sso_agent_audit")\n')
    proc = await asyncio.create_subprocess_exec(
        need_rsyslog(), "-n", "-f", str(work / "rsyslog.conf"), "-i", str(work / "pid"),
        stdout=asyncio.subprocess.DEVNULL, stderr=(work / "stderr").open("wb"))
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def cef_unescape(text: str, specials: str) -> str:
    out, chars = [], iter(text)
    for c in chars:
        if c == "\\":
            nxt = next(chars)
            assert nxt in specials + "nr", f"undefined escape \\{nxt} in {text!r}"
            out.append({"n": "\n", "r": "\r"}.get(nxt, nxt) if nxt in "nr" else nxt)
        else:
            assert c not in specials, f"unescaped {c!r} in {text!r}"
            out.append(c)
    return "".join(out)


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """A syslog line carrying CEF: the 7 header fields (``\\|`` and ``\\\\`` escaped) and the
    extension's keys and values (``\\=``, ``\\\\``, ``\\n``, ``\\r`` escaped; a value runs up
    to the space before the next unescaped ``key=``)."""
    start = line.index("CEF:")
    header: list[str] = []
    rest, i = line[start + 4:], 0
    while len(header) < 7:
        j, field_chars = i, []
        while rest[j] != "|":
            field_chars.append(rest[j:j + 2] if rest[j] == "\\" else rest[j])
            j += 2 if rest[j] == "\\" else 1
        header.append(cef_unescape("".join(field_chars), "\\|"))
        i = j + 1
    extension = rest[i:]
    assert "\n" not in extension and "\r" not in extension
    bounds = [m for m in re.finditer(r"(?:^| )([A-Za-z0-9_.]+)=", extension)
              if not _escaped(extension, m.start(1) - 1)]
    values = {}
    assert bounds or not extension.strip(), extension
    for m, nxt in zip(bounds, [*bounds[1:], None][:len(bounds)], strict=True):
        raw = extension[m.end():nxt.start() if nxt else len(extension)]
        assert m.group(1) not in values, f"key {m.group(1)} twice"
        values[m.group(1)] = cef_unescape(raw, "\\=")
    return header, values


def _escaped(text: str, index: int) -> bool:
    """True when ``text[index + 1]`` is preceded by an odd number of backslashes."""
    n = 0
    while index >= 0 and text[index] == "\\":
        n, index = n + 1, index - 1
    return n % 2 == 1


async def sign_out(client: SignInClient) -> str:
    """Sign out with the session's CSRF token; return the token."""
    _, _, body = await client.get("/auth/me")
    token = str(json.loads(body)["csrf_token"])
    async with client.http.post(client.base + "/auth/logout", allow_redirects=False,
                                headers={"X-CSRF-Token": token}) as resp:
        assert resp.status == 303
    return token


async def local_sign_in(client: SignInClient) -> None:
    _, _, page = await client.get("/login")
    async with client.http.post(client.base + "/auth/local/sign-in", allow_redirects=False,
                                data={"username": LOCAL_ADMIN, "password": LOCAL_PASSWORD,
                                      "csrf_token": csrf_token(page) or ""}) as resp:
        assert resp.status == 303, await resp.text()


async def arrived(collectors: list[Collector], timeout: float = 30.0) -> None:
    """Until each collector has its expected count (or the timeout: the asserts then show
    what came), then one more second, for whatever else would arrive (a duplicate, a
    non-audit event) to arrive."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(c.enough.wait() for c in collectors)),
                               timeout)
    await asyncio.sleep(1.0)


@pytest.fixture
async def odd_idp() -> AsyncIterator[DevIdentityProvider]:
    """The demo directory plus an admin whose UPN holds '=', '\\' and '|'."""
    users = [*demo_users(ROLE_GROUPS),
             DevUser(ODD_USER, PASSWORD, "Odd", "Name", ODD_UPN, ROLE_GROUPS["admin"])]
    provider = DevIdentityProvider(tenant_id=TENANT, client_id=CLIENT, redirect_uris=[],
                                   users=users)
    await provider.start()
    yield provider
    await provider.stop()


async def test_sign_ins_reach_the_collector_once_each_in_cef_and_rfc5424(
        tmp_path: Path, odd_idp: DevIdentityProvider) -> None:
    """A sign-in, its sign-out, a refusal (no_role) and a local sign-in through the real agent
    arrive at a TLS collector exactly once each, in both formats, with the mapped fields, and
    nothing else (no start-up or health events, no secret) does."""
    need_rsyslog()
    port = free_port()
    data = agent_config_for(odd_idp, port, tmp_path / "state")
    data["local"] = {"accounts_file": str(accounts_file(
        tmp_path / "local-accounts", (LOCAL_ADMIN, "admin", LOCAL_PASSWORD))),
        "sign_in": "always"}
    agent = AgentProcess(write_config(tmp_path / "agent.toml", data), port,
                         env={"PYTHONPATH": str(REPO)})
    ca, cert, key = write_server_cert(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    cef, rfc = (Collector(context, sum(EXPECTED.values())) for _ in range(2))
    clients = [SignInClient(agent.url, odd_idp) for _ in range(3)]
    secrets: list[str] = [PASSWORD, LOCAL_PASSWORD]
    try:
        await cef.start()
        await rfc.start()
        await agent.wait_healthy()
        async with rsyslogd(tmp_path, agent.log_path, cef.port, ca, "SensorSsoAgentCEF"), \
                rsyslogd(tmp_path, agent.log_path, rfc.port, ca, "SensorSsoAgentJSON"):
            callback = await clients[0].authorize(ODD_USER)
            secrets += re.findall(r"[?&](?:code|state)=([^&]+)", callback)
            status, headers, _ = await clients[0].get(callback)
            assert status == 302, headers
            secrets += [m.value for m in clients[0].http.cookie_jar]
            secrets.append(await sign_out(clients[0]))
            refused = await clients[1].get(await clients[1].authorize(
                "nogroup@contoso.example"))
            assert refused[0] == 403
            await local_sign_in(clients[2])
            secrets += [m.value for m in clients[2].http.cookie_jar]
            await arrived([cef, rfc])
    finally:
        for client in clients:
            await client.close()
        agent.kill()
        await cef.stop()
        await rfc.stop()
    for work in ("SensorSsoAgentCEF", "SensorSsoAgentJSON"):
        assert "error" not in (tmp_path / work / "stderr").read_text().lower()

    # RFC 5424: <PRI>1 TIME HOST APP PROCID MSGID SD MSG, the agent's JSON line as MSG.
    events = []
    for line in rfc.lines:
        m = re.fullmatch(r"<(\d+)>1 (\S+) (\S+) sensor-sso-agent - (\S+) - (\{.*\})", line)
        assert m, line
        event = json.loads(m.group(5))
        assert m.group(4) == event["event"]
        events.append(event)
    assert Counter(e["event"] for e in events) == EXPECTED, rfc.lines
    written = [e for e in agent.events() if e.get("event") in EXPECTED]
    assert events == written  # each one as the agent wrote it, in its order

    # CEF: vendor, product, signature and severity per event, the extension's mapped fields.
    parsed = [parse_cef(line) for line in cef.lines]
    assert all(h[:4] == ["0", "sensor-sso-agent", "sensor-sso-agent", "1"] for h, _ in parsed)
    got = [(h[4], h[5], h[6], ext) for h, ext in parsed]
    assert Counter(g[1] for g in got) == Counter({
        "SSO sign-in started": 2, "SSO sign-in succeeded": 1, "SSO sign-in refused": 1,
        "Signed out": 1, "Local sign-in succeeded": 1})
    by_name = {name: (sig, sev, ext) for sig, name, sev, ext in got}
    ids = {e["event"]: e["request_id"] for e in written if e["event"] != "sso_login_started"}
    assert by_name["SSO sign-in succeeded"] == ("101", "3", {
        "outcome": "success", "suser": ODD_UPN, "src": "127.0.0.1", "cs1Label": "role",
        "cs1": "admin", "cs2Label": "method", "cs2": "sso", "cs3Label": "requestId",
        "cs3": ids["sso_login_succeeded"]})
    assert by_name["Signed out"] == ("120", "2", {
        "outcome": "success", "suser": ODD_UPN, "src": "127.0.0.1", "cs1Label": "role",
        "cs1": "admin",
        "cs2Label": "method", "cs2": "sso", "cs3Label": "requestId", "cs3": ids["sso_logout"]})
    assert by_name["SSO sign-in refused"] == ("102", "6", {
        "outcome": "failure", "suser": "nogroup@contoso.example", "src": "127.0.0.1",
        "reason": "no_role", "cs2Label": "method", "cs2": "sso", "cs3Label": "requestId",
        "cs3": ids["sso_login_refused"]})
    assert by_name["Local sign-in succeeded"] == ("110", "5", {
        "outcome": "success", "suser": LOCAL_ADMIN, "src": "127.0.0.1", "cs1Label": "role",
        "cs1": "admin", "cs2Label": "method", "cs2": "local", "cs3Label": "requestId",
        "cs3": ids["local_login_succeeded"]})
    assert "suser=o\\=brien\\\\ops|plant\\=CEF:0|x@contoso.example " in "\n".join(cef.lines)

    everything = "\n".join(cef.lines + rfc.lines)
    assert len(secrets) >= 7
    for secret in secrets:
        assert secret not in everything


# Audit lines the four sign-ins do not produce, written by the agent's own logging.
EMIT = """
import structlog
from agent.logging import configure_logging
configure_logging(level="debug", json=True)
audit = structlog.get_logger("agent.audit")
audit.warning("sessions_admin", action="revoke", caller_uid=0, refused=True, upn="a@b.example")
audit.warning("session_role_changed", upn="a@b.example", via="revalidation",
              **{"from": "read_only", "to": "admin"})
audit.warning("sso_login_refused", source_ip="2001:db8::7", reason="too_many_sign_ins")
audit.warning("audit_burst", source_ip="(other clients)", clients=30, total=900)
audit.info("agent_ready", listen="127.0.0.1:8080")
audit.debug("sso_login_started", source_ip="10.0.0.1")
print("Traceback (most recent call last): not JSON", flush=True)
audit.error("task_failed", task="revalidation", error_type="RuntimeError")
"""


async def test_the_rule_maps_admin_role_ipv6_burst_and_task_events_and_drops_the_rest(
        tmp_path: Path) -> None:
    """The agent's logging writes a refused sessions command, a role change, an IPv6
    refusal, a burst summary, a task failure, a health event, a debug line and a non-JSON
    line: the first five arrive as CEF with their mapped fields, the rest never."""
    need_rsyslog()
    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        emitted = await asyncio.create_subprocess_exec(
            sys.executable, "-c", EMIT, stdout=out, cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        assert await emitted.wait() == 0
    assert '"level": "debug"' in log.read_text()
    ca, cert, key = write_server_cert(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    cef = Collector(context, 5)
    await cef.start()
    try:
        async with rsyslogd(tmp_path, log, cef.port, ca, "SensorSsoAgentCEF"):
            await arrived([cef])
    finally:
        await cef.stop()
    got = [(h[4], ext) for h, ext in map(parse_cef, cef.lines)]
    assert got == [
        ("140", {"outcome": "failure", "suser": "a@b.example", "act": "revoke", "suid": "0"}),
        ("133", {"suser": "a@b.example", "reason": "revalidation", "cs1Label": "role",
                 "cs1": "admin"}),
        ("102", {"outcome": "failure", "c6a2Label": "sourceIPv6Address", "c6a2": "2001:db8::7",
                 "reason": "too_many_sign_ins", "cs2Label": "method", "cs2": "sso"}),
        ("160", {}),
        ("170", {"outcome": "failure"}),
    ], cef.lines


def test_the_cef_parser_reads_the_specifications_escapes() -> None:
    """The parser the tests read CEF with: '\\|' and '\\\\' in the header, '\\=', '\\\\' and
    '\\n' in values, spaces inside a value, and an unescaped '=' in a value refused."""
    header, ext = parse_cef("<13>Jan 1 host CEF:0|ven\\|dor|pro\\\\duct|1.0|100|a \\| b|10|"
                            "src=10.0.0.1 act=blocked a \\\\ here msg=x \\= y\\nz cs1=")
    assert header == ["0", "ven|dor", "pro\\duct", "1.0", "100", "a | b", "10"]
    assert ext == {"src": "10.0.0.1", "act": "blocked a \\ here", "msg": "x = y\nz", "cs1": ""}
    with pytest.raises(AssertionError, match="unescaped"):
        parse_cef("CEF:0|v|p|1|1|n|1|suser=a=b")


def test_the_journal_variant_matches_the_units_identifier_and_validates(
        tmp_path: Path) -> None:
    """imjournal variant + audit rule + collector file, all as shipped, pass rsyslogd -N1, and
    the identifier it matches is the one the unit sets."""
    rsyslog = need_rsyslog()
    unit = (REPO / "systemd" / "sensor-sso-agent.service").read_text()
    journal = (RULES / "sensor-sso-agent-journal.conf").read_text()
    identifier = re.findall(r"^SyslogIdentifier=(\S+)$", unit, re.M)
    assert identifier == re.findall(r'\$!SYSLOG_IDENTIFIER == "([^"]+)"', journal) == \
        ["sensor-sso-agent"]
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(f'global(workDirectory="{tmp_path}")\n' + "".join(
        f'include(file="{RULES / name}")\n' for name in (
            "sensor-sso-agent-audit.conf", "sensor-sso-agent-collector.conf",
            "sensor-sso-agent-journal.conf")))
    result = subprocess.run([rsyslog, "-N1", "-f", str(conf)], capture_output=True,  # noqa: S603
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr



def test_the_mapping_in_docs_is_the_rules_and_names_events_the_agent_writes() -> None:
    """docs/siem.md's event table is the audit rule's mapping (id, name, severities), and each
    event it forwards is one the agent writes (task_failed: issue 21's supervision)."""
    rule = (RULES / "sensor-sso-agent-audit.conf").read_text()
    mapped = re.findall(
        r'\$!sso!event == "(\w+)" then \{\s*set \$\.sso_sig = "(\d+)"; '
        r'set \$\.sso_name = "([^"]+)"; set \$\.sso_sev = "(\d+)";\s*set \$\.sso_pri = "(\d+)";',
        rule)
    assert len(mapped) == rule.count('$!sso!event == "') > 10
    severity = {"35": "error", "36": "warning", "37": "notice", "38": "info"}
    documented = re.findall(r"^\| `(\w+)` \| (\d+) \| ([^|]+) \| (\d+) \| (\w+) \|",
                            (REPO / "docs" / "siem.md").read_text(), re.M)
    assert [(e, i, n, s, severity[p]) for e, i, n, s, p in mapped] == \
        [(e, i, n.strip(), s, p) for e, i, n, s, p in documented]
    source = "\n".join(p.read_text() for p in (REPO / "agent").rglob("*.py"))
    assert {e for e, *_ in mapped if f'"{e}"' not in source} <= {"task_failed"}
