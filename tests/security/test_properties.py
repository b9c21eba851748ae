"""Property-based: whatever arrives in callback parameters, cookies or ``next``, never a 5xx.

Each test builds one stack on its own event loop and lets hypothesis drive requests into it
(one stack per test function, not per example).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urljoin, urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from agent.sessions.store import COOKIE_NAME
from agent.web import keys
from tests.harness import Stack, make_stack, query
from tests.security.conftest import ADMIN

T = TypeVar("T")
BINDING = "__Host-sso_signin"
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
ALLOWED = {200, 302, 303, 400, 401, 403, 405, 429, 502}

text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=300)
ascii_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E,
                                   blacklist_characters=";,\"\\"), max_size=200)
param_names = st.sampled_from(["state", "code", "iss", "error", "error_description",
                               "session_state", "client_info", "next", "code_verifier", "x"])


def generous(data: dict[str, Any]) -> None:
    data["session"]["sign_ins_per_minute_per_client"] = 1_000_000


class Loop:
    """One event loop and one stack for a whole hypothesis run."""

    def __init__(self, tmp_path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.stack: Stack = self.run(make_stack(tmp_path, config=generous))
        self.browser = self.run(self._browser())
        self.real_state = ""
        self.examples = 0

    async def _browser(self) -> Any:
        return self.stack.browser()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.stack.close())
        self.loop.close()

    def status(self, path: str, method: str = "GET", **kwargs: Any) -> int:
        async def go() -> int:
            url = URL(self.stack.url + path, encoded=True)
            async with self.browser.http.request(method, url, allow_redirects=False,
                                                 **kwargs) as resp:
                await resp.read()
                status: int = resp.status
                return status
        return self.run(go())


def with_loop(tmp_path: Path, body: Callable[[Loop], None]) -> None:
    loop = Loop(tmp_path)
    try:
        body(loop)
    finally:
        loop.close()


def test_callback_parameters_never_5xx(tmp_path: Path) -> None:
    """Any callback query (real state or not, odd encodings, repeats): a 4xx/502 page."""

    def body(env: Loop) -> None:
        authorize = env.run(env.browser.start())
        env.real_state = query(authorize)["state"]

        @SETTINGS
        @given(pairs=st.lists(st.tuples(param_names | ascii_text, text), max_size=8),
               use_real_state=st.booleans(), raw_tail=st.binary(max_size=64))
        def prop(pairs: list[tuple[str, str]], use_real_state: bool, raw_tail: bytes) -> None:
            if use_real_state:
                pairs = [("state", env.real_state), *pairs]
            qs = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
            qs += "&" + "".join(f"%{b:02X}" for b in raw_tail)
            env.examples += 1
            status = env.status(f"/auth/sso/callback?{qs}")
            assert status in ALLOWED and status < 500, (status, qs[:200])

        prop()
        assert env.examples >= 100
        # The stack still works after all that.
        assert 302 == env.run(env.run(env._browser()).sign_in(ADMIN)).status

    with_loop(tmp_path, body)


def test_cookies_never_5xx(tmp_path: Path) -> None:
    """Any session or binding cookie value on any endpoint: never a 5xx, never a session."""

    def body(env: Loop) -> None:
        paths = [("GET", "/auth/check"), ("GET", "/auth/me"), ("GET", "/auth/sso/start"),
                 ("GET", "/auth/sso/callback?state=a&code=b"), ("POST", "/auth/logout"),
                 ("GET", "/"), ("GET", "/login")]

        @SETTINGS
        @given(session=ascii_text, binding=ascii_text, extra=ascii_text,
               target=st.sampled_from(paths))
        def prop(session: str, binding: str, extra: str, target: tuple[str, str]) -> None:
            env.examples += 1
            cookie = f"{COOKIE_NAME}={session}; {BINDING}={binding}; {extra}"
            method, path = target
            env.browser.http.cookie_jar.clear()
            status = env.status(path, method, headers={"Cookie": cookie})
            assert status in ALLOWED and status < 500, (status, cookie[:200], path)
            if path == "/auth/check":
                assert 401 == status

        prop()
        assert env.examples >= 100

    with_loop(tmp_path, body)


def test_next_never_5xx_and_never_leaves_the_site(tmp_path: Path) -> None:
    """Any next on /login and /auth/sso/start: no 5xx; the stored target stays on this site."""

    def body(env: Loop) -> None:
        assert env.stack.app is not None
        pending = env.stack.app[keys.SIGN_IN].pending
        origin = urlsplit(env.stack.url).netloc
        prefixes = st.sampled_from(["", "/", "//", "/\\", "\\", "http:", "https://", "%2F",
                                    "/%2f", "/%5c", "javascript:", "\t/", "/\t/"])

        @SETTINGS
        @given(prefix=prefixes, rest=text)
        def prop(prefix: str, rest: str) -> None:
            env.examples += 1
            raw = prefix + rest
            encoded = quote(raw, safe="")
            assert env.status(f"/login?next={encoded}") == 200
            env.browser.http.cookie_jar.clear()
            status = env.status(f"/auth/sso/start?next={encoded}")
            assert 302 == status
            target = next(reversed(pending._items.values())).next_path  # noqa: SLF001
            resolved = urlsplit(urljoin(env.stack.url + "/a/b", target))
            assert origin == resolved.netloc, (raw, target)
            assert target.startswith("/") and not target.startswith("//")
            assert not re.search(r"[\\\x00-\x20\x7f]", target), target

        prop()
        assert env.examples >= 100

    with_loop(tmp_path, body)
