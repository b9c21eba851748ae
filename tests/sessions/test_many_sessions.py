"""Many sessions without stalls (docs/performance.md): restored sessions out of the collector's
reach (a restart, as a reload does, still frees the application it replaces), the sweep of
expired sessions in slices, the re-validation schedule read from a tuple of keys; and
/auth/check's own reading of the session cookie."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from agent.demo import DEMO_GROUPS
from agent.sessions.store import COOKIE_NAME, Session, SessionStore
from agent.settings import settings_from_mapping
from agent.signin.identity import IdentityProvider
from agent.signin.revalidation import Revalidator
from agent.web.app import FREEZE_AT, SWEEP_SLICE_MIN, sweep_slice
from agent.web.check import session_cookie
from bench.stack import seed_sessions
from tests.clock import Clock
from tests.harness import CLIENT, ROLE_GROUPS, TENANT, make_stack


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    """A freeze is process-wide: the tests after this one get a collector that sees all."""
    yield
    gc.unfreeze()


def _demo_reader_groups(data: dict[str, Any]) -> None:
    data["roles"]["read_only"].append(DEMO_GROUPS["read_only"][0])  # the seeded sessions'


async def test_restored_sessions_are_frozen_and_a_restart_frees_the_old_application(
        tmp_path: Path) -> None:
    """After restoring ``FREEZE_AT`` sessions the collector no longer walks them (they are
    frozen), sign-in and /auth/check work as before, and a restart of the application
    (a SIGHUP reload does the same) unfreezes first, so the old application, which only
    reference cycles keep, is freed rather than kept for ever."""
    seed_sessions(tmp_path / "state", FREEZE_AT)
    stack = await make_stack(tmp_path, config=_demo_reader_groups)
    try:
        assert stack.app is not None
        assert gc.get_freeze_count() >= FREEZE_AT
        browser = stack.browser()
        await browser.sign_in("admin@contoso.example")
        resp = await browser.get("/auth/check")
        assert 200 == resp.status and "admin" == resp.headers["X-Auth-Request-Role"]

        old = weakref.ref(stack.app)
        await stack.stop_agent()
        stack.app = None
        await stack.start_agent()
        gc.collect()  # what the collector's next full pass does
        assert old() is None
        assert gc.get_freeze_count() >= FREEZE_AT  # the new application's sessions
        resp = await browser.get("/auth/check")
        assert 200 == resp.status  # the signed-in session was restored too
    finally:
        await stack.close()


async def test_few_sessions_are_not_frozen(tmp_path: Path) -> None:
    """Below ``FREEZE_AT`` restored sessions nothing is frozen (the full collection a freeze
    needs first would cost more than the collector's passes over so few)."""
    gc.freeze()  # as left by an application restored before this one
    stack = await make_stack(tmp_path)
    try:
        assert 0 == gc.get_freeze_count()
    finally:
        await stack.close()


def _store(clock: Clock) -> SessionStore:
    store = SessionStore(None, idle_timeout=1800, absolute_timeout=43200, clock=clock)
    store.load()
    return store


async def _add(store: SessionStore, upn: str, refresh_token: str | None = None) -> Session:
    _, session = store.new_session(upn=upn, given_name="A", family_name="B", oid=upn,
                                   role="admin", groups=["g"], auth_time=1.0,
                                   refresh_token=refresh_token)
    await store.put(session)
    return session


async def test_sweeps_in_slices_cover_the_whole_store() -> None:
    """One slice per flush: one pass of slices removes every expired session (however many
    were removed before them in the store's order) and nothing else."""
    clock = Clock()
    store = _store(clock)
    old = [await _add(store, f"old{i}@contoso.example") for i in range(3 * SWEEP_SLICE_MIN)]
    clock.advance(1000)
    young = [await _add(store, f"new{i}@contoso.example") for i in range(SWEEP_SLICE_MIN)]
    for session in old[::2]:  # every other old one stays in use
        session.last_seen = clock()
    clock.advance(1000)  # idle timeout 1800 s: the untouched old ones are past it
    cursor = 0
    for _ in range(4):  # 4,000 sessions, SWEEP_SLICE_MIN (fewer than 15,000: the minimum)
        cursor = sweep_slice(store, cursor)
    assert {s.key for s in store.live()} == {s.key for s in old[::2] + young}


def _revalidator(store: SessionStore, clock: Clock) -> Revalidator:
    data = {"entra": {"tenant_id": TENANT, "client_id": CLIENT,
                      "redirect_uri": "https://sensor.example/auth/sso/callback"},
            "roles": {k: list(v) for k, v in ROLE_GROUPS.items()},
            "session": {"revalidate_interval": "80s"}}
    # The schedule needs no directory, client or Graph: nothing is re-validated here.
    idp = IdentityProvider(settings_from_mapping(data), None, None, None)  # type: ignore[arg-type]
    return Revalidator(idp, store, clock)


async def test_the_revalidation_pass_is_keys_the_collector_stops_walking() -> None:
    """A pass through the schedule holds the sessions' keys in a tuple (after a collection
    the collector no longer walks it), finds what is due, and skips sessions that ended
    meanwhile; sessions added meanwhile are found by the next pass."""
    clock = Clock()
    store = _store(clock)
    sessions = [await _add(store, f"u{i}@contoso.example", "rt") for i in range(3)]
    await _add(store, "local@contoso.example")  # no refresh token: never due
    engine = _revalidator(store, clock)
    clock.advance(200)  # past every schedule (80 s)
    gone = sessions.pop()
    engine._pass, engine._next = store.keys(), 0  # the pass started before it ended
    await store.revoke([gone.key])
    late = await _add(store, "late@contoso.example", "rt")
    late.revalidated = clock() - 200
    gc.collect()
    assert not gc.is_tracked(engine._pass)
    assert {s.key for s in engine.due(clock())} == {s.key for s in sessions}
    # The next pass: the late one too (nothing was re-validated here, so the rest again).
    assert {s.key for s in engine.due(clock())} == {s.key for s in [*sessions, late]}


COOKIE_HEADERS = [
    "", f"{COOKIE_NAME}=abc", f"theme=dark; {COOKIE_NAME}=abc", f" {COOKIE_NAME} = abc ;x=1",
    f"{COOKIE_NAME}=a; {COOKIE_NAME}=b", COOKIE_NAME, f"{COOKIE_NAME}=", f"x={COOKIE_NAME}=y",
    f"{COOKIE_NAME}=a=b", f'{COOKIE_NAME}="q;x"', f"a=\\x; {COOKIE_NAME}=v",
    f"{COOKIE_NAME}=a b", f";;{COOKIE_NAME}=v;;", f"{COOKIE_NAME.lower()}=v",
    f"foo; {COOKIE_NAME}=v", f"{COOKIE_NAME}=v\t", f"$Version=1; {COOKIE_NAME}=v",
    f"{COOKIE_NAME}=v,w", f"a=b; path=/; {COOKIE_NAME}=v; secure", f"{COOKIE_NAME}=é",
]


@pytest.mark.parametrize("header", COOKIE_HEADERS)
def test_the_session_cookie_is_read_as_aiohttp_reads_it(header: str) -> None:
    """/auth/check reads the session cookie without aiohttp's full parser (a Morsel per
    cookie), yet always finds what ``request.cookies`` finds: duplicates, spaces, quotes,
    escapes and names without a value included."""
    request = make_mocked_request("GET", "/auth/check",
                                  headers={"Cookie": header} if header else {})
    assert request.cookies.get(COOKIE_NAME) == session_cookie(request)
