"""HTML pages (jinja2, autoescaped): sign-in, refusal/error, and the demo console stand-in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from ..errors import (
    DependencyFailure,
    IdentityProviderUnavailable,
    MissingAttributes,
    ReasonedError,
    SignInRefused,
)
from ..explain import (
    AADSTS,
    MISCONFIGURED,
    PROVIDER_ERRORS,
    REASONS,
    REJECTED,
    ROLE_TOO_LOW,
    UNAVAILABLE,
    WRONG_TENANT,
    Explanation,
)
from ..settings import Settings

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("agent.web", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def render(template: str, status: int = 200, **context: Any) -> web.Response:
    body = _env.get_template(template).render(**context)
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def start_url(next_path: str | None, login_hint: str | None = None) -> str:
    params = {k: v for k, v in (("next", next_path), ("login_hint", login_hint)) if v}
    return "/auth/sso/start" + (f"?{urlencode(params)}" if params else "")


@dataclass(frozen=True)
class LocalForm:
    """The local-account form on the sign-in page (``local.signin.LocalSignIn.offered``)."""

    reason: str
    csrf_token: str
    next_path: str | None = None
    username: str = ""
    error: str | None = None


def login_page(settings: Settings, next_path: str | None, signed_out: bool,
               not_ready: str | None, login_hint: str | None = None,
               local: LocalForm | None = None, status: int = 200,
               ended: bool = False) -> web.Response:
    return render("login.html", status=status, title="Sign in",
                  sensor_name=settings.server.sensor_name,
                  start_url=start_url(next_path, login_hint), ended=ended and not signed_out,
                  contact=settings.server.access_contact, signed_out=signed_out,
                  not_ready=not_ready, sso_off=settings.sso_off, local=local)


def explain(error: ReasonedError, settings: Settings) -> tuple[Explanation, str | None]:
    code = error.aadsts
    if error.reason == "idp_misconfigured":  # a tenant Entra ID does not know (AADSTS90002)
        return WRONG_TENANT, code
    if isinstance(error, IdentityProviderUnavailable):
        return _fill(UNAVAILABLE, dependency=error.dependency), code
    if code and code in AADSTS:
        return AADSTS[code], code
    provider_error = error.provider_error
    if error.reason == "idp_error" and provider_error is not None \
            and provider_error in PROVIDER_ERRORS:
        known = PROVIDER_ERRORS[provider_error]
        return Explanation(known.title, f"{known.what} Entra ID answered: {provider_error}.",
                           known.todo), code
    if error.reason in REASONS:
        missing = error.missing if isinstance(error, MissingAttributes) else ()
        return _fill(REASONS[error.reason], contact=settings.server.access_contact,
                     missing=", ".join(missing), error=provider_error or "an error"), code
    if isinstance(error, DependencyFailure):  # a configuration problem without its own text
        return _fill(MISCONFIGURED, dependency=error.dependency,
                     contact=settings.server.access_contact), code
    if isinstance(error, SignInRefused):
        return _fill(REASONS["idp_error"], error=error.detail or error.reason), code
    return _fill(REJECTED, detail=error.detail or error.reason), code


def error_page(error: ReasonedError, settings: Settings, reference: str,
               retry_url: str = "/auth/sso/start") -> web.Response:
    explanation, code = explain(error, settings)
    return render("error.html", status=error.status, title=explanation.title,
                  sensor_name=settings.server.sensor_name, what=explanation.what,
                  todo=explanation.todo, aadsts=code, retry_url=retry_url, reference=reference)


def plain_error_page(settings: Settings, status: int, title: str, what: str, todo: str,
                     reference: str) -> web.Response:
    return render("error.html", status=status, title=title,
                  sensor_name=settings.server.sensor_name, what=what, todo=todo, aadsts=None,
                  retry_url="/login", reference=reference)


def role_refused_page(settings: Settings, role: str, needed: str,
                      reference: str) -> web.Response:
    """403 for a signed-in user whose role ranks below what a console page needs."""
    text = _fill(ROLE_TOO_LOW, role=role, needed=needed,
                 contact=settings.server.access_contact)
    return render("error.html", status=403, title=text.title,
                  sensor_name=settings.server.sensor_name, what=text.what, todo=text.todo,
                  aadsts=None, retry_url=settings.server.post_login_path,
                  retry_label="Back to Overview", reference=reference)


def _fill(explanation: Explanation, **values: str) -> Explanation:
    """``explanation`` with its ``{name}`` fields filled; a field without a value is the
    agent's bug and raises ``KeyError`` (tests/web/test_pages.py fills every text)."""
    return Explanation(explanation.title.format(**values), explanation.what.format(**values),
                       explanation.todo.format(**values))
