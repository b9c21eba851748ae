"""The static half of ``check-nginx``: is the agent wired into the effective configuration?

Given the tree of ``nginx -T`` (``nginxconf.py``), each finding names file:line, what a
mistake lets happen and the line to add:

* ``upstream``: ``upstream sensor_sso_agent`` (sensor-sso-upstream.conf) is in ``http { }``
  exactly once.
* ``server``: every server with a console location includes sensor-sso.conf (its named
  locations ``@sensor_sso_login``, ``@sensor_sso_refused``, ``@sensor_sso_unavailable``).
* ``location``: every location that proxies to anything but the agent (``proxy_pass``,
  ``fastcgi_pass``, ``uwsgi_pass``, ``scgi_pass``, ``grpc_pass``) is a console location. It
  needs ``auth_request /auth/check`` (or ``-admin``, ``-security_analyst``; inherited as nginx
  inherits it) and the identity headers and error pages of sensor-sso-auth.conf, unless its
  block carries the comment ``# sensor-sso-agent: public``; a public location must still
  clear the ``X-Auth-Request-*`` headers so that a browser cannot send its own.
* ``internal``: ``/auth/check``, ``/auth/check-admin``, ``/auth/check-security_analyst`` are
  exact, ``internal`` locations that proxy to the agent.
* ``headers``: nothing sets ``X-Auth-Request-*`` from the client (``$http_x_auth_request_*``)
  or to anything but the snippet's variables.
"""

from __future__ import annotations

from dataclasses import dataclass

from .nginxconf import Config, Directive, walk

AGENT_UPSTREAM = "sensor_sso_agent"
PUBLIC_MARKER = "sensor-sso-agent: public"
CHECKS = ("/auth/check", "/auth/check-admin", "/auth/check-security_analyst")
IDENTITY = ("User", "Role", "Name", "Method")
PASSES = ("proxy_pass", "fastcgi_pass", "uwsgi_pass", "scgi_pass", "grpc_pass")
NAMED = ("@sensor_sso_login", "@sensor_sso_refused", "@sensor_sso_unavailable")
AUTH_SNIPPET = "include snippets/sensor-sso-auth.conf;"
CLEAR = " ".join(f'proxy_set_header X-Auth-Request-{h} "";' for h in IDENTITY)


@dataclass
class Finding:
    check: str
    where: str
    ok: bool | None  # None: a note (a location marked public)
    detail: str
    fix: str = ""


@dataclass
class Scope:
    """A location (or server) and the blocks around it, innermost first."""

    block: Directive
    outer: list[Directive]

    def inherited(self, name: str) -> list[Directive]:
        """``name``'s directives as nginx applies them here: the innermost level that sets
        any (proxy_set_header, error_page, auth_request all inherit this way)."""
        for level in (self.block, *self.outer):
            found = level.children(name)
            if found:
                return found
        return []


def check_config(config: Config) -> list[Finding]:
    findings: list[Finding] = []
    http = [d for d in config.tree if d.name == "http" and d.block is not None]
    upstreams = [u for h in http for u in h.children("upstream") if u.args == [AGENT_UPSTREAM]]
    agent_addresses = {f"http://{s.args[0]}" for u in upstreams for s in u.children("server")
                       if s.args}
    findings.append(_upstream(upstreams, config.main))
    consoles = 0
    for h in http:
        for server in h.children("server"):
            found, console = _server(Scope(server, [h]), agent_addresses)
            findings += found
            consoles += console
    if consoles == 0:
        findings.append(Finding(
            "server", config.main, False,
            "no location proxies to the console (proxy_pass or fastcgi_pass, ... to anything "
            "but the agent), so nothing here is behind the sign-in",
            "in the console's server { }: include snippets/sensor-sso.conf; and in each console "
            f"location: auth_request /auth/check; {AUTH_SNIPPET} (docs/install.md step 8)"))
    findings += _forged_headers(config.tree)
    return findings


