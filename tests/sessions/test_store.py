"""Session store: lookups, timeouts, encrypted journal, crash safety, unreadable state."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from structlog.testing import capture_logs

from agent.sessions.journal import JOURNAL_FILE, KEY_FILE
from agent.sessions.store import SessionStore
from tests.clock import Clock


def new_store(path: Path | None, clock: Clock) -> SessionStore:
    store = SessionStore(path, idle_timeout=1800, absolute_timeout=43200, clock=clock)
    store.load()
    return store


async def add(store: SessionStore, upn: str = "ana@contoso.example") -> str:
    cookie, session = store.new_session(upn=upn, given_name="Ana", family_name="Silva",
                                        oid="oid-1", role="admin", groups=["g"], auth_time=1.0)
    await store.put(session)
    return cookie


class TestSessionStore:
    async def test_lookup_by_cookie(self, tmp_path: Path) -> None:
        """A stored session is found by its cookie id and by nothing else."""
        store = new_store(tmp_path, Clock())
        cookie = await add(store)
        found = store.get(cookie)
        assert found is not None and "ana@contoso.example" == found.upn
        assert store.get(cookie + "x") is None and store.get(None) is None

    async def test_expires_at_the_earlier_of_idle_and_absolute(self, tmp_path: Path) -> None:
        """A session ends at its idle timeout unless used; never after its absolute one."""
        clock = Clock()
        store = new_store(tmp_path, clock)
        cookie = await add(store)
        started = clock.now
        for _ in range(27):  # used every 25 minutes: the idle timeout is the nearer
            clock.advance(1500)
            session = store.get(cookie)
            assert session is not None
            assert clock.now + 1800 == store.expires_at(session)
        clock.advance(1500)
        session = store.get(cookie)
        assert session is not None and started + 43200 == store.expires_at(session)

    async def test_key_file_is_private(self, tmp_path: Path) -> None:
        """The encryption key is created 0600 on first start."""
        new_store(tmp_path, Clock())
        assert 0o600 == stat.S_IMODE(os.stat(tmp_path / KEY_FILE).st_mode)

    async def test_journal_holds_no_plaintext(self, tmp_path: Path) -> None:
        """Neither the UPN nor the cookie id appear in the state file."""
        store = new_store(tmp_path, Clock())
        cookie = await add(store)
        data = (tmp_path / JOURNAL_FILE).read_bytes()
        assert b"ana@contoso.example" not in data and cookie.encode() not in data

    async def test_restart_restores_sessions_and_deletions(self, tmp_path: Path) -> None:
        """A new store on the same directory knows live sessions and forgets deleted ones."""
        clock = Clock()
        store = new_store(tmp_path, clock)
        keep, gone = await add(store), await add(store, "bo@contoso.example")
        await store.delete(gone)
        again = new_store(tmp_path, clock)
        assert again.get(keep) is not None and again.get(gone) is None

    async def test_sessions_share_their_group_tuple_across_restarts(self,
                                                                      tmp_path: Path) -> None:
        """Sessions with the same groups hold one tuple, not one each (memory at 100,000
        sessions), before and after a restart; the restored sessions have their groups."""
        clock = Clock()
        store = new_store(tmp_path, clock)
        one, two = await add(store), await add(store, "bo@contoso.example")
        first, second = store.get(one), store.get(two)
        assert first is not None and second is not None
        assert ("g",) == first.groups and first.groups is second.groups
        again = new_store(tmp_path, clock)
        first, second = again.get(one), again.get(two)
        assert first is not None and second is not None
        assert ("g",) == first.groups and first.groups is second.groups
        assert ("ana@contoso.example", "bo@contoso.example") == (first.upn, second.upn)

    async def test_idle_refresh_is_persisted(self, tmp_path: Path) -> None:
        """A refreshed idle timer survives a restart once flushed."""
        clock = Clock()
        store = new_store(tmp_path, clock)
        cookie = await add(store)
        clock.advance(1700)
        assert store.get(cookie) is not None
        await store.flush()
        clock.advance(1700)
        assert new_store(tmp_path, clock).get(cookie) is not None

    async def test_expired_sessions_dropped_on_restart(self, tmp_path: Path) -> None:
        """Sessions past their idle timeout are not restored."""
        clock = Clock()
        cookie = await add(new_store(tmp_path, clock))
        clock.advance(1801)
        assert new_store(tmp_path, clock).get(cookie) is None

    async def test_torn_tail_is_dropped_and_later_records_kept(self, tmp_path: Path) -> None:
        """A write torn by a crash (no newline) is dropped with a warning and truncated away,
        so the records written after the restart are not swallowed by the broken line."""
        clock = Clock()
        store = new_store(tmp_path, clock)
        cookie = await add(store)
        size = (tmp_path / JOURNAL_FILE).stat().st_size
        with open(tmp_path / JOURNAL_FILE, "ab") as f:
            f.write(b"QUJD")  # half a record, no newline
        with capture_logs() as logs:
            again = new_store(tmp_path, clock)
        assert again.get(cookie) is not None
        assert ["session_state_torn_tail"] == [e["event"] for e in logs
                                               if e["event"].startswith("session_state")]
        assert size == (tmp_path / JOURNAL_FILE).stat().st_size
        later = await add(again, "bo@contoso.example")
        third = new_store(tmp_path, clock)
        assert third.get(cookie) is not None and third.get(later) is not None

    async def test_unreadable_lines_set_aside_by_rename(self, tmp_path: Path) -> None:
        """Whole lines that do not decrypt: the readable records are kept, the old file is
        renamed aside (the same inode: no copy, which a full disk could not hold)."""
        clock = Clock()
        store = new_store(tmp_path, clock)
        first = await add(store)
        with open(tmp_path / JOURNAL_FILE, "ab") as f:
            f.write(b"not a record\n")
        second = await add(store, "bo@contoso.example")
        inode = (tmp_path / JOURNAL_FILE).stat().st_ino
        with capture_logs() as logs:
            again = new_store(tmp_path, clock)
        assert again.get(first) is not None and again.get(second) is not None
        bad = [e for e in logs if e["event"] == "session_state_unreadable"]
        assert 1 == len(bad) and 1 == bad[0]["unreadable_records"]
        [aside] = tmp_path.glob(JOURNAL_FILE + ".unreadable-*")
        assert inode == aside.stat().st_ino != (tmp_path / JOURNAL_FILE).stat().st_ino
        with capture_logs() as logs:
            new_store(tmp_path, clock)
        assert not [e for e in logs if e["event"] == "session_state_unreadable"]

    async def test_foreign_state_file_is_set_aside(self, tmp_path: Path) -> None:
        """A journal written with another key is set aside; the agent starts empty."""
        clock = Clock()
        cookie = await add(new_store(tmp_path, clock))
        (tmp_path / KEY_FILE).write_bytes(os.urandom(32))
        with capture_logs() as logs:
            again = new_store(tmp_path, clock)
        assert again.get(cookie) is None and 0 == len(again)
        assert any(e["event"] == "session_state_unreadable" for e in logs)

    async def test_per_user_cap_counts_live_sessions_only(self, tmp_path: Path) -> None:
        """The cap ends the oldest live sessions of that user only; expired ones do not count
        and the per-user index follows sign-outs, expiry and restarts."""
        clock = Clock()
        store = SessionStore(tmp_path, idle_timeout=1800, absolute_timeout=43200, clock=clock,
                             max_per_user=2)
        store.load()
        old = await add(store)
        clock.advance(1801)  # idle: expired, not yet swept
        a, b = await add(store), await add(store)
        assert store.get(a) is not None and store.get(b) is not None and store.get(old) is None
        other = await add(store, "bo@contoso.example")
        await store.delete(b)
        c, d = await add(store), await add(store)
        assert [None, None] == [store.get(x) for x in (a, b)]
        assert store.get(c) and store.get(d) and store.get(other)
        assert 2 == len(store.keys_of("ana@contoso.example"))
        again = SessionStore(tmp_path, idle_timeout=1800, absolute_timeout=43200, clock=clock,
                             max_per_user=2)
        again.load()
        assert 2 == len(again.keys_of("ana@contoso.example"))
        e = await add(again)
        assert again.get(c) is None and again.get(d) and again.get(e)

    async def test_memory_only_store(self) -> None:
        """Without a state directory the store works in memory."""
        store = new_store(None, Clock())
        cookie = await add(store)
        assert store.get(cookie) is not None


class TestWallClock:
    async def test_idle_and_absolute_expiry_under_freezegun(self, tmp_path: Path) -> None:
        """With the real clock (frozen and moved by freezegun) both timeouts end a session."""
        import time

        from freezegun import freeze_time

        with freeze_time("2026-11-26 08:00:00") as frozen:
            store = SessionStore(tmp_path, idle_timeout=1800, absolute_timeout=7200,
                                 clock=lambda: time.time())
            store.load()
            idle = await add(store)
            active = await add(store, "bo@contoso.example")
            for _ in range(3):
                frozen.tick(1700)
                assert store.get(active) is not None
            assert store.get(idle) is None  # 5100 s without a request: idle timeout
            frozen.move_to("2026-11-26 08:00:00")
            fresh = await add(store)
            for _ in range(5):
                frozen.tick(1500)
                store.get(fresh)
            assert store.get(fresh) is None  # 7500 s > absolute 7200 s despite activity


async def add_sso(store: SessionStore, token: str | None, upn: str = "ana@contoso.example",
                  sid: str | None = "sid-1") -> str:
    cookie, session = store.new_session(upn=upn, given_name="Ana", family_name="Silva",
                                        oid="oid-1", role="admin", groups=["g"], auth_time=1.0,
                                        sub="sub-1", sid=sid, refresh_token=token)
    await store.put(session)
    return cookie


TOKEN = "0.AUoA" + "r" * 1100


class TestRefreshTokensLiveInTheJournal:
    async def test_no_token_in_memory_after_put_or_restart(self, tmp_path: Path) -> None:
        """Once written, a session's refresh token is not held in memory; re-validation reads
        it from the journal, before and after a restart; the file holds it only encrypted."""
        clock = Clock()
        store = new_store(tmp_path, clock)
        cookie = await add_sso(store, TOKEN)
        session = store.get(cookie)
        assert session is not None and session.new_refresh_token is None
        assert session.has_refresh_token and TOKEN == await store.refresh_token(session)
        assert TOKEN.encode() not in (tmp_path / JOURNAL_FILE).read_bytes()
        again = new_store(tmp_path, clock)
        restored = again.get(cookie)
        assert restored is not None and restored.new_refresh_token is None
        assert TOKEN == await again.refresh_token(restored)

    async def test_rotated_token_survives_flush_compaction_and_restart(
            self, tmp_path: Path) -> None:
        """A rotated token is journalled by the next flush; compaction copies token lines
        and the restored sessions read their own token, not a neighbour's."""
        clock = Clock()
        store = new_store(tmp_path, clock)
        cookies = [await add_sso(store, f"{TOKEN}-{i}", f"u{i}@contoso.example", f"sid-{i}")
                   for i in range(3)]
        first = store.get(cookies[0])
        assert first is not None
        store.replace_refresh_token(first, "rotated")
        assert "rotated" == await store.refresh_token(first)
        await store.flush()
        assert first.new_refresh_token is None and "rotated" == await store.refresh_token(first)
        assert store.journal is not None
        store.journal.lines = 10_000  # looks bloated: the next flush compacts
        await store.flush()
        assert store.journal.lines < 10
        again = new_store(tmp_path, clock)
        tokens = []
        for cookie in cookies:
            s = again.get(cookie)
            assert s is not None
            tokens.append(await again.refresh_token(s))
        assert ["rotated", f"{TOKEN}-1", f"{TOKEN}-2"] == tokens

    async def test_earlier_records_with_the_token_inline_are_moved_out(
            self, tmp_path: Path) -> None:
        """A journal of the earlier version (token inside the put record) is restored, then
        rewritten so that the token has a line of its own and is not kept in memory."""
        clock = Clock()
        store = new_store(tmp_path, clock)
        cookie, session = store.new_session(upn="ana@contoso.example", given_name="Ana",
                                            family_name="Silva", oid="oid-1", role="admin",
                                            groups=["g"], auth_time=1.0)
        old = {"op": "put", "session": {
            "key": session.key.hex(), "upn": "ana@contoso.example", "given_name": "Ana",
            "family_name": "Silva", "oid": "oid-1", "role": "admin", "groups": ["g"],
            "auth_time": 1.0, "created": session.created, "last_seen": session.created,
            "amr": [], "acrs": [], "sub": "", "sid": None, "revalidated": session.created,
            "method": "sso", "persisted_seen": 0.0, "csrf_token": "x" * 43,
            "refresh_token": TOKEN}}
        assert store.journal is not None
        store.journal.append([old, {"op": "touch", "key": session.key.hex(),
                                    "last_seen": session.created + 5}])
        again = new_store(tmp_path, clock)
        restored = again.get(cookie, touch=False)
        assert restored is not None and restored.new_refresh_token is None
        assert restored.token_at >= 0 and TOKEN == await again.refresh_token(restored)
        assert (session.created + 5, "Silva") == (restored.last_seen, restored.family_name)
        third = new_store(tmp_path, clock)  # the rewritten journal, in this version's records
        assert third.get(cookie) is not None

    async def test_a_put_without_its_token_line_is_not_restored(self, tmp_path: Path) -> None:
        """A put whose refresh token's line is missing (cut off) cannot be re-validated:
        it is not restored; the sessions around it are."""
        clock = Clock()
        store = new_store(tmp_path, clock)
        keep = await add_sso(store, TOKEN, "bo@contoso.example", "sid-0")
        size = (tmp_path / JOURNAL_FILE).stat().st_size
        lost = await add_sso(store, TOKEN)
        data = (tmp_path / JOURNAL_FILE).read_bytes()
        put_line = data[size:].split(b"\n", 1)[0] + b"\n"
        (tmp_path / JOURNAL_FILE).write_bytes(data[:size] + put_line)
        with capture_logs() as logs:
            again = new_store(tmp_path, clock)
        assert again.get(lost) is None and again.get(keep) is not None
        assert any(e["event"] == "session_record_unusable" for e in logs)

    async def test_an_unreadable_token_line_gives_none_and_logs_no_secret(
            self, tmp_path: Path) -> None:
        """A token line that does not open (or names another session) yields None and an
        error that quotes nothing of the line."""
        clock = Clock()
        store = new_store(tmp_path, clock)
        cookie = await add_sso(store, TOKEN)
        other = await add_sso(store, TOKEN + "-other", "bo@contoso.example", "sid-2")
        session, neighbour = store.get(cookie), store.get(other)
        assert session is not None and neighbour is not None
        session.token_at = neighbour.token_at  # points at another session's token line
        with capture_logs() as logs:
            assert await store.refresh_token(session) is None
        assert ["session_refresh_token_unreadable"] == [e["event"] for e in logs]
        assert "other" not in str(logs) and "rrrr" not in str(logs)


