"""Drive the local identity provider's sign-in pages with plain HTTP, as a browser would.

Test support (tests, the benchmark), not shipped with the agent.
"""

from __future__ import annotations

import ssl as ssl_module
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin

import aiohttp
from yarl import URL

_TEXT_IDS = ("mfa-number", "error", "error-message", "error-code")


class SignInDriverError(Exception):
    """The pages did not end in a redirect to the client (wrong password, error page...)."""

    def __init__(self, message: str, status: int, page: str) -> None:
        super().__init__(message)
        self.status = status
        self.page = page


@dataclass
class Form:
    id: str
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)


class _PageParser(HTMLParser):
    """Collects forms (with hidden and prefilled inputs) and the text of a few ids."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.texts: dict[str, str] = {}
        self._capturing: list[tuple[str, str]] = []  # (element id, tag)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("id", ""), a.get("action", ""),
                                   a.get("method", "get").lower()))
        elif tag == "input" and self.forms and a.get("name"):
            if a.get("type", "text") not in ("submit", "button"):
                self.forms[-1].fields[a["name"]] = a.get("value", "")
        if a.get("id") in _TEXT_IDS:
            self._capturing.append((a["id"], tag))
            self.texts.setdefault(a["id"], "")

    def handle_endtag(self, tag: str) -> None:
        if self._capturing and self._capturing[-1][1] == tag:
            self._capturing.pop()

    def handle_data(self, data: str) -> None:
        for element_id, _ in self._capturing:
            self.texts[element_id] += data


def parse_page(html: str) -> _PageParser:
    parser = _PageParser()
    parser.feed(html)
    parser.close()
    return parser


def _form(page: _PageParser, form_id: str) -> Form | None:
    return next((f for f in page.forms if f.id == form_id), None)


async def complete_sign_in(
    session: aiohttp.ClientSession,
    authorize_url: str,
    username: str,
    password: str,
    ssl: ssl_module.SSLContext,
    *,
    mfa_number: str | None = None,
) -> str:
    """Sign in through the pages; return the redirect URL back to the client, unfollowed.

    GET ``authorize_url``; a 302 (SSO cookie, or an error sent to the client) is returned as
    is. Otherwise POST ``username``/``password`` with the hidden fields of ``#signin-form``;
    on the "Approve sign-in request" page POST the number shown in ``#mfa-number`` (or
    ``mfa_number``) with ``#mfa-form``. Raises ``SignInDriverError`` when a page ends the
    journey (wrong password, error page, denied MFA, ``form_post`` response mode).
    """
    url = URL(authorize_url)
    async with session.get(url, ssl=ssl, allow_redirects=False) as resp:
        location, page = await _step(resp)
    if location is not None:
        return location
    form = _form(page[0], "signin-form")
    if form is None:
        raise SignInDriverError("no sign-in form on the page", page[1], page[2])
    fields = {**form.fields, "username": username, "password": password}
    async with session.post(url.join(URL(form.action)), data=fields, ssl=ssl,
                            allow_redirects=False) as resp:
        location, page = await _step(resp)
    if location is not None:
        return location
    mfa_form = _form(page[0], "mfa-form")
    if mfa_form is None:
        message = page[0].texts.get("error") or page[0].texts.get("error-message") or "no redirect"
        raise SignInDriverError(f"sign-in failed: {message.strip()}", page[1], page[2])
    number = mfa_number if mfa_number is not None else page[0].texts.get("mfa-number", "").strip()
    async with session.post(url.join(URL(mfa_form.action)),
                            data={**mfa_form.fields, "number": number}, ssl=ssl,
                            allow_redirects=False) as resp:
        location, page = await _step(resp)
    if location is not None:
        return location
    message = page[0].texts.get("error-message") or "no redirect after MFA"
    raise SignInDriverError(f"MFA failed: {message.strip()}", page[1], page[2])


async def _step(resp: aiohttp.ClientResponse) -> tuple[str | None, tuple[_PageParser, int, str]]:
    """(absolute Location, or None and the parsed page with status and text)."""
    text = await resp.text()
    if resp.status in (301, 302, 303, 307, 308):
        location = urljoin(str(resp.url), resp.headers["Location"])
        return location, (parse_page(""), resp.status, "")
    page = parse_page(text)
    if _form(page, "form-post") is not None:
        raise SignInDriverError("response_mode=form_post is not supported by the driver",
                                resp.status, text)
    if resp.status != 200:
        message = page.texts.get("error-message", "").strip() or f"HTTP {resp.status}"
        raise SignInDriverError(message, resp.status, text)
    return None, (page, resp.status, text)
