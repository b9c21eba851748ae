"""Validation of the [entra] keys for platforms, step-up and hints (part of ``settings``).

``platform`` with its credential files, ``require_auth_context``, ``max_age``, ``login_hint``,
``domain_hint`` and ``prompt``. Called by the settings validator; reads the credential files only to
check them, never prints their content.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .settings import _Validator as Validator


def entra_extras(self: Validator, e: Mapping[str, Any]) -> dict[str, Any]:
    """Platform and credentials, step-up (auth context, max_age) and hints."""
    platform = self.get(e, "entra", "platform", str, "spa")
    if platform not in ("spa", "web"):
        self.problem("entra.platform", platform, "must be \"spa\" or \"web\"")
    secret = self.file(e, "entra", "client_secret_file")
    cert = self.file(e, "entra", "client_certificate_file")
    thumbprint = self.get(e, "entra", "client_certificate_thumbprint", str, None)
    if platform == "web" and not self.sso_off and (secret is None) == (cert is None):
        self.problem("entra.platform", platform, "a Web platform app needs exactly one of "
                     "client_secret_file or client_certificate_file")
    if platform == "spa" and (secret or cert):
        self.problem("entra.platform", platform, "a single-page application is a public "
                     "client: remove client_secret_file/client_certificate_file or set "
                     "platform = \"web\"")
    if cert is not None and self.readable(cert):
        from .entra.credentials import CredentialProblem, load_certificate

        try:
            load_certificate(cert, thumbprint)
        except CredentialProblem as exc:
            self.problem("entra.client_certificate_file", str(cert), str(exc))
    if secret is not None and self.readable(secret) and not secret.read_text(
            errors="replace").strip():
        self.problem("entra.client_secret_file", str(secret), "the file is empty")
    context = self.get(e, "entra", "require_auth_context", str, None)
    if context is not None and not re.fullmatch(r"c([1-9]|[1-9][0-9])", context):
        self.problem("entra.require_auth_context", context,
                     "must be an authentication context id such as \"c1\" (c1..c99)")
    max_age = self.duration(e, "entra", "max_age", 0.0) if "max_age" in e else None
    prompt = self.get(e, "entra", "prompt", str, None)
    if prompt is not None and prompt not in ("select_account", "login"):
        self.problem("entra.prompt", prompt, "must be \"select_account\" or \"login\" "
                     "(or left out)")
        prompt = None
    return {
        "platform": platform, "client_secret_file": secret,
        "client_certificate_file": cert, "client_certificate_thumbprint": thumbprint,
        "require_auth_context": context, "max_age": max_age,
        "login_hint": self.get(e, "entra", "login_hint", str, None),
        "domain_hint": self.get(e, "entra", "domain_hint", str, None),
        "prompt": prompt,
    }
