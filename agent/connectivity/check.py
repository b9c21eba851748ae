"""``check-connectivity``: can the sensor reach Entra ID and Microsoft Graph as the agent does?

One line per check, ``OK``/``FAIL``/``SKIP``, and on failure the fix. The checks follow the
admin guide's outbound allow rules: the authority host (sign-in, MSAL's token endpoint) and
the Graph host, each over HTTPS, through ``entra.https_proxy`` (else ``$HTTPS_PROXY`` unless
``$NO_PROXY`` exempts the host) and trusting ``entra.ca_bundle`` (else the system store):

* ``dns`` and ``tcp`` to each host (to the proxy instead, when one is used: it resolves the rest)
* ``tls`` to each host, through a ``CONNECT`` tunnel when proxied, verified like the agent does
* ``discovery`` and ``jwks``: the tenant's OpenID configuration and signing keys
* ``token``: MSAL's HTTP client posts an empty request to the token endpoint (an OAuth error
  answer proves the path; no credential is sent)
* ``graph``: ``GET /v1.0/me`` without a token; the expected 401 proves Graph is reachable

The exit status is 1 when any check fails. The DNS/TCP/TLS probing is in ``probes.py``.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import urlsplit

from ..checklines import print_checks
from ..entra.outbound import MsalHttpClient, Outbound
from ..entra.proxy import proxy_for
from ..errors import CheckFailed, IdentityProviderUnavailable
from ..settings import Settings
from .probes import FIREWALL, NetworkProbe, endpoint


@dataclass
class Result:
    check: str
    target: str
    ok: bool | None  # None: skipped because an earlier check failed
    detail: str
    fix: str = ""


class Checker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.entra = settings.entra
        self.net = NetworkProbe(settings.entra)
        self.results: list[Result] = []
        self._passed: dict[tuple[str, str], bool] = {}

    async def step(self, check: str, target: str, action: Any,
                   needs: tuple[str, str] | None = None) -> Any:
        """Run ``action()`` once per (check, target); record and return its outcome."""
        if (check, target) in self._passed:
            return self._passed[(check, target)]
        if needs is not None and not self._passed.get(needs, False):
            self.results.append(Result(check, target, None, f"needs {needs[0]} {needs[1]}"))
            self._passed[(check, target)] = False
            return None
        try:
            value, detail = await action()
        except CheckFailed as exc:
            self.results.append(Result(check, target, False, exc.detail, exc.fix))
            self._passed[(check, target)] = False
            return None
        self.results.append(Result(check, target, True, detail))
        self._passed[(check, target)] = True
        return value if value is not None else True

    # ----- HTTP, as the agent's own clients do it --------------------------------------

    async def get_json(self, outbound: Outbound, url: str, dependency: str,
                       wrong_url: str) -> Any:
        """GET ``url`` as the agent does; a failure names the URL and a fix that fits it."""
        try:
            return await outbound.request_json("GET", url, dependency=dependency)
        except IdentityProviderUnavailable as exc:
            if exc.reason.endswith("_bad_response"):  # something answered, not with JSON
                raise CheckFailed(f"{url}: {exc.detail}", wrong_url) from None
            if not self._passed.get(("tls", "{}:{}".format(*endpoint(url))), False):
                fix = "see the failed dns/tcp/tls checks above"
            else:  # the host took TLS; this request failed on its way or timed out
                fix = ("the host accepts TLS but this request failed: check the proxy's "
                       f"rules for {url}, or raise entra.timeout on a slow link")
            raise CheckFailed(f"{url}: {exc.detail}", fix) from None

    def _authority_fix(self) -> str:
        host = self.entra.authority_host
        return (f"check entra.tenant_id and entra.cloud; entra.authority_host ({host}) is the "
                "scheme and host only, e.g. https://login.microsoftonline.com (the tenant "
                "goes in entra.tenant_id)")

    async def discovery(self, outbound: Outbound) -> tuple[Any, str]:
        url = f"{self.entra.authority}/v2.0/.well-known/openid-configuration"
        resp = await self.get_json(outbound, url, "discovery", self._authority_fix())
        body = resp.body if isinstance(resp.body, dict) else {}
        if resp.status != 200:
            aadsts = " ".join(str(c) for c in body.get("error_codes", [])[:1])
            hint = (f"the tenant is not known there (AADSTS{aadsts}): check entra.tenant_id "
                    "and entra.cloud" if aadsts else self._authority_fix())
            raise CheckFailed(f"{url} answered HTTP {resp.status}", hint)
        if not body.get("jwks_uri") or not body.get("issuer"):
            raise CheckFailed(f"{url} is not an OpenID configuration (no jwks_uri or issuer)",
                              "something between the sensor and Entra ID answers instead of it: "
                              "check the proxy")
        return body, f"issuer {body['issuer']}"

    async def jwks(self, outbound: Outbound, url: str) -> tuple[None, str]:
        resp = await self.get_json(outbound, url, "jwks", "the discovery document names "
                                   "this jwks_uri: check the proxy, which answers instead")
        keys = resp.body.get("keys") if isinstance(resp.body, dict) else None
        if resp.status != 200 or not keys:
            raise CheckFailed(f"{url} answered HTTP {resp.status} without signing keys",
                              "check entra.tenant_id and the proxy")
        return None, f"{len(keys)} signing key{'s' if len(keys) != 1 else ''}"

    async def token(self, url: str) -> tuple[None, str]:
        client = MsalHttpClient(self.entra, self.entra.origin)
        try:
            resp = await asyncio.to_thread(client.post, url, data={})
        except IdentityProviderUnavailable as exc:  # the proxy's 407, said with its fix
            raise CheckFailed(f"MSAL's HTTP client: {exc.detail}",
                              "see the failed tls checks above") from None
        except Exception as exc:  # requests' SSLError, ProxyError, ConnectionError, Timeout
            raise CheckFailed(f"MSAL's HTTP client cannot reach it: {type(exc).__name__}",
                              FIREWALL.format(host=urlsplit(url).hostname)) from None
        finally:
            client.close()
        try:
            error = resp.json().get("error")
        except ValueError:
            error = None
        if not 400 <= resp.status_code < 500 or not error:
            raise CheckFailed(f"answered HTTP {resp.status_code} without an OAuth error",
                              "something between the sensor and Entra ID answers instead of it: "
                              "check the proxy")
        return None, f"answered an empty request with HTTP {resp.status_code} {error} (reachable)"

    async def graph(self, outbound: Outbound) -> tuple[None, str]:
        url = f"{self.entra.graph_url}/v1.0/me"
        resp = await self.get_json(outbound, url, "graph", "check entra.graph_url (scheme "
                                   "and host only, e.g. https://graph.microsoft.com) and "
                                   "entra.cloud")
        if resp.status != 401:
            raise CheckFailed(f"{url} answered HTTP {resp.status}, not 401 as Graph does without "
                              "a token", "check entra.graph_url and the proxy")
        return None, "answered 401 without a token (reachable)"

    # ----- all of it -------------------------------------------------------------------

    async def run(self) -> list[Result]:
        urls = {"authority": self.entra.authority_host, "graph": self.entra.graph_url}
        for url in urls.values():
            host, port = endpoint(url)
            target = f"{host}:{port}"
            proxy, login = proxy_for(self.entra, url)
            if proxy is None:
                await self.step("dns", host, lambda h=host: self.net.dns(h))
                await self.step("tcp", target, lambda h=host, p=port: self.net.tcp(
                    h, p, FIREWALL.format(host=f"{h}:{p}")), needs=("dns", host))
                needs = ("tcp", target)
            else:
                p_host, p_port = endpoint(proxy)
                p_target = f"{p_host}:{p_port} (proxy)"
                await self.step("dns", p_host, lambda h=p_host: self.net.dns(h))
                await self.step("tcp", p_target, lambda h=p_host, p=p_port: self.net.tcp(
                    h, p, f"check entra.https_proxy (or HTTPS_PROXY): nothing answers at "
                          f"{h}:{p}"), needs=("dns", p_host))
                needs = ("tcp", p_target)
            await self.step("tls", target, lambda h=host, p=port, x=proxy, a=login:
                            self.net.tls(h, p, x, a), needs=needs)
        auth_tls = ("tls", "{}:{}".format(*endpoint(urls["authority"])))
        graph_tls = ("tls", "{}:{}".format(*endpoint(urls["graph"])))
        outbound = Outbound(self.entra)
        await outbound.start()
        try:
            doc = await self.step("discovery", self.entra.tenant_id,
                                  lambda: self.discovery(outbound), needs=auth_tls)
            doc = doc if isinstance(doc, dict) else {}
            discovered = ("discovery", self.entra.tenant_id)
            unknown = "(from the discovery document)"
            await self.step("jwks", str(doc.get("jwks_uri", unknown)), lambda: self.jwks(
                outbound, str(doc["jwks_uri"])), needs=discovered)
            await self.step("token", str(doc.get("token_endpoint", unknown)), lambda: self.token(
                str(doc["token_endpoint"])), needs=discovered)
            await self.step("graph", self.entra.graph_url, lambda: self.graph(outbound),
                            needs=graph_tls)
        finally:
            await outbound.close()
        return self.results


def report(results: list[Result], out: TextIO) -> int:
    failed = print_checks(((r.check, r.target, r.ok, r.detail, r.fix) for r in results),
                          "SKIP", out)
    if failed:
        print(f"check-connectivity: {failed} of {len(results)} checks failed", file=out)
        return 1
    print(f"check-connectivity: all {len(results)} checks passed", file=out)
    return 0


async def run_checks(settings: Settings, out: TextIO | None = None) -> int:
    """Run every check, print one line each, return the exit status."""
    out = out or sys.stdout
    if settings.sso_off:
        print(f"note: SSO is off for this sensor ({settings.sso_off_reason}); checking the "
              "shared [entra] settings", file=out)
    return report(await Checker(settings).run(), out)
