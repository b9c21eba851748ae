"""One supervisor for every long-running task: nothing in the background fails silently.

Each application (web/app.py) runs its background work — the session journal's flush and
sweeps, discovery and JWKS refresh, re-validation, the Entra ID probe for the local sign-in
form, the audit burst summaries — through ``Supervisor.start(name, work)``, and the process
(lifecycle.py) its systemd watchdog and readiness announcement:

* an unexpected exception (anything but cancellation) ends that run of ``work``; the task is
  restarted after a doubling delay (``backoff.doubling``, ``first_retry`` up to
  ``max_retry`` seconds). A supervised task runs for ever: returning is a failure too
  (``TaskReturned``), unless it was started with ``once=True``;
* a failure is logged once per burst as ``task_failed`` (``task``, ``error`` = the exception's
  class, ``restart_in``, ``fix``, and the frames where it was raised: logging.py's
  ``exception_summary``) — never the exception's message, which may carry bytes an
  identity provider or a client sent. Further failures of the same burst are only counted;
  ``task_recovered`` (``task``, ``failures``) follows once the task has run ``stable_after``
  seconds without failing (for a reported failure: when next asked after that time);
* ``report(name, exc)`` records a failure that did not end a task (one session's
  re-validation raised: the pass goes on for the others) the same way;
* ``stop()`` cancels every task and waits for it; an exception raised while stopping is
  logged, never raised, so that what follows (the final journal flush) still runs.

The read API (``/readyz``, the systemd watchdog and the metrics use it; none of it resets):

* ``failures()`` → ``{task: count}``: failures since the supervisor started, every task
  started or reported, zero included (a process-lifetime counter);
* ``failing()`` → ``{task: exception class}``: the tasks failing now (a failure within the
  last ``stable_after`` seconds); ``degraded()``: the same as ``/readyz`` lists them under
  ``degraded`` (``task:NAME``);
* ``alive()``: the supervisor has not been stopped and every supervised task is still in its
  hands (running, or waiting to restart). The watchdog pings systemd only while this holds;
* ``names()``: the tasks started.

``fail(name, exc)`` is the test hook: the task's current run is interrupted where it waits
and ends with ``exc`` as if its own code had raised it (the rest follows as for any
failure). It exists so that tests can exercise supervision on the real tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog

from .backoff import doubling
from .errors import AgentError

log = structlog.get_logger("agent")

FIRST_RETRY = 1.0  # seconds before the first restart; doubles with each failure in a row
MAX_RETRY = 60.0
STABLE_AFTER = 120.0  # seconds without a failure after which a task counts as recovered

Work = Callable[[], Coroutine[Any, Any, None]]


class TaskReturned(AgentError):  # noqa: N818 - reported by name: "the task returned"
    """A supervised task's work returned; it is meant to run for ever."""


@dataclass
class _Task:
    name: str
    runner: asyncio.Task[None] | None = None
    current: asyncio.Task[None] | None = None  # the run of ``work`` in progress
    failures: int = 0  # process lifetime
    in_a_row: int = 0  # consecutive failures: the restart delay doubles with each
    burst: int = 0  # failures since the last task_failed line
    last_failure: float | None = None
    last_error: str = ""
    injected: list[BaseException] = field(default_factory=list)
    done: bool = False  # started with once=True and finished


