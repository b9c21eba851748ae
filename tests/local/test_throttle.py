"""Growing delays after failures, per key."""

from __future__ import annotations

from agent.local.throttle import FailureThrottle
from tests.clock import Clock


class TestFailureThrottle:
    def test_free_failures_then_doubling_lockouts_up_to_the_cap(self) -> None:
        """3 free, then 1, 2, 4, 8 s … capped."""
        clock = Clock()
        throttle = FailureThrottle(clock, free=3, base=1.0, cap=5.0)
        assert [0, 0, 0, 1, 2, 4, 5, 5] == [throttle.count("k") for _ in range(8)]

    def test_a_locked_key_waits_until_its_lockout_ends(self) -> None:
        """wait() counts down with the clock; other keys are unaffected."""
        clock = Clock()
        throttle = FailureThrottle(clock, free=0, base=4.0)
        throttle.count("k")
        clock.advance(1)
        assert (3.0, 0.0) == (throttle.wait("k"), throttle.wait("other"))
        clock.advance(3)
        assert 0.0 == throttle.wait("k")

    def test_failures_are_forgotten_after_a_quiet_period_or_a_success(self) -> None:
        """After ``forget`` seconds, or succeeded(), the next failure is free again."""
        clock = Clock()
        throttle = FailureThrottle(clock, free=1, forget=60)
        throttle.count("a")
        throttle.count("b")
        clock.advance(61)
        throttle.succeeded("b")
        assert (0.0, 0.0) == (throttle.count("a"), throttle.count("b"))

    def test_memory_is_bounded(self) -> None:
        """Only ``capacity`` keys are kept (a flood of made-up names)."""
        throttle = FailureThrottle(Clock(), free=1, capacity=100)
        for i in range(1000):
            throttle.count(f"name-{i}")
        assert 100 == len(throttle)

    def test_without_forget_failures_stay_until_a_success(self) -> None:
        """``forget=None`` (accounts): a day later the next failure locks at once."""
        clock = Clock()
        throttle = FailureThrottle(clock, free=1, base=1.0, forget=None)
        assert [0.0, 1.0] == [throttle.count("k"), throttle.count("k")]
        clock.advance(86_400)
        assert (0.0, 2, 2.0) == (throttle.wait("k"), throttle.failures("k"),
                                 throttle.count("k"))
        throttle.succeeded("k")
        assert 0.0 == throttle.count("k")

    def test_a_refund_takes_back_one_attempt_and_its_lockout(self) -> None:
        """An attempt counted before the check and then found right is taken back."""
        clock = Clock()
        throttle = FailureThrottle(clock, free=1, base=4.0)
        throttle.count("k")
        assert 4.0 == throttle.count("k")
        throttle.refund("k")
        assert (1, 0.0) == (throttle.failures("k"), throttle.wait("k"))
        throttle.refund("k")
        assert (0, 0) == (throttle.failures("k"), len(throttle))

    def test_no_capacity_keeps_every_key(self) -> None:
        """``capacity=None`` (the accounts in the file): nothing is ever dropped."""
        throttle = FailureThrottle(Clock(), free=1, capacity=None)
        for i in range(20_000):
            throttle.count(f"name-{i}")
        assert 20_000 == len(throttle)
