"""``PendingSignIns.take``: what a callback finds for its ``state``, and why it is refused.

The bounds (per client, capacity, flood) are tested in tests/security/test_client_limits.py.
"""

from __future__ import annotations

from agent.signin.pending import PendingSignIn, PendingSignIns, binding_hash
from tests.clock import Clock

BROWSER = "binding-cookie-of-the-browser"
TTL = 600.0


def store(clock: Clock, capacity: int = 100) -> PendingSignIns:
    return PendingSignIns(TTL, capacity, 30, clock)


def pending(clock: Clock, client: str = "192.0.2.1", next_path: str = "/overview"
            ) -> PendingSignIn:
    return PendingSignIn(flow={"state": "s"}, binding_hash=binding_hash(BROWSER),
                         next_path=next_path, created=clock(), client=client)


class TestTake:
    def test_the_browser_that_started_it_gets_it(self) -> None:
        """The right state from the right browser returns the pending sign-in."""
        clock = Clock()
        sign_ins = store(clock)
        started = pending(clock)
        sign_ins.add("s1", started)
        assert (started, "ok") == sign_ins.take("s1", BROWSER)

    def test_single_use(self) -> None:
        """A second callback with the same state is unknown (a replay)."""
        clock = Clock()
        sign_ins = store(clock)
        sign_ins.add("s1", pending(clock))
        sign_ins.take("s1", BROWSER)
        assert (None, "state_unknown") == sign_ins.take("s1", BROWSER)

    def test_never_issued(self) -> None:
        """A state the agent never issued is unknown."""
        assert (None, "state_unknown") == store(Clock()).take("forged", BROWSER)

    def test_another_browser_does_not_consume_it(self) -> None:
        """Another browser (or none) is refused and the real user can still finish."""
        clock = Clock()
        sign_ins = store(clock)
        started = pending(clock)
        sign_ins.add("s1", started)
        assert (None, "browser_mismatch") == sign_ins.take("s1", "someone-else")
        assert (None, "browser_mismatch") == sign_ins.take("s1", None)
        assert (started, "ok") == sign_ins.take("s1", BROWSER)

    def test_expired_at_the_ttl(self) -> None:
        """At sign_in_timeout the sign-in has expired, and is gone."""
        clock = Clock()
        sign_ins = store(clock)
        sign_ins.add("s1", pending(clock))
        sign_ins.add("s2", pending(clock))
        clock.advance(TTL - 1)
        assert "ok" == sign_ins.take("s1", BROWSER)[1]
        clock.advance(1)
        assert (None, "state_expired") == sign_ins.take("s2", BROWSER)
        assert (None, "state_unknown") == sign_ins.take("s2", BROWSER)

    def test_evicted_is_told_apart_from_unknown(self) -> None:
        """A sign-in pushed out of a full store is state_evicted, not a replay."""
        clock = Clock()
        sign_ins = store(clock, capacity=2)
        sign_ins.add("s1", pending(clock, "192.0.2.1"))
        sign_ins.add("s2", pending(clock, "192.0.2.1"))
        evicted = sign_ins.add("s3", pending(clock, "192.0.2.2"))
        assert (["192.0.2.1"], 1) == ([e.client for e in evicted], sign_ins.evicted)
        assert (None, "state_evicted") == sign_ins.take("s1", BROWSER)
        assert "ok" == sign_ins.take("s3", BROWSER)[1]

    def test_evicted_states_are_remembered_boundedly(self) -> None:
        """Only the last ``capacity`` evicted states are remembered; older ones are unknown."""
        clock = Clock()
        sign_ins = store(clock, capacity=2)
        for i in range(6):
            sign_ins.add(f"s{i}", pending(clock, f"192.0.2.{i % 2 + 1}"))
        assert [sign_ins.take(f"s{i}", BROWSER)[1] for i in range(4)] == [
            "state_unknown", "state_unknown", "state_evicted", "state_evicted"]