class Supervisor:
    """Runs named background tasks, restarts them when they fail, and says so once."""

    def __init__(self, *, first_retry: float = FIRST_RETRY, max_retry: float = MAX_RETRY,
                 stable_after: float = STABLE_AFTER,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.first_retry, self.max_retry = first_retry, max_retry
        self.stable_after = stable_after
        self.monotonic = monotonic
        self._tasks: dict[str, _Task] = {}
        self._stopping = False

    # ----- running ----------------------------------------------------------------------

    def start(self, name: str, work: Work, *, once: bool = False) -> None:
        """Run ``work()`` as the task ``name`` until ``stop()``, restarting it on failure;
        ``once``: a task that is done when ``work`` returns (restarted only on failure)."""
        task = self._tasks.setdefault(name, _Task(name))
        if task.runner is not None and not task.runner.done():
            raise RuntimeError(f"task {name!r} is already running")
        task.done = False
        self._stopping = False  # started again after a stop (lifecycle's Service.start)
        task.runner = asyncio.create_task(self._supervise(task, work, once),
                                          name=f"supervise:{name}")

    async def _supervise(self, task: _Task, work: Work, once: bool) -> None:
        while True:
            task.current = asyncio.create_task(work() if once else self._forever(work),
                                               name=task.name)
            try:
                stable = await self._until_stable(task, task.current)
            except asyncio.CancelledError:
                await self._cancel(task)
                raise
            if stable:
                self._recovered(task)
                try:
                    await asyncio.wait({task.current})
                except asyncio.CancelledError:
                    await self._cancel(task)
                    raise
            exc = self._outcome(task, task.current)
            task.current = None
            if exc is None:
                if task.in_a_row:
                    self._recovered(task)
                task.done = True  # a task started with once=True did its work
                return
            self._failed(task, exc, restart=True)
            await asyncio.sleep(doubling(task.in_a_row, self.first_retry, self.max_retry))

    @staticmethod
    async def _forever(work: Work) -> None:
        await work()
        raise TaskReturned("the task returned")

    async def _until_stable(self, task: _Task, run: asyncio.Task[None]) -> bool:
        """Wait for ``run`` to end; True when it is still running ``stable_after`` seconds
        after a failure (the burst is over), False when it ended first."""
        if task.in_a_row == 0:
            await asyncio.wait({run})
            return False
        done, _ = await asyncio.wait({run}, timeout=self.stable_after)
        return not done

    def _outcome(self, task: _Task, run: asyncio.Task[None]) -> BaseException | None:
        if run.cancelled():
            if task.injected:
                return task.injected.pop(0)
            return asyncio.CancelledError()  # cancelled by someone else: a failure too
        return run.exception()

    async def _cancel(self, task: _Task) -> None:
        run = task.current
        if run is None:
            return
        run.cancel()
        try:
            await run
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # raised while stopping: said, never raised further
            self._failed(task, exc, restart=False)
        task.current = None

    async def cancel(self, name: str) -> None:
        """Stop task ``name`` now (its failures are kept); nothing when it is not running."""
        task = self._tasks.get(name)
        if task is None or task.runner is None or task.runner.done():
            return
        task.runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task.runner
        task.done = True  # ended on purpose: not a dead task for alive()

    async def stop(self) -> None:
        """Cancel every task and wait for it; exceptions raised meanwhile are logged."""
        self._stopping = True
        runners = [t.runner for t in self._tasks.values() if t.runner is not None]
        for runner in runners:
            runner.cancel()
        for runner in runners:
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    # ----- failures ---------------------------------------------------------------------

    def report(self, name: str, exc: BaseException) -> None:
        """A failure inside task ``name`` that did not end it (counted, logged per burst)."""
        self._failed(self._tasks.setdefault(name, _Task(name)), exc, restart=False)

    def fail(self, name: str, exc: BaseException) -> None:
        """Test hook: end the current run of task ``name`` with ``exc``."""
        task = self._tasks[name]
        if task.current is None or task.current.done() or task.injected:
            raise RuntimeError(f"task {name!r} is not running now")
        task.injected.append(exc)
        task.current.cancel()

    def _failed(self, task: _Task, exc: BaseException, *, restart: bool) -> None:
        now = self.monotonic()
        first = not self._is_failing(task, now)
        task.failures += 1
        task.burst += 1
        task.last_failure = now
        task.last_error = type(exc).__name__
        if restart:
            task.in_a_row += 1
        if first:
            fields: dict[str, object] = {"stopping": True} if self._stopping else {}
            if restart:
                fields["restart_in"] = doubling(task.in_a_row, self.first_retry,
                                                self.max_retry)
            log.error("task_failed", task=task.name, error=task.last_error, exc_info=exc,
                      **fields,
                      fix="a defect or a hostile answer: report it with the journal lines "
                          "around this one; the agent restarts the task")

    def _recovered(self, task: _Task) -> None:
        log.info("task_recovered", task=task.name, failures=task.burst)
        task.in_a_row = 0
        task.burst = 0
        task.last_failure = None

    def _is_failing(self, task: _Task, now: float) -> bool:
        if task.in_a_row:  # restarted, and not yet stable
            return True
        if task.last_failure is None:
            return False
        if now - task.last_failure < self.stable_after:
            return True
        self._recovered(task)  # a reported failure, long enough ago
        return False

    # ----- reading ----------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self._tasks)

    def failures(self) -> dict[str, int]:
        """Failures per task since start (zero included): a process-lifetime counter."""
        return {name: task.failures for name, task in self._tasks.items()}

    def failing(self) -> dict[str, str]:
        """The tasks failing now, with the class of their last exception."""
        now = self.monotonic()
        return {name: task.last_error for name, task in self._tasks.items()
                if self._is_failing(task, now)}

    def degraded(self) -> dict[str, str]:
        """``/readyz``'s entries for the tasks failing now: ``task:NAME`` → what happened."""
        return {f"task:{name}": f"failed ({error}), restarted: see task_failed in the journal"
                for name, error in self.failing().items()}

    def alive(self) -> bool:
        """Every supervised task is running or waiting for its restart."""
        return not self._stopping and all(t.runner is None or t.done or not t.runner.done()
                                          for t in self._tasks.values())
