"""The demo: the local provider and the agent together, walkable without certificate warnings."""

from __future__ import annotations

import asyncio
import contextlib
import re

import aiohttp
import pytest

from agent.demo import serve_demo
from agent.devidp import DEMO_PASSWORD
from tests.devidp_driver import complete_sign_in
from tests.harness import free_port
from tests.local.helpers import csrf_token, has_form


class TestDemo:
    async def test_demo_sign_in_over_plain_loopback_pages(
            self, capsys: pytest.CaptureFixture[str]) -> None:
        """The demo prints the URL and users; a browser meets only http://127.0.0.1 pages."""
        port = free_port()
        ready, stop = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(serve_demo(port, ready=ready, stop=stop))
        try:
            await asyncio.wait_for(ready.wait(), 10)
            out = capsys.readouterr().out
            assert f"http://127.0.0.1:{port}/login" in out
            for user in ("admin@contoso.example", "mfa@contoso.example",
                         "nogroup@contoso.example", "overage@contoso.example"):
                assert user in out
            base = f"http://127.0.0.1:{port}"
            jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[base])
            async with aiohttp.ClientSession(cookie_jar=jar) as http:
                for _ in range(100):  # discovery and keys load in the background
                    async with http.get(f"{base}/readyz") as resp:
                        if resp.status == 200:
                            break
                    await asyncio.sleep(0.05)
                async with http.get(f"{base}/auth/sso/start", allow_redirects=False) as resp:
                    authorize = resp.headers["Location"]
                assert authorize.startswith("http://127.0.0.1:")
                back = await complete_sign_in(http, authorize, "admin@contoso.example",
                                              DEMO_PASSWORD, None)  # type: ignore[arg-type]
                async with http.get(back, allow_redirects=False) as resp:
                    assert (302, "/") == (resp.status, resp.headers["Location"])
                async with http.get(f"{base}/") as resp:
                    page = await resp.text()
                assert "Admin" in page and "admin@contoso.example" in page
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)


class TestDemoBreakGlass:
    async def test_switching_the_provider_off_shows_the_form_and_the_printed_account_works(
            self, capsys: pytest.CaptureFixture[str]) -> None:
        """The demo prints a break-glass account; switched off, the sign-in page offers it
        and it signs in; switched on again, the form goes and the session stays."""
        port = free_port()
        ready, stop = asyncio.Event(), asyncio.Event()
        switches: asyncio.Queue[None] = asyncio.Queue()
        task = asyncio.create_task(serve_demo(port, ready=ready, stop=stop, switches=switches))
        try:
            await asyncio.wait_for(ready.wait(), 20)
            out = capsys.readouterr().out
            found = re.search(r"user name (\S+), password (\S+)", out)
            assert found is not None and "Press Enter" in out
            name, password = found.groups()
            base = f"http://127.0.0.1:{port}"
            jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[base])
            async with aiohttp.ClientSession(cookie_jar=jar) as http:
                async def page() -> str:
                    async with http.get(f"{base}/login") as resp:
                        return await resp.text()

                async def until(form: bool) -> str:
                    for _ in range(300):  # the demo probes Entra ID every 2 s
                        text = await page()
                        if has_form(text) is form:
                            return text
                        await asyncio.sleep(0.05)
                    raise AssertionError(f"form shown should be {form}")

                await until(False)
                switches.put_nowait(None)
                text = await until(True)
                async with http.post(f"{base}/auth/local/sign-in", allow_redirects=False,
                                     data={"username": name, "password": password,
                                           "csrf_token": csrf_token(text)}) as resp:
                    assert 303 == resp.status
                switches.put_nowait(None)
                await until(False)
                async with http.get(f"{base}/auth/me") as resp:
                    assert (200, name) == (resp.status, (await resp.json())["upn"])
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)


class TestDemoAppRoles:
    async def test_a_user_gets_the_role_from_an_app_role(
            self, capsys: pytest.CaptureFixture[str]) -> None:
        """demo --roles app_roles: the printed list says roles come from app roles and names
        the user assigned one directly; that user (in no mapped group) signs in as Security
        analyst through the roles claim."""
        port = free_port()
        ready, stop = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(serve_demo(port, ready=ready, stop=stop,
                                              roles_source="app_roles"))
        try:
            await asyncio.wait_for(ready.wait(), 20)
            out = capsys.readouterr().out
            assert 'Roles from app roles ([roles] source = "app_roles")' in out
            line = next(ln for ln in out.splitlines() if "approle@contoso.example" in ln)
            assert "security_analyst" in line
            assert "app role Sensor.SecurityAnalyst assigned directly" in line
            assert "no mapped app role: refused" in next(
                ln for ln in out.splitlines() if "nogroup@contoso.example" in ln)
            base = f"http://127.0.0.1:{port}"
            jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[base])
            async with aiohttp.ClientSession(cookie_jar=jar) as http:
                for _ in range(200):  # discovery and keys load in the background
                    async with http.get(f"{base}/readyz") as resp:
                        if resp.status == 200:
                            break
                    await asyncio.sleep(0.05)
                async with http.get(f"{base}/auth/sso/start", allow_redirects=False) as resp:
                    authorize = resp.headers["Location"]
                back = await complete_sign_in(http, authorize, "approle@contoso.example",
                                              DEMO_PASSWORD, None)  # type: ignore[arg-type]
                async with http.get(back, allow_redirects=False) as resp:
                    assert 302 == resp.status
                async with http.get(f"{base}/auth/me") as resp:
                    me = await resp.json()
                assert ("security_analyst", ["Sensor.SecurityAnalyst"]) == (
                    me["role"], me["groups"])
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)

    def test_groups_demo_points_to_app_roles(self) -> None:
        """In the default demo the app-role-only user is listed as refused, with the way to
        see app roles."""
        from agent.demo import DEMO_GROUPS, describe
        from agent.devidp import demo_users

        user = next(u for u in demo_users(DEMO_GROUPS) if u.username.startswith("approle@"))
        line = describe(user, DEMO_GROUPS)
        assert "no mapped group: refused" in line and "--roles app_roles" in line


def test_demo_on_a_busy_port_names_it_and_the_option() -> None:
    """``demo --port N`` with N taken: exit 1, a sentence naming the port and ``--port``, no
    traceback."""
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "agent", "demo", "--port", str(port)],  # noqa: S603 - our own interpreter
                                cwd=Path(__file__).resolve().parent.parent, text=True,
                                capture_output=True, timeout=60, check=False,
                                stdin=subprocess.DEVNULL)
    assert 1 == result.returncode
    assert "Traceback" not in result.stderr + result.stdout
    assert f"demo: port {port} on 127.0.0.1 is in use: choose another with --port, e.g. " \
           f"sensor-sso-agent demo --port {port + 1}" in result.stderr
