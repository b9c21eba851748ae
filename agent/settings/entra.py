"""``[entra]``: the tenant, the app registration, the cloud's hosts, trust and proxy, the
platform with its credential files, step-up and sign-in hints.

Credential files are read only to check them; their content is never printed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .clouds import CLOUDS, DEFAULT_CLOUD
from .model import PLATFORMS, PROMPTS, EntraSettings
from .problems import Problems
from .values import ZERO_GUID

ENTRA_KEYS = {"tenant_id", "client_id", "redirect_uri", "authority_host", "graph_url",
              "ca_bundle", "https_proxy", "timeout", "clock_skew", "jwks_refetch_interval",
              "signout_from_entra", "post_logout_redirect_uri", "cloud", "platform",
              "client_secret_file", "client_certificate_file",
              "client_certificate_thumbprint", "require_auth_context", "max_age",
              "login_hint", "domain_hint", "prompt", "allow_guests"}


def build_entra(p: Problems, e: Mapping[str, Any]) -> EntraSettings:
    if p.sso_off:
        e = {"tenant_id": ZERO_GUID, "client_id": ZERO_GUID, **e}
    tenant = p.guid(e, "entra", "tenant_id", "the Directory (tenant) ID in Entra ID")
    client = p.guid(e, "entra", "client_id", "the app registration's Application ID")
    if "redirect_uri" not in e:
        p.problem("entra.redirect_uri", None,
                  "required: the SPA redirect URI exactly as registered")
    redirect = p.url(e, "entra", "redirect_uri", "", allow_loopback_http=True) or ""
    if redirect and urlsplit(redirect).query:
        p.problem("entra.redirect_uri", redirect, "must not carry a query string")
    if redirect and not urlsplit(redirect).path.startswith("/"):
        p.problem("entra.redirect_uri", redirect, "needs a path, e.g. /auth/sso/callback")
    d = EntraSettings(tenant_id="", client_id="", redirect_uri="")
    cloud = p.get(e, "entra", "cloud", str, DEFAULT_CLOUD)
    if cloud not in CLOUDS:
        p.problem("entra.cloud", cloud, f"must be one of: {', '.join(CLOUDS)}")
        cloud = DEFAULT_CLOUD
    hosts = CLOUDS[cloud]
    authority = p.url(e, "entra", "authority_host", hosts.authority_host) or \
        hosts.authority_host
    if "authority_host" in e and urlsplit(authority).path.strip("/"):
        p.problem("entra.authority_host", authority, "must be the scheme and host only, "
                  "e.g. https://login.microsoftonline.com: the tenant goes in "
                  "entra.tenant_id")
    graph = p.url(e, "entra", "graph_url", hosts.graph_url) or hosts.graph_url
    ca = p.file(e, "entra", "ca_bundle")
    if ca is not None and p.readable(ca):
        try:
            from cryptography import x509

            x509.load_pem_x509_certificates(ca.read_bytes())
        except (ValueError, OSError):
            p.problem("entra.ca_bundle", str(ca), "is not a PEM file of certificates")
    proxy = p.url(e, "entra", "https_proxy", None, schemes=("http", "https"),
                  allow_credentials=True)  # a plant's proxy may ask for a login (Basic)
    logout_uri = p.url(e, "entra", "post_logout_redirect_uri", None, allow_loopback_http=True)
    return EntraSettings(
        tenant_id=tenant, client_id=client, redirect_uri=redirect,
        authority_host=authority.rstrip("/"), graph_url=graph.rstrip("/"),
        ca_bundle=ca, https_proxy=proxy,
        timeout=p.duration(e, "entra", "timeout", d.timeout),
        clock_skew=p.duration(e, "entra", "clock_skew", d.clock_skew),
        jwks_refetch_interval=p.duration(e, "entra", "jwks_refetch_interval",
                                         d.jwks_refetch_interval),
        signout_from_entra=p.get(e, "entra", "signout_from_entra", bool, False),
        allow_guests=p.get(e, "entra", "allow_guests", bool, False),
        post_logout_redirect_uri=logout_uri, cloud=cloud,
        **_platform(p, e), **_step_up_and_hints(p, e),
    )


def _platform(p: Problems, e: Mapping[str, Any]) -> dict[str, Any]:
    """``platform`` and its credential: none for "spa", exactly one file for "web"."""
    platform = p.get(e, "entra", "platform", str, "spa")
    if platform not in PLATFORMS:
        p.problem("entra.platform", platform, "must be \"spa\" or \"web\"")
    secret = p.file(e, "entra", "client_secret_file")
    cert = p.file(e, "entra", "client_certificate_file")
    thumbprint = p.get(e, "entra", "client_certificate_thumbprint", str, None)
    if platform == "web" and not p.sso_off and (secret is None) == (cert is None):
        p.problem("entra.platform", platform, "a Web platform app needs exactly one of "
                  "client_secret_file or client_certificate_file")
    if platform == "spa" and (secret or cert):
        p.problem("entra.platform", platform, "a single-page application is a public "
                  "client: remove client_secret_file/client_certificate_file or set "
                  "platform = \"web\"")
    if cert is not None and p.readable(cert):
        from ..entra.credentials import CredentialProblem, load_certificate

        try:
            load_certificate(cert, thumbprint)
        except CredentialProblem as exc:
            p.problem("entra.client_certificate_file", str(cert), str(exc))
    if secret is not None and p.readable(secret) and not secret.read_text(
            errors="replace").strip():
        p.problem("entra.client_secret_file", str(secret), "the file is empty")
    return {"platform": platform, "client_secret_file": secret,
            "client_certificate_file": cert, "client_certificate_thumbprint": thumbprint}


def _step_up_and_hints(p: Problems, e: Mapping[str, Any]) -> dict[str, Any]:
    """``require_auth_context``, ``max_age``, ``prompt`` and the two hints."""
    context = p.get(e, "entra", "require_auth_context", str, None)
    if context is not None and not re.fullmatch(r"c([1-9]|[1-9][0-9])", context):
        p.problem("entra.require_auth_context", context,
                  "must be an authentication context id such as \"c1\" (c1..c99)")
    max_age = p.duration(e, "entra", "max_age", 0.0) if "max_age" in e else None
    prompt = p.get(e, "entra", "prompt", str, None)
    if prompt is not None and prompt not in PROMPTS:
        p.problem("entra.prompt", prompt, "must be \"select_account\" or \"login\" "
                  "(or left out)")
        prompt = None
    return {"require_auth_context": context, "max_age": max_age,
            "login_hint": p.get(e, "entra", "login_hint", str, None),
            "domain_hint": p.get(e, "entra", "domain_hint", str, None),
            "prompt": prompt}
