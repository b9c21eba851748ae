"""The local sign-in's lockout through real HTTP: races, memory, and the break-glass policy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from agent.web import keys
from tests.harness import Browser, Stack
from tests.local.helpers import (
    LOCAL_ADMIN,
    csrf_token,
    local_sign_in,
    local_stack,
    sign_in_page,
)

ATTACKER, OPERATOR, OTHER = "10.0.0.66", "10.0.0.7", "10.0.0.99"


@pytest.fixture
async def down(tmp_path: Path) -> AsyncIterator[Stack]:
    """An accounts file with one admin; the provider down since before the agent started."""
    stack = await local_stack(tmp_path)
    try:
        yield stack
    finally:
        await stack.close()


async def client(stack: Stack, address: str) -> tuple[Browser, str]:
    """A browser behind the trusted proxy at ``address``, and its sign-in form's token."""
    browser = stack.browser()
    browser.http.headers["X-Forwarded-For"] = address
    return browser, csrf_token(await sign_in_page(browser)) or ""


async def guesses(stack: Stack, address: str, count: int, name: str = LOCAL_ADMIN
                  ) -> list[int]:
    browser, token = await client(stack, address)
    return [(await local_sign_in(browser, name, f"guess-{i}-wrong", token=token)).status
            for i in range(count)]



def agent_app(stack: Stack) -> web.Application:
    """The running agent's application (the stack started it)."""
    assert stack.app is not None
    return stack.app

class TestTheRace:
    async def test_concurrent_guesses_with_one_failure_left_get_one_check(
            self, down: Stack) -> None:
        """Five failures (the free ones), then 16 wrong passwords at once from one client:
        one is checked (401), the other 15 are refused before any hashing (429)."""
        assert [401] * 5 == await guesses(down, ATTACKER, 5)
        browser, token = await client(down, ATTACKER)
        answers = await asyncio.gather(*(
            local_sign_in(browser, LOCAL_ADMIN, f"race-{i}-wrong", token=token)
            for i in range(16)))
        assert [401] + [429] * 15 == sorted(r.status for r in answers)


class TestMemory:
    async def test_failures_past_the_cap_are_kept_until_a_success(self, down: Stack) -> None:
        """Locked, then a quiet day: the next wrong guess locks again at once; the five
        free guesses do not come back."""
        assert [401] * 6 == await guesses(down, ATTACKER, 6)
        down.clock.advance(24 * 3600)
        assert [401, 429] == await guesses(down, ATTACKER, 2)

    async def test_a_success_forgets_the_account_failures(self, down: Stack) -> None:
        """After a successful sign-in the account has its free failures back."""
        assert [401] * 6 == await guesses(down, ATTACKER, 6)
        down.clock.advance(3)
        browser, token = await client(down, ATTACKER)
        assert 303 == (await local_sign_in(browser, token=token)).status
        assert [401] * 5 == await guesses(down, OTHER, 5)

    async def test_name_spraying_cannot_evict_a_locked_account(self, down: Stack) -> None:
        """A flood of made-up names fills the table of names (shrunk here to 4 entries so
        the flood stays short), never the locked account's counter."""
        agent_app(down)[keys.LOCAL].lockout.names.capacity = 4
        assert [401] * 6 == await guesses(down, ATTACKER, 6)
        for i in range(6):
            assert [401] == await guesses(down, f"10.0.1.{i}", 1, name=f"made-up-{i}")
        assert [429] == await guesses(down, ATTACKER, 1)


class TestBreakGlass:
    async def test_the_operator_signs_in_while_an_attacker_keeps_the_account_locked(
            self, down: Stack) -> None:
        """The attacker locks breakglass and keeps at it; the operator's right password from
        a client with no failures of its own is accepted after the short fixed delay."""
        assert [401] * 6 == await guesses(down, ATTACKER, 6)
        assert [429] == await guesses(down, ATTACKER, 1)
        browser, token = await client(down, OPERATOR)
        started = time.monotonic()
        answer = await local_sign_in(browser, token=token)
        assert 303 == answer.status
        assert time.monotonic() - started >= agent_app(down)[keys.LOCAL].lockout.locked_check_delay
        assert 200 == (await browser.get("/auth/check")).status

    async def test_the_attacker_gets_one_guess_per_clean_client_and_no_more(
            self, down: Stack) -> None:
        """While the account is locked, the attacker's own client is refused even with the
        right password; a fresh client's wrong guess is checked once, then that client is
        refused too, and the account stays locked."""
        assert [401] * 6 == await guesses(down, ATTACKER, 6)
        browser, token = await client(down, ATTACKER)
        assert 429 == (await local_sign_in(browser, token=token)).status
        assert [401, 429, 429] == await guesses(down, OTHER, 3)
        operator, token = await client(down, OPERATOR)
        assert 303 == (await local_sign_in(operator, token=token)).status

    async def test_clean_clients_are_checked_one_at_a_time(self, down: Stack) -> None:
        """Four fresh clients guessing at once against the locked account: each check waits
        the fixed delay in turn, so their guesses cost four delays, not one."""
        assert [401] * 6 == await guesses(down, ATTACKER, 6)
        delay = agent_app(down)[keys.LOCAL].lockout.locked_check_delay
        clients = [await client(down, f"10.0.2.{i}") for i in range(4)]
        started = time.monotonic()
        answers = await asyncio.gather(*(local_sign_in(b, LOCAL_ADMIN, "wrong-guess-xx",
                                                       token=t) for b, t in clients))
        assert [401] * 4 == [r.status for r in answers]
        assert time.monotonic() - started >= 4 * delay

    async def test_an_unknown_name_answers_like_a_locked_account(self, down: Stack) -> None:
        """The same lockout, the same answers for a name that is no account (the policy does
        not tell which names exist)."""
        known = await guesses(down, ATTACKER, 7)
        unknown = await guesses(down, OTHER, 7, name="nobody-here")
        assert known == unknown == [401] * 6 + [429]
        fresh_known = await guesses(down, "10.0.3.1", 1)
        fresh_unknown = await guesses(down, "10.0.3.2", 1, name="nobody-here")
        assert fresh_known == fresh_unknown == [401]

