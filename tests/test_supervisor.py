"""The supervisor on a real event loop, with short delays: restarts, bursts, the read API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from structlog.testing import capture_logs

from agent.logging import exception_summary
from agent.supervisor import Supervisor

SENT = "bytes a provider sent"


def quick() -> Supervisor:
    return Supervisor(first_retry=0.02, max_retry=0.08, stable_after=0.3)


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.01)


class TestRestarts:
    async def test_a_crashing_task_is_restarted_said_once_then_recovered(self) -> None:
        """Three failures in a row: restarted each time with a doubling delay, one
        task_failed line, three failures counted; after a stable run, task_recovered and
        nothing failing (the count stays)."""
        runs: list[float] = []

        async def work() -> None:
            runs.append(time.monotonic())
            if len(runs) <= 3:
                raise ValueError(SENT)
            await asyncio.Event().wait()

        sup = quick()
        with capture_logs() as logs:
            sup.start("t", work)
            await until(lambda: len(runs) == 4)
            assert {"t": "ValueError"} == sup.failing()
            await until(lambda: not sup.failing())
            await sup.stop()
        assert [("t", "ValueError", 0.02)] == [(e["task"], e["error"], e["restart_in"])
                                               for e in logs if e["event"] == "task_failed"]
        assert [3] == [e["failures"] for e in logs if e["event"] == "task_recovered"]
        assert {"t": 3} == sup.failures()
        gaps = [b - a for a, b in zip(runs, runs[1:], strict=False)]
        assert gaps[0] >= 0.02 and gaps[1] >= 0.04 and gaps[2] >= 0.08  # doubling delays
        failed = exception_summary(None, "", dict(next(e for e in logs
                                                       if e["event"] == "task_failed")))
        assert "ValueError" == failed["error_type"]
        assert "in work" in failed["traceback"]  # where it was raised: frames, no message
        assert SENT not in repr(failed)

    async def test_returning_is_a_failure_unless_once(self) -> None:
        """A task meant to run for ever that returns is restarted (TaskReturned); one started
        with once=True is done, and the supervisor stays alive."""
        calls = {"forever": 0, "once": 0}

        async def forever() -> None:
            calls["forever"] += 1

        async def once() -> None:
            calls["once"] += 1

        sup = quick()
        with capture_logs() as logs:
            sup.start("forever", forever)
            sup.start("once", once, once=True)
            await until(lambda: calls["forever"] >= 2)
            await asyncio.sleep(0.1)
            assert sup.alive()
            await sup.stop()
        assert 1 == calls["once"]
        assert [("forever", "TaskReturned")] == [(e["task"], e["error"]) for e in logs
                                                 if e["event"] == "task_failed"]
        assert 0 == sup.failures()["once"]


class TestReading:
    async def test_reported_failures_count_and_end_after_the_window(self) -> None:
        """report() counts a failure that did not end a task: failing, then, once
        stable_after has passed without another, recovered (still counted)."""
        sup = quick()
        with capture_logs() as logs:
            sup.report("revalidation", KeyError("x"))
            sup.report("revalidation", KeyError("x"))
            assert {"revalidation": "KeyError"} == sup.failing()
            assert {"task:revalidation"} == set(sup.degraded())
            await asyncio.sleep(0.35)
            assert {} == sup.failing()
        assert 1 == len([e for e in logs if e["event"] == "task_failed"])
        assert {"revalidation": 2} == sup.failures()

    async def test_stop_logs_what_a_task_raises_while_cancelled_and_never_raises(
            self) -> None:
        """A task whose clean-up raises when cancelled: stop() logs task_failed with
        stopping=True and returns; the supervisor is no longer alive."""
        async def stubborn() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                raise OSError("disk full")

        sup = quick()
        sup.start("journal_flush", stubborn)
        await asyncio.sleep(0.02)
        assert sup.alive()
        with capture_logs() as logs:
            await sup.stop()
        assert [("journal_flush", "OSError", True)] == [
            (e["task"], e["error"], e["stopping"]) for e in logs if e["event"] == "task_failed"]
        assert not sup.alive()
