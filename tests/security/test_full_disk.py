"""Session state on a real, small file system that fills up: a tmpfs each test mounts.

The agent runs as its own process (``kill -9`` is the restart: nothing gets a graceful flush),
the sign-ins go through the local identity provider, and the file system is filled to its
last byte by a filler file the test removes to "free space".
"""

from __future__ import annotations

import asyncio
import errno
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.sessions.journal import JOURNAL_FILE
from agent.sessions.store import COOKIE_NAME
from tests.harness import Browser, Stack, StackFactory
from tests.needs import unavailable
from tests.security.conftest import ADMIN, READER, plant_cookie, session_works
from tests.security.subprocess_agent import AgentProcess


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for this test (needs root or CAP_SYS_ADMIN)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    try:
        done = subprocess.run(  # noqa: S603 - fixed arguments
            ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount)],  # noqa: S607
            capture_output=True, text=True, check=False)
    except FileNotFoundError:
        unavailable("no mount command: cannot mount a small tmpfs for the full-disk tests")
    if done.returncode != 0:
        unavailable(f"cannot mount a tmpfs ({done.stderr.strip()}): the full-disk tests "
                     "need root or CAP_SYS_ADMIN")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)  # noqa: S603, S607


def fill(mount: Path) -> Path:
    """Fill the file system to its last byte; returns the filler (unlink it to free space)."""
    n = len(list(mount.glob("filler-*")))
    filler = mount / f"filler-{n}"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 16, 4096, 1):
            try:
                while f.write(b"\0" * size):
                    pass
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return filler


def free(mount: Path) -> None:
    for filler in mount.glob("filler-*"):
        filler.unlink()


@pytest.fixture
async def disk(tmp_path: Path, small_fs: Path, new_stack: StackFactory
               ) -> AsyncIterator[tuple[Stack, AgentProcess, Path]]:
    stack = await new_stack(start=False)
    agent = AgentProcess(stack, tmp_path, session={"state_dir": str(small_fs / "state"),
                                                   "max_sessions_per_user": 100,
                                                   "sign_ins_per_minute_per_client": 1000})
    try:
        yield stack, agent, small_fs
    finally:
        await agent.stop()


async def up(stack: Stack, agent: AgentProcess) -> None:
    """Wait until the agent answers /healthz and has the tenant's keys (it may still not be
    ready: that is the point)."""
    async with aiohttp.ClientSession() as http:
        for _ in range(400):
            assert agent.proc is not None and agent.proc.poll() is None, agent.output()[-3000:]
            try:
                async with http.get(f"{stack.url}/healthz") as resp:
                    if resp.status == 200 and events(agent, "identity_provider_ready", True):
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(agent.output()[-3000:])


async def readyz(stack: Stack) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{stack.url}/readyz") as resp:
        return resp.status, await resp.json()


async def eventually_ready(stack: Stack) -> None:
    """The flush loop notices freed space by itself (it probes every few seconds)."""
    for _ in range(300):
        if (await readyz(stack))[0] == 200:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(await readyz(stack))


def events(agent: AgentProcess, name: str, this_run: bool = False) -> list[dict[str, Any]]:
    """The agent's log events called ``name``: of every run, or of the latest only."""
    found = []
    out = agent.log_dir / f"agent-{agent.runs}.out"
    text = out.read_text(errors="replace") if this_run and out.exists() else agent.output()
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == name:
            found.append(event)
    return found


async def sign_out(browser: Browser) -> aiohttp.ClientResponse:
    csrf = (await (await browser.get("/auth/me")).json())["csrf_token"]
    return await browser.post("/auth/logout", data={"csrf_token": csrf})


async def still_valid(stack: Stack, cookie: str) -> bool:
    """Does the server still honour this cookie value (whatever the browser did with it)?"""
    browser = stack.browser()
    plant_cookie(stack, browser, cookie)
    return await session_works(browser)


async def signed_in(stack: Stack, user: str = ADMIN) -> tuple[Browser, str]:
    browser = stack.browser()
    assert 302 == (await browser.sign_in(user)).status
    cookie = browser.cookie(COOKIE_NAME)
    assert cookie
    return browser, cookie


async def sign_in_until_refused(stack: Stack) -> tuple[aiohttp.ClientResponse, list[str]]:
    """On a full disk, sign in until a sign-in is refused (the journal's last page has some
    slack first); returns the refusal and the cookies of the sign-ins acknowledged before."""
    acknowledged: list[str] = []
    for _ in range(40):  # a record is ~700 bytes: a page's slack runs out quickly
        browser = stack.browser()
        answer = await browser.sign_in(ADMIN)
        if answer.status != 302:
            return answer, acknowledged
        acknowledged.append(browser.cookie(COOKIE_NAME) or "")
    raise AssertionError("the full disk never refused a sign-in")


