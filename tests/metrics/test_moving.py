"""Every metric moves when the agent does what it counts, over real HTTP on loopback.

The agent runs in this process with an injected clock, against the local Entra-like provider
over TLS; its ``Monitor`` serves ``[metrics] listen`` as ``serve`` does, and each test scrapes
that listener before and after causing what a metric counts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from agent.devidp import Fault
from agent.web import keys
from tests.harness import Browser, short_intervals
from tests.local.helpers import LOCAL_ADMIN, LOCAL_PASSWORD, accounts_file, local_sign_in
from tests.metrics.support import Samples, Watched, value, watched_stack
from tests.security.test_full_disk import fill, free

ADMIN, READER, NOGROUP = ("admin@contoso.example", "reader@contoso.example",
                          "nogroup@contoso.example")


async def signed_in(w: Watched, user: str) -> Browser:
    browser = w.stack.browser()
    answer = await browser.sign_in(user)
    assert 302 == answer.status, await answer.text()
    return browser


class TestSignIns:
    async def test_a_sign_in_and_a_refusal_move_their_counters(self, watched: Watched) -> None:
        """A successful SSO sign-in counts as succeeded; a user in no mapped group is refused
        and moves the refusals of reason no_role; nothing else moves."""
        before = await watched.scrape()
        await signed_in(watched, ADMIN)
        refused = await watched.stack.browser().sign_in(NOGROUP)
        assert 403 == refused.status
        after = await watched.scrape()
        name = "sensor_sso_sign_ins_total"
        assert 0 == value(before, name, method="sso", outcome="succeeded")
        assert 1 == value(after, name, method="sso", outcome="succeeded")
        assert 1 == value(after, name, method="sso", outcome="refused")
        assert 1 == value(after, "sensor_sso_sign_in_refusals_total", method="sso",
                          reason="no_role")
        assert 0 == value(after, name, method="local", outcome="succeeded")


async def eventually(watched: Watched, holds: Callable[[Samples], bool], what: str,
                     timeout: float = 15.0) -> Samples:
    """Scrape until ``holds`` (a generous deadline, no timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        found = await watched.scrape()
        if holds(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.05)


class TestAuthCheck:
    async def test_answers_by_status_and_their_latency(self, watched: Watched) -> None:
        """Each /auth/check answer counts under its status (200, 401, 403, 400) and lands in
        the latency histogram, whose count is the number of answers and whose buckets below
        one millisecond are there."""
        browser = await signed_in(watched, READER)
        for path, status in (("/auth/check", 200), ("/auth/check?role=admin", 403),
                             ("/auth/check?role=owner", 400)):
            assert status == (await browser.get(path)).status
        assert 401 == (await watched.stack.browser().get("/auth/check")).status
        found = await watched.scrape()
        for answer in ("200", "401", "403", "400"):
            assert 1 == value(found, "sensor_sso_auth_check_answers_total", status=answer)
        assert 4 == value(found, "sensor_sso_auth_check_seconds_count")
        assert 4 == value(found, "sensor_sso_auth_check_seconds_bucket", le="+Inf")
        assert value(found, "sensor_sso_auth_check_seconds_bucket", le="0.0005") is not None
        assert 0 < (value(found, "sensor_sso_auth_check_seconds_sum") or 0) < 1


class TestSessions:
    async def test_live_sessions_by_role_and_method(self, watched: Watched) -> None:
        """Sessions count under their role and method while they live; a sign-out takes
        one away."""
        first = await signed_in(watched, READER)
        await signed_in(watched, READER)
        await signed_in(watched, ADMIN)
        found = await watched.scrape()
        assert 2 == value(found, "sensor_sso_sessions", role="read_only", method="sso")
        assert 1 == value(found, "sensor_sso_sessions", role="admin", method="sso")
        assert 0 == value(found, "sensor_sso_sessions", role="security_analyst", method="sso")
        csrf = (await (await first.get("/auth/me")).json())["csrf_token"]
        assert 303 == (await first.post("/auth/logout",
                                        headers={"X-CSRF-Token": csrf})).status
        found = await watched.scrape()
        assert 1 == value(found, "sensor_sso_sessions", role="read_only", method="sso")




@pytest.fixture
async def revalidating(tmp_path: Path) -> AsyncIterator[Watched]:
    """The watched stack with a 10 s re-validation interval and a 1 min grace."""
    w = await watched_stack(tmp_path, config=short_intervals)
    try:
        yield w
    finally:
        await w.close()


def later(w: Watched, seconds: float) -> None:
    w.stack.clock.advance(seconds)
    assert w.stack.app is not None
    w.stack.app[keys.REVALIDATOR].wake()


class TestRevalidation:
    async def test_outcomes_and_lag(self, revalidating: Watched) -> None:
        """A confirmation counts as confirmed and keeps the lag under an interval; with the
        token endpoint failing re-validations count as unavailable and the lag grows past
        the interval, what the "re-validation stalled" alert watches."""
        w = revalidating
        await signed_in(w, READER)
        found = await w.scrape()
        assert 10 == value(found, "sensor_sso_revalidate_interval_seconds")
        later(w, 10)
        found = await eventually(w, lambda f: value(
            f, "sensor_sso_revalidations_total", outcome="confirmed") == 1, "a confirmation")
        assert (value(found, "sensor_sso_revalidation_lag_seconds") or 0) <= 10
        assert w.stack.clock() == value(  # the refresh is the token endpoint answering
            found, "sensor_sso_dependency_last_success_timestamp_seconds",
            dependency="token_endpoint")
        w.stack.idp.faults["token"] = Fault(status=503, body=b"{}")
        for _ in range(3):
            later(w, 10)
            await asyncio.sleep(0.3)
        found = await eventually(w, lambda f: (value(
            f, "sensor_sso_revalidations_total", outcome="unavailable") or 0) >= 1,
            "an unavailable re-validation")
        assert (value(found, "sensor_sso_revalidation_lag_seconds") or 0) > 20


class TestDependencies:
    async def test_an_unreachable_provider_flips_the_token_endpoint(self, tmp_path: Path
                                                                    ) -> None:
        """With Entra ID gone between the user's sign-in there and the code's redemption,
        the sign-in is refused as idp_unreachable and the token endpoint is down; the other
        dependencies stay up."""
        (tmp_path / "idp").mkdir()  # its CA file outlives it: the agent's ca_bundle
        watched = await watched_stack(tmp_path, idp_options={"state_dir": tmp_path / "idp"})
        try:
            await self._unreachable(watched)
        finally:
            await watched.close()

    async def _unreachable(self, watched: Watched) -> None:
        found = await watched.scrape()  # discovery and keys loaded at start; nothing else yet
        last = "sensor_sso_dependency_last_success_timestamp_seconds"
        assert watched.stack.clock() == value(found, last, dependency="discovery")
        assert watched.stack.clock() == value(found, last, dependency="jwks")
        assert value(found, last, dependency="token_endpoint") is None
        watched.stack.clock.advance(60)
        await signed_in(watched, ADMIN)  # every dependency answered
        found = await watched.scrape()
        for name in ("discovery", "jwks", "token_endpoint", "graph"):
            assert 1 == value(found, "sensor_sso_dependency_up", dependency=name), name
            assert watched.stack.clock() == value(found, last, dependency=name), name
        browser = watched.stack.browser()
        callback = await browser.authenticate(await browser.start(), READER)
        await watched.stack.idp.stop()
        assert 502 == (await browser.get(callback)).status
        found = await watched.scrape()
        assert 0 == value(found, "sensor_sso_dependency_up", dependency="token_endpoint")
        assert 1 == value(found, "sensor_sso_dependency_up", dependency="jwks")
        assert 1 == value(found, "sensor_sso_sign_in_refusals_total", method="sso",
                          reason="idp_unreachable")

    async def test_graph_timing_out_flips_graph(self, watched: Watched) -> None:
        """A user whose token lacks the names makes the agent ask Graph; Graph not answering
        within entra.timeout (a transport failure, signin/health.py) refuses the sign-in and
        marks graph down; Graph back, a sign-in marks it up again."""
        watched.stack.idp.faults["graph_me"] = Fault(delay=5.0)
        refused = await watched.stack.browser().sign_in("graphprofile@contoso.example")
        assert 502 == refused.status
        found = await watched.scrape()
        assert 0 == value(found, "sensor_sso_dependency_up", dependency="graph")
        assert 1 == value(found, "sensor_sso_sign_in_refusals_total", method="sso",
                          reason="microsoft_graph_timeout")
        watched.stack.idp.faults.clear()
        await signed_in(watched, "graphprofile@contoso.example")
        found = await watched.scrape()
        assert 1 == value(found, "sensor_sso_dependency_up", dependency="graph")

    async def test_an_odd_answer_to_one_sign_in_flips_nothing(self, watched: Watched
                                                             ) -> None:
        """Graph answering one sign-in with a 503 refuses that sign-in but is no proof that
        Graph is down (anyone can provoke odd answers): graph stays up."""
        watched.stack.idp.faults["graph_me"] = Fault(status=503, body=b"{}")
        assert 502 == (await watched.stack.browser().sign_in(
            "graphprofile@contoso.example")).status
        found = await watched.scrape()
        assert 1 == value(found, "sensor_sso_dependency_up", dependency="graph")


    async def test_signing_keys_timing_out_flip_jwks(self, watched: Watched) -> None:
        """Entra ID signs with a key the agent has not seen and its JWKS endpoint does not
        answer within entra.timeout: the sign-in is refused and jwks is down, discovery
        stays up."""
        watched.stack.idp.rotate_keys()
        watched.stack.idp.faults["jwks"] = Fault(delay=5.0)
        refused = await watched.stack.browser().sign_in(READER)
        assert 502 == refused.status, await refused.text()
        found = await watched.scrape()
        assert 0 == value(found, "sensor_sso_dependency_up", dependency="jwks")
        assert 1 == value(found, "sensor_sso_dependency_up", dependency="discovery")

    async def test_discovery_failing_at_start_flips_discovery_and_ready(
            self, tmp_path: Path) -> None:
        """A provider whose discovery document answers 503 when the agent starts: discovery
        down and the agent not ready; once it answers, both are back."""
        w = await watched_stack(tmp_path, wait_ready=False,
                                before_start=lambda stack: stack.idp.faults.update(
                                    discovery=Fault(status=503, body=b"{}")))
        try:
            found = await w.scrape()
            assert 0 == value(found, "sensor_sso_dependency_up", dependency="discovery")
            assert 0 == value(found, "sensor_sso_ready")
            w.stack.idp.faults.clear()
            await eventually(w, lambda f: value(f, "sensor_sso_ready") == 1, "ready",
                             timeout=30)
            found = await w.scrape()
            assert 1 == value(found, "sensor_sso_dependency_up", dependency="discovery")
        finally:
            await w.close()


class TestState:
    async def test_a_full_state_directory_flips_writable(self, tmp_path: Path,
                                                          small_fs: Path) -> None:
        """state_dir on a small tmpfs filled to its last byte: a sign-in is refused with
        state_unwritable, state_writable goes to 0 and ready with it; space freed, both are
        back by themselves (the periodic flush finds it)."""

        def on_small_fs(data: dict[str, Any]) -> None:
            data["session"].update(state_dir=str(small_fs / "state"),
                                   sign_ins_per_minute_per_client=1000)

        w = await watched_stack(tmp_path, config=on_small_fs)
        try:
            found = await w.scrape()
            assert 1 == value(found, "sensor_sso_state_writable")
            fill(small_fs)
            for _ in range(40):  # the journal's last page has some slack first
                if (await w.stack.browser().sign_in(READER)).status == 503:
                    break
            else:
                raise AssertionError("the full disk never refused a sign-in")
            found = await w.scrape()
            assert 0 == value(found, "sensor_sso_state_writable")
            assert 0 == value(found, "sensor_sso_ready")
            assert 1 == value(found, "sensor_sso_sign_in_refusals_total", method="sso",
                              reason="state_unwritable")
            free(small_fs)
            await eventually(w, lambda f: value(f, "sensor_sso_state_writable") == 1,
                             "state writable again", timeout=30)
        finally:
            await w.close()


class TestLocalSignIn:
    async def test_local_sign_ins_refusals_throttling_and_sessions(self, tmp_path: Path
                                                                   ) -> None:
        """With a local account offered always: a wrong password is refused as
        bad_credentials, repeated failures are throttled (local_sign_in), the right password
        counts as a local sign-in and its session under method local."""
        path = accounts_file(tmp_path / "local-accounts", (LOCAL_ADMIN, "admin",
                                                           LOCAL_PASSWORD))

        def with_accounts(data: dict[str, Any]) -> None:
            data["local"] = {"accounts_file": str(path), "sign_in": "always"}

        w = await watched_stack(tmp_path, config=with_accounts)
        try:
            browser = w.stack.browser()
            assert 401 == (await local_sign_in(browser, password="wrong")).status
            found = await w.scrape()
            assert 1 == value(found, "sensor_sso_sign_in_refusals_total", method="local",
                              reason="bad_credentials")
            assert 0 == value(found, "sensor_sso_throttled_requests_total",
                              what="local_sign_in")
            statuses = [(await local_sign_in(browser, password="wrong")).status
                        for _ in range(6)]
            assert 429 in statuses
            found = await w.scrape()
            assert (value(found, "sensor_sso_throttled_requests_total",
                          what="local_sign_in") or 0) >= 1
            w.stack.clock.advance(3600)  # the lockout is over
            assert 303 == (await local_sign_in(w.stack.browser())).status
            found = await w.scrape()
            assert 1 == value(found, "sensor_sso_sign_ins_total", method="local",
                              outcome="succeeded")
            assert 1 == value(found, "sensor_sso_sessions", role="admin", method="local")
        finally:
            await w.close()


class TestTasks:
    async def test_a_failing_task_moves_its_counter_and_flag(self, watched: Watched) -> None:
        """Every supervised task is listed at zero; a task made to raise (the supervisor's
        test hook) counts one failure and is flagged failing, as /readyz lists it."""
        found = await watched.scrape()
        for task in ("journal_flush", "audit_bursts", "tenant_metadata", "revalidation"):
            assert 0 == value(found, "sensor_sso_task_failures_total", task=task), task
            assert 0 == value(found, "sensor_sso_task_failing", task=task), task
        assert watched.stack.app is not None
        watched.stack.app[keys.SUPERVISOR].fail("journal_flush", RuntimeError("boom"))
        found = await eventually(watched, lambda f: value(
            f, "sensor_sso_task_failures_total", task="journal_flush") == 1, "a failure")
        assert 1 == value(found, "sensor_sso_task_failing", task="journal_flush")
        assert 0 == value(found, "sensor_sso_task_failing", task="revalidation")