class TestIndexesAndDerivedValues:
    async def test_sid_index_follows_sign_outs_and_restarts(self, tmp_path: Path) -> None:
        """with_sid finds the sessions of one Entra sign-in (two here), not others', forgets
        a signed-out one and is rebuilt at restart."""
        clock = Clock()
        store = new_store(tmp_path, clock)
        a, b = await add_sso(store, TOKEN, sid="s"), await add_sso(store, TOKEN, sid="s")
        c = await add_sso(store, TOKEN, "bo@contoso.example", sid="t")
        assert 2 == len(store.with_sid("s")) and 1 == len(store.with_sid("t"))
        assert [] == store.with_sid("u")
        await store.delete(a)
        found = store.with_sid("s")
        assert 1 == len(found) and found[0] is store.get(b, touch=False)
        again = new_store(tmp_path, clock)
        assert [again.get(b, touch=False)] == again.with_sid("s")
        assert [again.get(c, touch=False)] == again.with_sid("t")

    async def test_csrf_token_is_derived_stable_and_per_session(self, tmp_path: Path) -> None:
        """The CSRF token is the same after a restart (a page loaded before it still signs
        out), differs between sessions and is not the cookie; another store's key gives
        another token."""
        clock = Clock()
        store = new_store(tmp_path, clock)
        one, two = await add(store), await add(store, "bo@contoso.example")
        s1, s2 = store.get(one), store.get(two)
        assert s1 is not None and s2 is not None
        token = store.csrf_token(s1)
        assert 43 == len(token) and token != store.csrf_token(s2) and token != one
        assert store.csrf_ok(s1, token) and not store.csrf_ok(s2, token)
        assert not store.csrf_ok(s1, None) and not store.csrf_ok(s1, "")
        again = new_store(tmp_path, clock)
        r1 = again.get(one)
        assert r1 is not None and token == again.csrf_token(r1)
        elsewhere = new_store(tmp_path / "other", clock)
        assert token != elsewhere.csrf_token(r1)

    async def test_names_ids_and_sub_survive_any_characters_and_a_rename(
            self, tmp_path: Path) -> None:
        """The names, oid and sub share one string in memory: separators, digits and
        non-ASCII in them come back intact, after a restart and after a rename."""
        clock = Clock()
        store = new_store(tmp_path, clock)
        cookie, session = store.new_session(
            upn="ana@contoso.example", given_name="Ana 3:4:", family_name="Ślusarz:1",
            oid="0:1", role="admin", groups=["g"], auth_time=1.0, sub="s:ub")
        await store.put(session)
        again = new_store(tmp_path, clock)
        restored = again.get(cookie)
        assert restored is not None
        assert ("Ana 3:4:", "Ślusarz:1", "0:1", "s:ub") == (
            restored.given_name, restored.family_name, restored.oid, restored.sub)
        restored.given_name = "Anna"
        restored.family_name = ""
        assert ("Anna", "", "0:1", "s:ub") == (
            restored.given_name, restored.family_name, restored.oid, restored.sub)
