"""Sessions persist in state_dir, encrypted: they survive kill -9; bad state files never crash."""

from __future__ import annotations

import os
import stat
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from agent.sessions.journal import JOURNAL_FILE, KEY_FILE
from agent.sessions.store import COOKIE_NAME
from agent.web import keys
from tests.harness import Stack, StackFactory
from tests.security.conftest import ADMIN, READER, session_works
from tests.security.subprocess_agent import AgentProcess


class TestKillNine:
    async def test_sessions_survive_sigkill(self, proc_stack: tuple[Stack, AgentProcess]
                                            ) -> None:
        """Sign in, kill -9 the agent, start it again: every live session still works."""
        stack, agent = proc_stack
        agent.start()
        await agent.ready()
        admin, reader, gone = stack.browser(), stack.browser(), stack.browser()
        for browser, user in ((admin, ADMIN), (reader, READER), (gone, READER)):
            assert 302 == (await browser.sign_in(user)).status
        csrf = (await (await gone.get("/auth/me")).json())["csrf_token"]
        assert 303 == (await gone.post("/auth/logout", data={"csrf_token": csrf})).status
        agent.kill9()
        agent.start()
        await agent.ready()
        me = await admin.get("/auth/me")
        assert (200, ADMIN) == (me.status, (await me.json())["upn"])
        check = await reader.get("/auth/check")
        assert (200, "read_only") == (check.status, check.headers["X-Auth-Request-Role"])
        assert not await session_works(gone)  # the sign-out was journalled too
        assert 302 == (await stack.browser().sign_in(ADMIN)).status

    async def test_state_at_rest(self, proc_stack: tuple[Stack, AgentProcess]) -> None:
        """Key file 0600, directory 0700, and the journal holds neither the UPN nor the cookie."""
        stack, agent = proc_stack
        agent.start()
        await agent.ready()
        browser = stack.browser()
        await browser.sign_in(ADMIN)
        state = Path(stack.settings.session.state_dir)
        assert 0o600 == stat.S_IMODE((state / KEY_FILE).stat().st_mode)
        assert 0o700 == stat.S_IMODE(state.stat().st_mode)
        journal = (state / JOURNAL_FILE).read_bytes()
        cookie = browser.cookie(COOKIE_NAME) or "-"
        for clear in (ADMIN.encode(), cookie.encode(), b"admin", b"given_name"):
            assert clear not in journal


def state_dir(stack: Stack) -> Path:
    return Path(stack.settings.session.state_dir)


async def restart(stack: Stack) -> list[MutableMapping[str, Any]]:
    await stack.stop_agent()
    with capture_logs() as logs:
        await stack.start_agent()
    return logs


class TestBadStateFiles:
    async def test_corrupted_journal_lines(self, stack: Stack) -> None:
        """Garbage lines and a torn last line: readable sessions kept, the garbage counted and
        the file set aside, the torn tail dropped with its own warning."""
        browser = stack.browser()
        await browser.sign_in(ADMIN)
        with (state_dir(stack) / JOURNAL_FILE).open("ab") as f:
            f.write(b"this is not a record\n\x00\xff\xfe garbage\nQUJD")
        logs = await restart(stack)
        assert await session_works(browser)
        unreadable = [e for e in logs if e["event"] == "session_state_unreadable"]
        assert 1 == len(unreadable) and 2 == unreadable[0]["unreadable_records"]
        assert any(e["event"] == "session_state_torn_tail" for e in logs)
        assert list(state_dir(stack).glob(f"{JOURNAL_FILE}.unreadable-*"))

    async def test_foreign_journal(self, stack: Stack) -> None:
        """A journal sealed with another key (another sensor's): set aside, no crash."""
        browser = stack.browser()
        await browser.sign_in(ADMIN)
        await stack.stop_agent()
        (state_dir(stack) / KEY_FILE).write_bytes(os.urandom(32))
        with capture_logs() as logs:
            await stack.start_agent()
        assert not await session_works(browser)
        assert ["session_state_unreadable"] == [
            e["event"] for e in logs if e["event"] == "session_state_unreadable"]
        assert list(state_dir(stack).glob(f"{JOURNAL_FILE}.unreadable-*"))
        again = stack.browser()
        assert 302 == (await again.sign_in(ADMIN)).status
        await restart(stack)
        assert await session_works(again)  # the new journal is usable

    @pytest.mark.parametrize("content", [b"", b"short", os.urandom(64)],
                             ids=["empty", "short", "too_long"])
    async def test_unusable_key_file(self, stack: Stack, content: bytes) -> None:
        """A key file of the wrong size is set aside with the journal; a new key is made."""
        await stack.browser().sign_in(ADMIN)
        await stack.stop_agent()
        (state_dir(stack) / KEY_FILE).write_bytes(content)
        with capture_logs() as logs:
            await stack.start_agent()
        assert any(e["event"] == "session_key_invalid" for e in logs)
        assert 32 == len((state_dir(stack) / KEY_FILE).read_bytes())
        assert 302 == (await stack.browser().sign_in(ADMIN)).status

    async def test_journal_of_json_garbage(self, stack: Stack) -> None:
        """Decryptable but nonsensical records (valid AES-GCM, wrong shape) are skipped."""
        browser = stack.browser()
        await browser.sign_in(ADMIN)
        assert stack.app is not None
        journal = stack.app[keys.SESSIONS].journal
        assert journal is not None
        journal.append([["p", 3], ["p", "00", "upn"], ["t", []], ["d"], [], ["x"], ["t", "zz", 1],
                        {"op": "put", "session": {"key": 3}}, {"op": "touch", "key": []},
                        {"op": "del"}, {"no": "op"}])
        logs = await restart(stack)
        assert await session_works(browser)
        assert any(e["event"] == "session_record_unusable" for e in logs)


class TestPerUserCap:
    async def test_oldest_session_ends_first_and_stays_ended(self, new_stack: StackFactory
                                                             ) -> None:
        """With max_sessions_per_user = 3, a fourth sign-in of the same user ends that user's
        oldest session (audited as session_revoked, reason max_sessions_per_user), other
        users' sessions are untouched, and a restart does not bring the ended one back."""
        stack = await new_stack(config=lambda data: data["session"].update(
            max_sessions_per_user=3))
        reader = stack.browser()
        assert 302 == (await reader.sign_in(READER)).status
        admins = [stack.browser() for _ in range(4)]
        with capture_logs() as logs:
            for browser in admins:
                assert 302 == (await browser.sign_in(ADMIN)).status
        assert [False, True, True, True] == [await session_works(b) for b in admins]
        assert await session_works(reader)
        revoked = [e for e in logs if e["event"] == "session_revoked"]
        assert [("max_sessions_per_user", ADMIN)] == [(e["reason"], e["upn"]) for e in revoked]
        await restart(stack)
        assert [False, True, True, True] == [await session_works(b) for b in admins]
        fifth = stack.browser()
        assert 302 == (await fifth.sign_in(ADMIN)).status
        assert [False, False, True, True] == [await session_works(b) for b in admins]
