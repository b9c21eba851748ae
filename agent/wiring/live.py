"""The live half of ``check-nginx --url``: what a browser meets at the console's address.

* ``anonymous``: a console page without a session is sent to ``/login`` (302 from nginx's
  ``@sensor_sso_login``), never answered by the console;
* ``forged``: the same with ``X-Auth-Request-User`` / ``X-Auth-Request-Role`` a browser made
  up is still sent to ``/login``;
* ``internal``: ``/auth/check`` (and ``-admin``, ``-security_analyst``) from outside is not
  answered by the agent (nginx's 404: the locations are ``internal``);
* ``login``: ``/login`` is the agent's sign-in page (or the agent's redirect to
  ``redirect_uri``'s host name).

No cookie is sent, nothing is signed in; redirects are not followed.
"""

from __future__ import annotations

import ssl
from urllib.parse import urljoin, urlsplit

import aiohttp

from .static import CHECKS, Finding

FORGED = {"X-Auth-Request-User": "check-nginx-forged@invalid.example",
          "X-Auth-Request-Role": "admin", "X-Auth-Request-Method": "sso"}
AGENT_PAGE_MARK = 'href="/auth/static/sso.css"'
TIMEOUT = 10.0


def tls_context(ca_file: str | None, insecure: bool) -> ssl.SSLContext | bool:
    if insecure:
        return False
    if ca_file:
        return ssl.create_default_context(cafile=ca_file)
    return True


async def check_live(url: str, ca_file: str | None = None,
                     insecure: bool = False) -> list[Finding]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [Finding("live", url, False, "not an http(s) URL of the console",
                        "--url https://sensor-01.plant.example/")]
    page = url if parts.path else url + "/"
    origin = f"{parts.scheme}://{parts.netloc}"
    findings: list[Finding] = []
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    connector = aiohttp.TCPConnector(ssl=tls_context(ca_file, insecure))
    async with aiohttp.ClientSession(timeout=timeout, connector=connector,
                                     cookie_jar=aiohttp.DummyCookieJar()) as http:
        async def get(target: str, headers: dict[str, str] | None = None
                      ) -> tuple[int, str, str]:
            async with http.get(target, headers=headers, allow_redirects=False) as resp:
                body = await resp.text(errors="replace") if resp.status == 200 else ""
                return resp.status, resp.headers.get("Location", ""), body

        try:
            for check, headers in (("anonymous", None), ("forged", FORGED)):
                status, location, _ = await get(page, headers)
                findings.append(_to_login(check, page, status, location))
            for path in CHECKS:
                status, _, _ = await get(origin + path)
                findings.append(_internal(origin + path, status))
            status, location, body = await get(origin + "/login")
            findings.append(_login(origin + "/login", status, location, body))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            findings.append(Finding("live", url, False,
                                    f"no answer: {type(exc).__name__}: {exc}",
                                    "give the console's address as browsers open it; "
                                    "--ca-file CA.pem when its certificate is not in the "
                                    "system store"))
    return findings


def _to_login(check: str, page: str, status: int, location: str) -> Finding:
    what = "an anonymous request" if check == "anonymous" else \
        "a request with forged X-Auth-Request-User/-Role headers"
    path = urlsplit(urljoin(page, location)).path if location else ""
    if status in (301, 302, 303, 307) and path == "/login":
        return Finding(check, page, True, f"{what} is sent to the sign-in page ({location})")
    if status < 400:
        return Finding(check, page, False,
                       f"{what} was answered {status}: the console is open to anyone",
                       "auth_request /auth/check; and include snippets/sensor-sso-auth.conf; in "
                       "every console location (run check-nginx without --url for the line)")
    return Finding(check, page, False,
                   f"{what} was answered {status}, not sent to the sign-in page",
                   "include snippets/sensor-sso-auth.conf; in the console location (its "
                   "error_page 401 sends users to /login) and snippets/sensor-sso.conf in the "
                   "server")


def _internal(target: str, status: int) -> Finding:
    if status == 404:
        return Finding("internal", target, True, "not answered from outside (404)")
    if status == 401 or status < 300:
        return Finding("internal", target, False,
                       f"answered a browser ({status}): the check is reachable from outside "
                       "(or not the agent's at all)", "internal; in that location (sensor-sso.conf "
                       "as shipped)")
    return Finding("internal", target, True, f"not answered by the agent ({status})")


def _login(target: str, status: int, location: str, body: str) -> Finding:
    if status == 200 and AGENT_PAGE_MARK in body:
        return Finding("login", target, True, "the agent's sign-in page")
    if status in (302, 307) and urlsplit(location).path == "/login":
        return Finding("login", target, True,
                       f"the agent sends it to redirect_uri's host name ({location})")
    return Finding("login", target, False,
                   f"answered {status}, not with the agent's sign-in page",
                   "include snippets/sensor-sso.conf; in the console's server { }, and check "
                   "that the agent runs (systemctl status sensor-sso-agent)")