def _upstream(upstreams: list[Directive], main: str) -> Finding:
    if len(upstreams) == 1:
        servers = ", ".join(s.args[0] for s in upstreams[0].children("server") if s.args)
        return Finding("upstream", upstreams[0].where, True,
                       f"upstream {AGENT_UPSTREAM} ({servers}) is defined once")
    if not upstreams:
        return Finding("upstream", main, False,
                       f"no upstream {AGENT_UPSTREAM}: nginx does not know where the agent is "
                       "(sensor-sso-upstream.conf is not included in http { })",
                       "cp /usr/share/sensor-sso-agent/nginx/sensor-sso-upstream.conf "
                       "/etc/nginx/conf.d/ (Debian's nginx.conf includes conf.d/*.conf), or in "
                       "http { }: include conf.d/sensor-sso-upstream.conf;")
    return Finding("upstream", upstreams[1].where, False,
                   f"upstream {AGENT_UPSTREAM} is defined {len(upstreams)} times ("
                   + ", ".join(u.where for u in upstreams) + "): sensor-sso-upstream.conf is "
                   "included more than once", "keep one include of sensor-sso-upstream.conf")


def _server(scope: Scope, agents: set[str]) -> tuple[list[Finding], int]:
    server = scope.block
    locations = _locations(scope)
    consoles = [loc for loc in locations if _console_target(loc.block, agents)]
    if not consoles:
        return [], 0
    names = {" ".join(loc.block.args) for loc in locations}
    findings: list[Finding] = []
    listen = ", ".join(" ".join(d.args) for d in server.children("listen")) or "default"
    wired = all(n in names for n in NAMED)
    if wired:
        findings.append(Finding("server", server.where, True,
                                f"server (listen {listen}) includes sensor-sso.conf"))
    else:
        findings.append(Finding(
            "server", server.where, False,
            f"server (listen {listen}) does not include sensor-sso.conf: auth_request "
            "/auth/check is answered by a console location, so anyone gets in where the "
            "console answers it with 200, and every other page is a bare 500 (could not find "
            "named location \"@sensor_sso_unavailable\"); /login does not reach the agent",
            "add in this server { }: include snippets/sensor-sso.conf;"))
    findings += _internal(server, locations, agents, wired)
    for loc in consoles:
        findings.append(_console(loc, _console_target(loc.block, agents),
                                 names if wired else None))
    return findings, len(consoles)


def _locations(scope: Scope) -> list[Scope]:
    found: list[Scope] = []
    for loc in scope.block.children("location"):
        inner = Scope(loc, [scope.block, *scope.outer])
        found.append(inner)
        found += _locations(inner)
    return found


def _console_target(block: Directive, agents: set[str]) -> str:
    """What a location proxies to when that is not the agent ("" otherwise). Looks inside
    its ``if`` and ``limit_except`` blocks too, not into nested locations."""
    for d in block.block or []:
        if d.name in PASSES and d.args and not _is_agent(d.args[0], agents):
            return d.args[0]
        if d.name in ("if", "limit_except"):
            inner = _console_target(d, agents)
            if inner:
                return inner
    return ""


def _is_agent(target: str, agents: set[str]) -> bool:
    for base in (f"http://{AGENT_UPSTREAM}", *agents):
        if target == base or target.startswith(base + "/") or target.startswith(base + "?"):
            return True
    return False


