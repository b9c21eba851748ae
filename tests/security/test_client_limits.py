"""Per-client limits: token buckets, pending sign-ins bounded per client, audit bursts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog
from structlog.testing import capture_logs

from agent.logging import AuditBursts
from agent.ratelimit import PerClientLimiter
from agent.signin.pending import PendingSignIn, PendingSignIns
from tests.clock import Clock
from tests.harness import make_stack
from tests.security.conftest import READER, callback


def pending(client: str, now: float) -> PendingSignIn:
    return PendingSignIn(flow={}, binding_hash="h", next_path="/", created=now, client=client)


class TestPerClientLimiter:
    def test_burst_then_refill(self) -> None:
        """30 at once, then one every 2 s (30 a minute)."""
        clock = Clock()
        limiter = PerClientLimiter(30, clock)
        assert [True] * 30 + [False] == [limiter.allow("192.0.2.1") for _ in range(31)]
        clock.advance(2)
        assert [True, False] == [limiter.allow("192.0.2.1") for _ in range(2)]
        assert 2.0 == limiter.retry_after("192.0.2.1")

    def test_clients_do_not_share(self) -> None:
        """One client's empty bucket leaves another's full."""
        limiter = PerClientLimiter(3, Clock())
        for _ in range(10):
            limiter.allow("192.0.2.1")
        assert limiter.allow("192.0.2.2")

    def test_ipv6_64_is_one_client(self) -> None:
        """Rotating through a /64 buys nothing."""
        limiter = PerClientLimiter(3, Clock())
        assert [True, True, True, False] == [
            limiter.allow(f"2001:db8:7:7::{i:x}") for i in range(4)]
        assert limiter.allow("2001:db8:7:8::1")

    def test_memory_bounded(self) -> None:
        """At most max_clients buckets; the least recently seen go first."""
        limiter = PerClientLimiter(3, Clock(), max_clients=100)
        for i in range(1000):
            limiter.allow(f"10.0.{i >> 8}.{i & 255}")
        assert 100 == len(limiter)


class TestPendingBounds:
    def test_a_clients_own_oldest_goes(self) -> None:
        """Over its own bound a client loses its own oldest sign-in, no one else's."""
        clock = Clock()
        store = PendingSignIns(600, 100, 5, clock)
        store.add("user", pending("192.0.2.50", clock()))
        gone = []
        for i in range(8):
            gone += store.add(f"flood{i}", pending("198.51.100.1", clock()))
        assert ["198.51.100.1"] * 3 == [g.client for g in gone]
        assert "browser_mismatch" == store.take("user", None)[1]  # still there
        assert "state_evicted" == store.take("flood0", "x")[1]
        assert "browser_mismatch" == store.take("flood7", None)[1]

    def test_many_address_flood_cannot_evict_a_user(self) -> None:
        """Full store, 334 addresses x 30 starts: the user's one pending sign-in stays."""
        clock = Clock()
        store = PendingSignIns(600, 10_000, 30, clock)
        store.add("user", pending("192.0.2.50", clock()))
        for n in range(334):
            for i in range(30):
                store.add(f"s{n}-{i}", pending(f"10.1.{n >> 8}.{n & 255}", clock()))
        assert len(store) <= 10_000
        assert "browser_mismatch" == store.take("user", None)[1]  # present, not evicted

    def test_expired_purged(self) -> None:
        """Expired sign-ins leave room without counting as evictions."""
        clock = Clock()
        store = PendingSignIns(60, 2, 30, clock)
        store.add("a", pending("192.0.2.1", clock()))
        store.add("b", pending("192.0.2.2", clock()))
        clock.advance(61)
        assert [] == store.add("c", pending("192.0.2.3", clock()))
        assert 0 == store.evicted and 1 == len(store)


class TestAuditBursts:
    def test_one_summary_per_client_per_interval(self) -> None:
        """10,000 starts from one client: ten lines, then one summary with the counts."""
        clock = Clock()
        with capture_logs() as logs:
            bursts = AuditBursts(structlog.get_logger("agent.audit"), clock, interval=10,
                                 allowance=10)
            for _ in range(10_000):
                bursts.event("info", "sso_login_started", "192.0.2.1", next="/")
            bursts.event("info", "sso_login_started", "192.0.2.2", next="/")
            clock.advance(10)
            bursts.flush_due()
        started = [e for e in logs if e["event"] == "sso_login_started"]
        summaries = [e for e in logs if e["event"] == "audit_burst"]
        assert 11 == len(started)
        assert [("192.0.2.1", {"sso_login_started": 9990})] == [
            (e["source_ip"], e["suppressed"]) for e in summaries]


async def test_evicted_sign_in_is_audited_as_evicted(tmp_path: Path) -> None:
    """Evictions are audited (state_evicted) and the callback says state_evicted."""
    def small(data: dict[str, Any]) -> None:
        data["session"]["max_pending_sign_ins"] = 2

    stack = await make_stack(tmp_path, config=small)
    try:
        first = stack.browser()
        url = await first.authenticate(await first.start(), READER)
        with capture_logs() as logs:
            for _ in range(2):
                await stack.browser().start()
        assert 1 == len([e for e in logs if e["event"] == "state_evicted"])
        outcome = await callback(stack, first, url)
        assert (400, ["state_evicted"]) == (outcome.status, outcome.refused_reasons)
        assert "dropped" in outcome.text
    finally:
        await stack.close()


def test_a_refusal_of_another_kind_is_not_swallowed() -> None:
    """A client's burst of one kind does not hide its first events of another kind."""
    clock = Clock()
    with capture_logs() as logs:
        bursts = AuditBursts(structlog.get_logger("agent.audit"), clock, allowance=10)
        for _ in range(50):
            bursts.event("info", "sso_login_started", "192.0.2.1", next="/")
        bursts.event("warning", "sso_login_refused", "192.0.2.1", reason="state_unwritable")
    assert ["state_unwritable"] == [e["reason"] for e in logs
                                    if e["event"] == "sso_login_refused"]
