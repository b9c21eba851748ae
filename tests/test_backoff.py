"""``doubling``: the delay after consecutive failures."""

from __future__ import annotations

from agent.backoff import doubling


def test_no_failure_no_delay() -> None:
    """Before the first failure (and for a count below zero) there is nothing to wait."""
    assert (0.0, 0.0) == (doubling(0, 10.0, 300.0), doubling(-3, 10.0, 300.0))


def test_doubles_from_the_first_delay_up_to_the_cap() -> None:
    """first, 2×first, 4×first, … and then the cap for good."""
    assert [10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0] == [
        doubling(n, 10.0, 300.0) for n in range(1, 8)]


def test_a_cap_below_the_first_delay_wins() -> None:
    """A cap shorter than the first delay is the delay from the start."""
    assert [5.0, 5.0] == [doubling(n, 10.0, 5.0) for n in (1, 2)]


def test_a_long_run_of_failures_stays_at_the_cap() -> None:
    """Thousands of failures in a row neither overflow nor pass the cap."""
    assert 900.0 == doubling(10_000, 1.0, 900.0)
