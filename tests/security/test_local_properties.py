"""Property-based: whatever arrives in the local sign-in form (fields, encodings, cookies,
bodies), never a 5xx, and a session only for the right name and password with a valid token.

One stack (provider down, one local admin) per test function, as in test_properties.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.sessions.store import COOKIE_NAME
from tests.harness import Browser, Stack
from tests.local.helpers import (
    CSRF_COOKIE,
    LOCAL_ADMIN,
    LOCAL_PASSWORD,
    csrf_token,
    local_stack,
    sign_in_page,
)

T = TypeVar("T")
SETTINGS = settings(max_examples=120, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
ALLOWED = {303, 400, 401, 403, 413, 415, 429}
FIELDS = ["username", "password", "csrf_token", "next", "x"]

text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=300)
ascii_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E,
                                   blacklist_characters=";,\"\\"), max_size=120)


class Env:
    def __init__(self, tmp_path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.stack: Stack = self.run(local_stack(tmp_path))
        self.browser: Browser = self.run(self._browser())
        self.token = csrf_token(self.run(sign_in_page(self.browser))) or ""
        self.csrf_cookie = f"{CSRF_COOKIE}={self.browser.cookie(CSRF_COOKIE)}"
        self.examples = 0

    async def _browser(self) -> Browser:
        return self.stack.browser()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def post(self, body: bytes, content_type: str, cookie: str | None = None
             ) -> tuple[int, bool]:
        """(status, whether the answer set a session cookie)."""
        async def go() -> tuple[int, bool]:
            headers = {"Content-Type": content_type}
            self.browser.http.cookie_jar.clear()  # only the cookie given here
            if cookie is not None:
                headers["Cookie"] = cookie
            async with self.browser.http.post(self.stack.url + "/auth/local/sign-in",
                                              data=body, headers=headers,
                                              allow_redirects=False) as resp:
                await resp.read()
                return resp.status, COOKIE_NAME in resp.cookies
        return self.run(go())

    def close(self) -> None:
        self.run(self.stack.close())
        self.loop.close()


@pytest.mark.slow
@pytest.mark.timeout(600)  # each sign-in with the real token costs a real scrypt hash
def test_form_fields_never_5xx_and_sign_in_only_with_the_right_password(
        tmp_path: Path) -> None:
    """Any fields (repeated, odd Unicode, huge), the real token or not: a 303 only for the
    admin's right password with the real token, else a 4xx."""
    env = Env(tmp_path)
    try:
        @SETTINGS
        @given(pairs=st.lists(st.tuples(st.sampled_from(FIELDS) | ascii_text, text),
                              max_size=6),
               real_token=st.booleans(), real_account=st.booleans())
        def prop(pairs: list[tuple[str, str]], real_token: bool, real_account: bool) -> None:
            env.examples += 1
            if real_account:  # unthrottled; the others mostly meet the per-client delay
                env.stack.clock.advance(3600)
            if real_token:
                pairs = [("csrf_token", env.token), *pairs]
            if real_account:
                pairs = [("username", LOCAL_ADMIN), ("password", LOCAL_PASSWORD), *pairs]
            body = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
            status, session = env.post(body.encode(), "application/x-www-form-urlencoded",
                                       env.csrf_cookie)
            assert status in ALLOWED, (status, body[:200])
            names = [k for k, _ in pairs]
            clean = all(names.count(f) == 1 for f in ("username", "password", "csrf_token"))
            expected = real_token and real_account and clean  # a repeated next is ignored
            assert (expected, expected) == (303 == status, session), (status, body[:200])

        prop()
        assert env.examples >= 100
    finally:
        env.close()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_raw_bodies_content_types_and_cookies_never_5xx(tmp_path: Path) -> None:
    """Undecodable bytes, unknown charsets, multipart garbage, odd CSRF cookies: a 4xx."""
    env = Env(tmp_path)
    try:
        @SETTINGS
        @given(body=st.binary(max_size=600),
               content_type=st.sampled_from([
                   "application/x-www-form-urlencoded",
                   "application/x-www-form-urlencoded; charset=utf-16",
                   "application/x-www-form-urlencoded; charset=no-such-charset",
                   "multipart/form-data; boundary=x", "multipart/form-data",
                   "text/plain", "application/json"]),
               cookie=st.none() | ascii_text)
        def prop(body: bytes, content_type: str, cookie: str | None) -> None:
            env.examples += 1
            env.stack.clock.advance(3600)
            jar = None if cookie is None else f"{CSRF_COOKIE}={cookie}"
            status, session = env.post(body, content_type, jar)
            assert status in ALLOWED and not session, (status, body[:100], content_type)

        prop()
        assert env.examples >= 100
    finally:
        env.close()