class TestFullDisk:
    async def test_sign_out_on_a_full_disk_stays_signed_out(
            self, disk: tuple[Stack, AgentProcess, Path]) -> None:
        """Sign-outs on a full disk are recorded before they take effect (the last ones in
        the space kept for them); new sign-ins are refused with a 503 page and an audit
        event, and /readyz says why; after kill -9 and freed space no signed-out session comes
        back, and the sessions that were not signed out are all there."""
        stack, agent, fs = disk
        agent.start()
        await agent.ready()
        staying = [(await signed_in(stack, READER))[1]]
        leaving = [await signed_in(stack, ADMIN) for _ in range(30)]
        fill(fs)
        refused, acknowledged = await sign_in_until_refused(stack)
        staying += acknowledged
        assert 503 == refused.status and "disk is full" in await refused.text()
        status, body = await readyz(stack)
        assert 503 == status and "session state cannot be written" in body["reason"]
        signed_out = []
        for browser, cookie in leaving:  # ~170 bytes each: the page's slack, then the reserve
            assert 303 == (await sign_out(browser)).status
            signed_out.append(cookie)
            assert not await still_valid(stack, cookie)
            if events(agent, "session_state_reserve_used"):
                break
        else:
            raise AssertionError("the sign-outs never needed the reserve")
        agent.kill9()
        free(fs)
        agent.start()
        await agent.ready()
        for cookie in signed_out:
            assert not await still_valid(stack, cookie)
        for cookie in staying:
            assert await still_valid(stack, cookie)
        assert ["state_unwritable"] == [e["reason"] for e in events(agent, "sso_login_refused")]

    async def test_sign_out_that_cannot_be_recorded_is_refused_not_faked(
            self, disk: tuple[Stack, AgentProcess, Path]) -> None:
        """With the space kept for sign-outs used up too, a sign-out answers 503 and the
        session keeps working (it was never ended, so a restart cannot resurrect it); once
        space is free, signing out works."""
        stack, agent, fs = disk
        agent.start()
        await agent.ready()
        sessions = [await signed_in(stack, ADMIN) for _ in range(60)]
        fill(fs)
        signed_out, refilled = [], False
        for browser, cookie in sessions:
            answer = await sign_out(browser)
            if answer.status != 303:
                assert 503 == answer.status
                assert "Sign-out could not be recorded" in await answer.text()
                assert await session_works(browser)
                kept = cookie
                break
            signed_out.append(cookie)
            if not refilled and events(agent, "session_state_reserve_used"):
                fill(fs)  # and the space the reserve gave back is taken as well
                refilled = True
        else:
            raise AssertionError("every sign-out was recorded on a full disk")
        assert refilled
        assert ["state_unwritable"] == [e["reason"] for e in events(agent, "sso_logout_refused")]
        agent.kill9()
        free(fs)
        agent.start()
        await agent.ready()
        for cookie in signed_out:
            assert not await still_valid(stack, cookie)
        assert await still_valid(stack, kept)
        browser = stack.browser()
        plant_cookie(stack, browser, kept)
        assert 303 == (await sign_out(browser)).status
        assert not await still_valid(stack, kept)

    async def test_no_acknowledged_session_lost_to_a_short_write(
            self, disk: tuple[Stack, AgentProcess, Path]) -> None:
        """Sign in until the disk runs out in the middle of a record: that write is cut
        short and rolled back (503); every sign-in that got its 302 survives kill -9, and the
        journal holds no torn record that could swallow the ones written after it."""
        stack, agent, fs = disk
        agent.start()
        await agent.ready()
        acknowledged = [(await signed_in(stack, ADMIN))[1]]
        fill(fs)
        refused, more = await sign_in_until_refused(stack)
        assert 503 == refused.status
        acknowledged += more
        free(fs)
        await eventually_ready(stack)
        acknowledged.append((await signed_in(stack, READER))[1])
        agent.kill9()
        agent.start()
        await agent.ready()
        for cookie in acknowledged:
            assert await still_valid(stack, cookie)
        assert not events(agent, "session_state_torn_tail")
        assert not events(agent, "session_state_unreadable")

    async def test_start_on_a_full_disk(self, disk: tuple[Stack, AgentProcess, Path]) -> None:
        """Start-up on a full disk with a journal that wants compacting (an unreadable line):
        the agent starts, restores and serves its sessions, refuses new ones and says so in
        /readyz; once space is free it is ready again by itself."""
        stack, agent, fs = disk
        agent.start()
        await agent.ready()
        browser, _ = await signed_in(stack, ADMIN)
        await agent.stop()
        with (fs / "state" / JOURNAL_FILE).open("ab") as journal:
            journal.write(b"not a record\n")
        fill(fs)
        agent.start()
        await up(stack, agent)
        assert await session_works(browser)
        status, body = await readyz(stack)
        assert 503 == status and "session state cannot be written" in body["reason"]
        assert 503 == (await stack.browser().sign_in(READER)).status
        free(fs)
        await eventually_ready(stack)
        assert 302 == (await stack.browser().sign_in(READER)).status
        assert await session_works(browser)

    async def test_first_start_on_a_full_disk(self, disk: tuple[Stack, AgentProcess, Path]
                                              ) -> None:
        """No key yet and no space to write one: the agent serves, refuses sign-ins with 503,
        and picks up once space is free."""
        stack, agent, fs = disk
        fill(fs)
        agent.start()
        await up(stack, agent)
        status, body = await readyz(stack)
        assert 503 == status and "session state cannot be written" in body["reason"]
        assert 503 == (await stack.browser().sign_in(ADMIN)).status
        free(fs)
        await eventually_ready(stack)
        browser, cookie = await signed_in(stack, ADMIN)
        agent.kill9()
        agent.start()
        await agent.ready()
        assert await still_valid(stack, cookie)
