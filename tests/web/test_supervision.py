"""Supervised background tasks over real HTTP: a failing task is said once, restarted, shown in
/readyz, and never costs the final journal flush or the other sessions' re-validation.

Tasks are made to fail with the supervisor's test hook (``Supervisor.fail``) or the
re-validation's (``Revalidator.before_refresh``): the agent's own code runs unchanged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from agent.devidp.refresh import disable_user
from agent.lifecycle import Service
from agent.logging import exception_summary
from agent.sessions.record import Session
from agent.settings import settings_from_mapping
from agent.supervisor import Supervisor
from agent.systemd import Notifier
from agent.web import keys
from tests.deploy.support import NotifySocket
from tests.harness import Browser, Stack, agent_config, free_port, make_stack

SECRET_TEXT = "eyJ-looks-like-token-bytes"  # in an exception's message: never logged






async def eventually(predicate: Callable[[], Awaitable[bool]], what: str,
                     timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.05)


async def signed_in(stack: Stack, username: str) -> Browser:
    browser = stack.browser()
    resp = await browser.sign_in(username)
    assert 302 == resp.status, await resp.text()
    assert 200 == (await browser.get("/auth/check")).status
    return browser


def supervisor(stack: Stack) -> Supervisor:
    assert stack.app is not None
    return stack.app[keys.SUPERVISOR]


async def interval_later(stack: Stack, seconds: float = 10.0) -> None:
    stack.clock.advance(seconds)
    assert stack.app is not None
    stack.app[keys.REVALIDATOR].wake()


async def readyz(browser: Browser) -> tuple[int, dict[str, Any]]:
    resp = await browser.get("/readyz")
    return resp.status, await resp.json()


async def fail_when_running(sup: Supervisor, name: str, exc: BaseException) -> None:
    """Make task ``name`` raise ``exc`` as soon as it runs (after a restart's delay)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            sup.fail(name, exc)
            return
        except RuntimeError:
            assert time.monotonic() < deadline, f"{name} was never restarted"
            await asyncio.sleep(0.05)


def as_written(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    """The events as the agent's processors write them (an exception: class and frames)."""
    return [exception_summary(None, "", dict(e)) for e in logs]


def events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == name]


class TestFailingTask:
    async def test_logged_once_restarted_and_shown_in_readyz(self, rstack: Stack) -> None:
        """Re-validation raises twice in a row: one task_failed line (task, class, no message
        text), two failures counted, /readyz degraded names it, and the restarted task still
        ends a disabled user's session within one interval."""
        browser = await signed_in(rstack, "analyst@contoso.example")
        sup = supervisor(rstack)
        assert 0 == sup.failures()["revalidation"]
        with capture_logs() as logs:
            sup.fail("revalidation", RuntimeError(SECRET_TEXT))
            await fail_when_running(sup, "revalidation", KeyError(SECRET_TEXT))

            async def failed_twice() -> bool:
                return sup.failures()["revalidation"] == 2

            await eventually(failed_twice, "both failures are counted")
            status, body = await readyz(browser)
            assert 200 == status
            assert "KeyError" in body["degraded"]["task:revalidation"]
            disable_user(rstack.idp, "analyst@contoso.example")
            await interval_later(rstack)

            async def out() -> bool:
                return (await browser.get("/auth/check")).status == 401

            await eventually(out, "the restarted re-validation ends the disabled session")
        failed = events(logs, "task_failed")
        assert [("revalidation", "RuntimeError")] == [(e["task"], e["error"]) for e in failed]
        assert 1.0 == failed[0]["restart_in"]
        assert SECRET_TEXT not in repr(as_written(logs))
        assert 2 == sup.failures()["revalidation"]
        assert "KeyError" == sup.failing()["revalidation"]

    async def test_shutdown_after_a_failure_still_flushes_the_journal(
            self, tmp_path: Path) -> None:
        """The journal flush task failed; at shutdown nothing escapes and the final flush
        still journals the idle timer's last refresh (the restored session lives on)."""
        stack = await make_stack(tmp_path)
        try:
            browser = await signed_in(stack, "reader@contoso.example")
            supervisor(stack).fail("journal_flush", RuntimeError(SECRET_TEXT))
            stack.clock.advance(20 * 60)
            assert 200 == (await browser.get("/auth/check")).status  # idle timer refreshed
            with capture_logs() as logs:
                await stack.stop_agent()  # raises nothing
            assert [] == [e for e in logs if e.get("log_level") == "error"
                          and e["event"] != "task_failed"]
            await stack.start_agent()
            stack.clock.advance(15 * 60)  # 35 min after sign-in, 15 after the last request
            assert 200 == (await browser.get("/auth/check")).status
        finally:
            await stack.close()


class TestRevalidationPass:
    async def test_one_session_raising_does_not_stop_the_others(self, rstack: Stack) -> None:
        """One session's re-validation raises on every pass: the others are re-validated in
        that pass and the next (a user disabled in between is out); the failure is one
        task_failed line and /readyz names it."""
        failing = await signed_in(rstack, "admin@contoso.example")
        reader = await signed_in(rstack, "reader@contoso.example")
        analyst = await signed_in(rstack, "analyst@contoso.example")
        assert rstack.app is not None

        def raise_for_admin(session: Session) -> None:
            if session.upn == "admin@contoso.example":
                raise ZeroDivisionError(SECRET_TEXT)

        rstack.app[keys.REVALIDATOR].before_refresh = raise_for_admin
        with capture_logs() as logs:
            disable_user(rstack.idp, "reader@contoso.example")
            await interval_later(rstack)

            async def reader_out() -> bool:
                return (await reader.get("/auth/check")).status == 401

            await eventually(reader_out, "the disabled reader is out in the failing pass")
            disable_user(rstack.idp, "analyst@contoso.example")
            await interval_later(rstack)

            async def analyst_out() -> bool:
                return (await analyst.get("/auth/check")).status == 401

            await eventually(analyst_out, "the next pass still runs")
        assert 200 == (await failing.get("/auth/check")).status  # kept, retried later
        failed = events(logs, "task_failed")
        assert [("revalidation", "ZeroDivisionError")] == [(e["task"], e["error"])
                                                           for e in failed]
        assert "restart_in" not in failed[0]  # the task itself never stopped
        assert SECRET_TEXT not in repr(as_written(logs))
        _, body = await readyz(failing)
        assert "ZeroDivisionError" in body["degraded"]["task:revalidation"]


class TestWatchdog:
    async def test_pings_only_while_the_tasks_are_alive(self, tmp_path: Path) -> None:
        """WATCHDOG=1 goes out while the application's tasks run; once its supervisor has
        stopped (its background work gone), the pings stop."""
        stack = await make_stack(tmp_path, start=False)
        notify = NotifySocket()
        port = free_port()
        data = agent_config(stack.idp, port, tmp_path / "state")
        data["server"]["admin_socket"] = str(tmp_path / "admin.sock")
        service = Service(settings_from_mapping(data),
                          notifier=Notifier(notify.path, watchdog_usec=200_000))
        try:
            await service.start()
            assert {"WATCHDOG": "1"} == await notify.wait_for("WATCHDOG", timeout=3)
            assert service.app is not None
            await service.app[keys.SUPERVISOR].stop()
            await asyncio.sleep(0.2)
            while True:  # drop what was sent before
                try:
                    await notify.receive(timeout=0.01)
                except TimeoutError:
                    break
            with pytest.raises(TimeoutError):  # six intervals without a ping
                await notify.wait_for("WATCHDOG", timeout=0.6)
            async with aiohttp.ClientSession() as http, \
                    http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert 200 == resp.status  # still serving: only the watchdog went quiet
        finally:
            await service.stop()
            notify.close()
            await stack.close()
