"""The HTTP edge: malformed requests, slow and idle connections, quiet and bounded."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from agent.web.app import create_app
from agent.web.server import (
    BODY_TIMEOUT,
    MIN_BODY_RATE,
    FrontDoorRunner,
    connection_cap,
    quiet_accept_failures,
)
from tests.harness import Stack, agent_config, free_port, write_config

ROOT = Path(__file__).resolve().parents[2]
SECRET = "Zq9cookievalueThatMustNeverLeak"

MALFORMED = [
    b"GET /auth/check HTTP/1.1\r\nHost: a\r\nCookie: theme=\x0bdark; __Host-sensor_session="
    + SECRET.encode() + b"\r\n\r\n",
    b"GET /auth/check HTTP/1.1\r\nHost: a\r\nCookie: __Host-sensor_session=" + SECRET.encode()
    + b"; pad=" + b"x" * 20000 + b"\r\n\r\n",
    b"GET /auth/check HTTP/1.1\r\nHost: a\r\nNoColonHere" + SECRET.encode() + b"\r\n\r\n",
    b"POST /auth/logout HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    + SECRET.encode() + b"\r\n",
    b"GET /auth/check HTTP/1.1\r\nHost: a\r\nCookie: a=" + SECRET.encode() + b"\x00\r\n\r\n",
]


async def raw(port: int, request: bytes, timeout: float = 10.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


class TestMalformedRequests:
    @pytest.mark.parametrize("request_bytes", MALFORMED)
    async def test_generic_400_with_security_headers(self, stack: Stack,
                                                     request_bytes: bytes) -> None:
        """A malformed request: 400, a body that echoes nothing, the security headers."""
        with capture_logs() as logs:
            answer = await raw(stack.port, request_bytes)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400") or head.startswith(b"HTTP/1.0 400"), head
        assert b"Bad request\n" == body
        assert b"Content-Security-Policy: default-src 'none'" in head
        assert b"X-Content-Type-Options: nosniff" in head
        assert SECRET.encode() not in answer
        events = [e for e in logs if e["event"] == "http_request_malformed"]
        assert 1 == len(events)
        assert {"error_class", "status", "peer", "suppressed"} <= set(events[0])
        assert SECRET not in repr(logs)

    async def test_a_burst_is_one_line(self, stack: Stack) -> None:
        """300 malformed requests: one warning, then one summary per 10 s (not one each)."""
        started = time.monotonic()
        with capture_logs() as logs:
            for i in range(300):
                await raw(stack.port, MALFORMED[i % len(MALFORMED)])
        intervals = int((time.monotonic() - started) // 10)  # on a slow machine, more than 0
        events = [e for e in logs if e["event"] == "http_request_malformed"]
        assert 1 <= len(events) <= 1 + intervals, events
        assert 0 == events[0]["suppressed"]


async def test_descriptors_running_out_is_one_warning_per_interval() -> None:
    """Should descriptors run out anyway: asyncio's error per refused accept (a traceback
    each) becomes one ``accept_failed`` warning per interval that says what to do; any other
    loop error still reaches asyncio's own handler."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    quiet_accept_failures(loop, interval=60.0)
    try:
        with capture_logs() as logs:
            for _ in range(128):  # one burst of refused accepts
                loop.call_exception_handler({
                    "message": "socket.accept() out of system resource",
                    "exception": OSError(errno.EMFILE, "Too many open files")})
        assert [("accept_failed", "OSError", errno.EMFILE, 0)] == [
            (e["event"], e["error"], e["errno"], e["suppressed"]) for e in logs]
        assert "LimitNOFILE" in logs[0]["fix"]
        seen: list[dict[str, Any]] = []
        # the test's own handler, to see what is reported: it takes what the loop's gets
        loop.default_exception_handler = seen.append  # type: ignore[method-assign,assignment]
        try:
            loop.call_exception_handler({"message": "something else"})
        finally:
            del loop.default_exception_handler
        assert [{"message": "something else"}] == seen
    finally:
        loop.set_exception_handler(previous)