def _console(loc: Scope, target: str, names: set[str] | None) -> Finding:
    """One console location; ``names`` are the server's locations (None: the server lacks
    sensor-sso.conf, already said)."""
    block = loc.block
    label = f"location {' '.join(block.args)} -> {target}"
    public = any(c.startswith(PUBLIC_MARKER) for c in block.comments)
    headers = _identity_headers(loc)
    if public:
        if all(headers.get(h) in ("", f"$sensor_sso_{h.lower()}") for h in IDENTITY):
            return Finding("location", block.where, None,
                           f"{label}: marked public ({PUBLIC_MARKER}): anyone reaches it")
        return Finding("location", block.where, False,
                       f"{label} is marked public but passes a browser's own X-Auth-Request-* "
                       "headers to the console, which may take them for a signed-in user",
                       f"add in this location: {CLEAR}")
    auth = loc.inherited("auth_request")
    asked = auth[0].args[0] if auth and auth[0].args else "off"
    snippet = (all(headers.get(h) == f"$sensor_sso_{h.lower()}" for h in IDENTITY)
               and any("401" in d.args and "@sensor_sso_login" in d.args
                       for d in loc.inherited("error_page")))
    if asked == "off":
        opened = "the console is open to anyone here"
        forged = (", and a browser's forged X-Auth-Request-User/-Role headers reach it"
                  if not snippet else "")
        fix = "auth_request /auth/check;" + ("" if snippet else f" {AUTH_SNIPPET}")
        return Finding("location", block.where, False, f"{label} has no auth_request: "
                       f"{opened}{forged}", f"add in this location: {fix}")
    if asked not in CHECKS:
        return Finding("location", block.where, False,
                       f"{label} asks {asked}, not the agent: the agent's sign-in does not "
                       "protect it", "auth_request /auth/check; (or /auth/check-admin, "
                       "/auth/check-security_analyst)")
    if names is not None and f"= {asked}" not in names:
        return Finding("location", block.where, False,
                       f"{label}: auth_request {asked} has no location = {asked} in this "
                       "server (sensor-sso.conf)", "include snippets/sensor-sso.conf; in the "
                       "server")
    if not snippet:
        return Finding("location", block.where, False,
                       f"{label} has auth_request {asked} but not sensor-sso-auth.conf: "
                       "signed-in users reach the console without X-Auth-Request-User/-Role "
                       "(or with ones their browser forged), and anonymous users get a bare "
                       "401 instead of the sign-in page",
                       f"add in this location, after the auth_request line: {AUTH_SNIPPET}")
    return Finding("location", block.where, True,
                   f"{label}: auth_request {asked}, identity headers and error pages from "
                   "sensor-sso-auth.conf")


def _identity_headers(loc: Scope) -> dict[str, str]:
    values: dict[str, str] = {}
    for d in loc.inherited("proxy_set_header"):
        if len(d.args) >= 2 and d.args[0].lower().startswith("x-auth-request-"):
            values[d.args[0][len("x-auth-request-"):].capitalize()] = d.args[1]
    return values


def _internal(server: Directive, locations: list[Scope], agents: set[str],
              wired: bool) -> list[Finding]:
    if not wired:
        return []
    exact = {" ".join(loc.block.args[1:]): loc.block for loc in locations
             if loc.block.args[:1] == ["="]}
    findings: list[Finding] = []
    for path in CHECKS:
        loc = exact.get(path)
        if loc is None:
            findings.append(Finding(
                "internal", server.where, False,
                f"no location = {path}: a console location asking it gets a 404 from nginx, "
                f"or /auth/'s location answers it for anyone",
                "use sensor-sso.conf as shipped (cp /usr/share/sensor-sso-agent/nginx/"
                "sensor-sso.conf /etc/nginx/snippets/)"))
        elif not loc.children("internal"):
            findings.append(Finding(
                "internal", loc.where, False,
                f"location = {path} is not internal: any browser can ask the agent's check "
                "directly, with its own X-Original-URI", "add in this location: internal;"))
    if not findings:
        findings.append(Finding("internal", server.where, True,
                                ", ".join(CHECKS) + " are internal"))
    return findings


def _forged_headers(tree: list[Directive]) -> list[Finding]:
    findings: list[Finding] = []
    for d in walk(tree, "proxy_set_header") + walk(tree, "fastcgi_param") \
            + walk(tree, "more_set_input_headers"):
        text = " ".join(d.args)
        if "$http_x_auth_request_" in text.lower():
            findings.append(Finding(
                "headers", d.where, False,
                f"{d.text()}: passes the browser's own X-Auth-Request-* header on as who the "
                "user is: anyone can claim any user and role", "remove this line"))
        elif d.name == "proxy_set_header" and len(d.args) >= 2 and _sets_identity(*d.args[:2]):
            findings.append(Finding(
                "headers", d.where, False,
                f"{d.text()}: sets who the user is to something other than the agent's "
                "answer", "remove this line (sensor-sso-auth.conf sets it)"))
    return findings


def _sets_identity(header: str, value: str) -> bool:
    """``proxy_set_header X-Auth-Request-<identity> value`` with a value other than the
    snippet's variable or "" (which clears it)."""
    prefix = "x-auth-request-"
    name = header.lower()
    if not name.startswith(prefix) or name[len(prefix):].capitalize() not in IDENTITY:
        return False
    return value not in ("", f"$sensor_sso_{name[len(prefix):]}")