class TestSlowAndIdleClients:
    @pytest.fixture
    async def agent(self, tmp_path: Path, stack: Stack) -> AsyncIterator[int]:
        """A second agent on the stack's settings with a 1 s header timeout and a cap of 40."""
        runner = FrontDoorRunner(create_app(stack.settings, persist=False),
                                 header_timeout=1.0, max_connections=40, shutdown_timeout=0.5)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield port
        await runner.cleanup()

    async def test_slow_header_client_cut_off(self, agent: int) -> None:
        """One header byte every 0.3 s: the connection is closed, not kept for ever."""
        reader, writer = await asyncio.open_connection("127.0.0.1", agent)
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        closed = False
        for _ in range(100):  # 30 s of trickling at most
            if reader.at_eof() or writer.is_closing():
                closed = True
                break
            try:
                writer.write(b"X")
                await writer.drain()
                data = await asyncio.wait_for(reader.read(1), 0.3)
                if data == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except ConnectionError:
                closed = True
                break
        writer.close()
        assert closed

    async def test_idle_connections_do_not_lock_out(self, agent: int) -> None:
        """More idle connections than the cap: /healthz still answers."""
        idle = [await asyncio.open_connection("127.0.0.1", agent) for _ in range(100)]
        try:
            answer = await raw(agent, b"GET /healthz HTTP/1.1\r\nHost: a\r\n"
                                      b"Connection: close\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        finally:
            for _, writer in idle:
                writer.close()


SLOW_BODY_HEAD = (b"POST /auth/local/sign-in HTTP/1.1\r\nHost: a\r\n"
                  b"Content-Type: application/x-www-form-urlencoded\r\n"
                  b"Content-Length: 1000\r\n\r\n")


async def answers(port: int, request: bytes) -> bytes:
    """The answer to ``request``, or what went wrong instead (a reset, a timeout)."""
    try:
        return await raw(port, request, timeout=5.0)
    except (OSError, TimeoutError) as exc:
        return f"failed: {type(exc).__name__}".encode()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes | None:
    """What the agent answered before closing this connection within ``seconds`` (EOF or
    reset); None while it is still open then."""
    received = b""
    try:
        async with asyncio.timeout(seconds):
            while data := await reader.read(4096):
                received += data
    except TimeoutError:
        return None
    except OSError:
        pass
    return received


class TestSlowBodies:
    @pytest.fixture
    async def agent(self, stack: Stack) -> AsyncIterator[int]:
        """A second agent with the front door's defaults and the cap 400 descriptors give."""
        runner = FrontDoorRunner(create_app(stack.settings, persist=False),
                                 max_connections=connection_cap(400), shutdown_timeout=0.5)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield port
        await runner.cleanup()

    @pytest.mark.timeout(90)
    async def test_slow_bodies_neither_lock_out_nor_stay(self, agent: int) -> None:
        """160 clients send a sign-in head with Content-Length 1000, then 10 bytes and
        nothing more (issue 23, 1): /healthz and /auth/check still answer, and every one of
        those connections is dropped once the whole-request deadline has passed."""
        slow = []
        try:
            for _ in range(160):
                reader, writer = await asyncio.open_connection("127.0.0.1", agent)
                writer.write(SLOW_BODY_HEAD + b"username=x")
                slow.append((reader, writer))
            await asyncio.gather(*(writer.drain() for _, writer in slow))
            await asyncio.sleep(0.5)
            health = await answers(agent, b"GET /healthz HTTP/1.1\r\nHost: a\r\n"
                                          b"Connection: close\r\n\r\n")
            check = await answers(agent, b"GET /auth/check HTTP/1.1\r\nHost: a\r\n"
                                         b"Connection: close\r\n\r\n")
            assert health.startswith(b"HTTP/1.1 200"), health[:200]
            assert check.startswith(b"HTTP/1.1 401"), check[:200]
            deadline = BODY_TIMEOUT + 1000 / MIN_BODY_RATE + 5.0  # slack for a loaded machine
            closed = await asyncio.gather(*(closed_within(reader, deadline)
                                            for reader, _ in slow))
            assert [] == [answer for answer in closed if answer is None]
            answered = [answer for answer in closed if answer]
            # the cap (144) sheds the oldest slow bodies for the 16 beyond it and the probes
            assert len(answered) >= 160 - 16 - 2
            assert all(a.startswith(b"HTTP/1.1 408") and a.endswith(b"\r\n\r\nRequest too slow\n")
                       for a in answered), answered[0]
        finally:
            for _, writer in slow:
                writer.close()

    @pytest.fixture
    async def quick(self, stack: Stack) -> AsyncIterator[int]:
        """A second agent whose bodies get 0.5 s plus one second per 10,000 bytes."""
        runner = FrontDoorRunner(create_app(stack.settings, persist=False),
                                 body_timeout=0.5, min_body_rate=10_000, shutdown_timeout=0.5)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield port
        await runner.cleanup()

    async def test_a_trickled_body_is_cut_at_the_minimum_rate(self, quick: int) -> None:
        """A 1,000-byte body sent a byte every 0.1 s (never stalled, but ten bytes a
        second): 408 and closed after 0.5 + 0.1 s, not after the 100 s it would take."""
        reader, writer = await asyncio.open_connection("127.0.0.1", quick)
        started = time.monotonic()
        writer.write(SLOW_BODY_HEAD)
        try:
            while not reader.at_eof() and time.monotonic() - started < 15:
                writer.write(b"x")
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(reader.read(4096), 0.1):
                        break
        except ConnectionError:
            pass
        finally:
            writer.close()
        assert time.monotonic() - started < 5

    async def test_a_chunked_body_has_a_deadline_too(self, quick: int) -> None:
        """A chunked body that stops after its first chunk: 408 within the budget of the
        largest body the app accepts (64 KiB at 10,000 bytes a second here: 7 s)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", quick)
        started = time.monotonic()
        writer.write(b"POST /auth/logout HTTP/1.1\r\nHost: a\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        answer = await closed_within(reader, 30)
        writer.close()
        assert answer is not None and answer.startswith(b"HTTP/1.1 408"), answer
        assert 6.5 < time.monotonic() - started < 20

    async def test_a_whole_body_in_time_is_served(self, quick: int) -> None:
        """A body that arrives in time reaches the route as before (here: no session, so
        to the sign-in page)."""
        answer = await raw(quick, b"POST /auth/logout HTTP/1.1\r\nHost: a\r\n"
                                  b"Content-Type: application/x-www-form-urlencoded\r\n"
                                  b"Content-Length: 12\r\nConnection: close\r\n\r\n"
                                  b"csrf_token=x")
        assert answer.startswith(b"HTTP/1.1 303"), answer[:200]
        assert b"Location: /login\r\n" in answer


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))  # systemd's default soft limit


class TestRealProcess:
    @pytest.fixture
    async def process(self, tmp_path: Path, stack: Stack) -> AsyncIterator[
            tuple[subprocess.Popen[bytes], int, Path]]:
        """`python -m agent serve` with 1,024 file descriptors, as under systemd's default."""
        await stack.stop_agent()
        port = stack.port
        config = write_config(tmp_path / "agent.toml",
                              agent_config(stack.idp, port, tmp_path / "state"))
        out = tmp_path / "agent.out"
        with out.open("wb") as sink:
            proc = subprocess.Popen(  # noqa: S603, ASYNC220 - our interpreter; starts at once
                [sys.executable, "-m", "agent", "serve", "--config", str(config)],
                stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT, preexec_fn=_low_fd_limit,
                env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
        try:
            deadline = time.monotonic() + 20
            while b'"agent_ready"' not in out.read_bytes():
                assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
                await asyncio.sleep(0.05)
            yield proc, port, out
        finally:
            proc.terminate()
            proc.wait(10)

    async def test_malformed_flood_adds_a_few_json_lines(
            self, process: tuple[subprocess.Popen[bytes], int, Path]) -> None:
        """300 malformed requests to the real process: a few lines, all JSON, no secret."""
        _, port, out = process
        before = len(out.read_bytes().splitlines())
        started = time.monotonic()
        for i in range(300):
            await raw(port, MALFORMED[i % len(MALFORMED)])
        intervals = int((time.monotonic() - started) // 10)  # one summary line per 10 s
        await asyncio.sleep(0.5)
        lines = out.read_bytes().splitlines()[before:]
        assert 1 <= len(lines) <= 2 + intervals, lines
        assert all(json.loads(line)["event"] == "http_request_malformed" for line in lines)
        assert SECRET.encode() not in out.read_bytes()

    @pytest.mark.timeout(120)
    async def test_1100_idle_connections_leave_healthz_answering(
            self, process: tuple[subprocess.Popen[bytes], int, Path]) -> None:
        """1,100 idle connections against 1,024 descriptors: /healthz answers, the log stays
        small."""
        _, port, out = process
        idle = []
        try:
            for _ in range(1100):
                idle.append(await asyncio.open_connection("127.0.0.1", port))
            answer = await raw(port, b"GET /healthz HTTP/1.1\r\nHost: a\r\n"
                                     b"Connection: close\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        finally:
            for _, writer in idle:
                writer.close()
        assert len(out.read_bytes()) < 20_000

    @pytest.mark.timeout(120)
    async def test_a_burst_of_connections_near_the_descriptor_limit_stays_quiet(
            self, process: tuple[subprocess.Popen[bytes], int, Path]) -> None:
        """900 idle connections, then 200 that arrive at once (the agent accepts a whole
        burst before it can shed any): no descriptor runs out, so no asyncio error per
        accept; /healthz answers and the log stays JSON and small."""
        proc, port, out = process
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(900)]
        before = len(out.read_bytes())
        os.kill(proc.pid, signal.SIGSTOP)  # the kernel queues what arrives meanwhile
        try:
            burst = [asyncio.ensure_future(asyncio.open_connection("127.0.0.1", port))
                     for _ in range(200)]
            await asyncio.sleep(1.0)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        try:
            done, waiting = await asyncio.wait(burst, timeout=15)
            for task in waiting:
                task.cancel()
            answer = await raw(port, b"GET /healthz HTTP/1.1\r\nHost: a\r\n"
                                     b"Connection: close\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        finally:
            for _, writer in idle + [task.result() for task in done if not task.exception()]:
                writer.close()
        log = out.read_bytes()[before:]
        assert b"out of system resource" not in log, log[:2000]
        assert b"accept_failed" not in log, log[:2000]  # the cap left room for the burst
        assert all(json.loads(line) for line in log.splitlines())
        assert len(log) < 5_000, log[:2000]
