"""``sensor-sso-agent local-user …`` as a real process, and SIGHUP ending a removed account's
session in a real agent process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.local.accounts import AccountsError, read_accounts
from tests.harness import Stack, make_stack, write_config
from tests.local.helpers import LOCAL_PASSWORD, local_sign_in
from tests.security.subprocess_agent import ROOT, AgentProcess

PASSWORD = "copper-lantern-river-7"


class LocalUser:
    """Runs ``python -m agent local-user …`` against one config file."""

    def __init__(self, tmp_path: Path, config: Path | None = None) -> None:
        self.accounts = tmp_path / "local-accounts"
        self.config = config or tmp_path / "agent.toml"
        if config is None:
            data = agent_config_stub(self.accounts, tmp_path)
            write_config(self.config, data)

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "agent", "local-user", *args, "--config", str(self.config)],
            input=stdin, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
            check=False)

    def add(self, name: str, role: str = "admin", password: str = PASSWORD
            ) -> subprocess.CompletedProcess[str]:
        return self("add", name, "--role", role, "--first-name", "Ada", "--last-name",
                    "Lovelace", "--password-stdin", stdin=password + "\n")

    def audit(self, result: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
        return [json.loads(line) for line in result.stderr.splitlines()
                if line.startswith("{")]


def agent_config_stub(accounts: Path, tmp_path: Path) -> dict[str, dict[str, object]]:
    return {
        "entra": {"tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
                  "client_id": "0b5b0b4e-3c8b-4bfb-8f0e-6c0f1c2d3e4f",
                  "redirect_uri": "https://sensor-01.plant.example/auth/sso/callback"},
        "roles": {"admin": ["aaaaaaaa-0000-4000-8000-000000000001"]},
        "session": {"state_dir": str(tmp_path / "state")},
        "local": {"accounts_file": str(accounts)},
    }


@pytest.fixture
def local_user(tmp_path: Path) -> LocalUser:
    return LocalUser(tmp_path)


class TestCommands:
    def test_add_then_list_shows_the_account_and_never_the_password(
            self, local_user: LocalUser) -> None:
        """add (password on stdin) → list; the file is 0600 and holds an scrypt hash."""
        added = local_user.add("breakglass")
        listed = local_user("list")
        assert (0, 0) == (added.returncode, listed.returncode), added.stderr
        assert "breakglass" in listed.stdout and "Admin" in listed.stdout
        assert "Ada Lovelace" in listed.stdout
        header = listed.stdout.splitlines()[0]
        assert ["USER NAME", "ROLE", "FIRST AND LAST NAME"] == re.split(r"\s{2,}", header.strip())
        mode = stat.S_IMODE(local_user.accounts.stat().st_mode)
        text = local_user.accounts.read_text()
        assert (0o600, True, False) == (mode, "scrypt$" in text, PASSWORD in text)
        for out in (added.stdout, added.stderr, listed.stdout, listed.stderr):
            assert PASSWORD not in out
        assert [("local_account_added", "breakglass", "admin")] == [
            (e["event"], e["name"], e["role"]) for e in local_user.audit(added)]

    def test_a_weak_password_is_refused_and_nothing_is_written(
            self, local_user: LocalUser) -> None:
        """A common password: exit 1, the rule named, no file, no password echoed."""
        result = local_user.add("breakglass", password="Password1234!")
        assert (1, False) == (result.returncode, local_user.accounts.exists())
        assert "password refused: one of the commonest passwords" in result.stderr
        assert "Password1234!" not in result.stderr + result.stdout

    def test_a_short_password_is_refused(self, local_user: LocalUser) -> None:
        """Below 12 characters: exit 1 with the minimum."""
        result = local_user.add("breakglass", password="Tr0ub4dor&3")
        assert 1 == result.returncode and "at least 12 characters" in result.stderr

    @pytest.mark.parametrize("name", ["ada@contoso.example", "Ada", "-x", "a" * 33, "a b"])
    def test_names_that_could_look_like_a_upn_or_a_flag_are_refused(
            self, local_user: LocalUser, name: str) -> None:
        """No '@' (never collides with a UPN), lowercase, no spaces, at most 32."""
        result = local_user("add", "--role", "admin", "--first-name", "A", "--last-name",
                            "B", "--password-stdin", "--", name, stdin=PASSWORD + "\n")
        assert 1 <= result.returncode and not local_user.accounts.exists()

    def test_passwd_changes_the_hash_and_the_id_and_remove_removes(
            self, local_user: LocalUser) -> None:
        """passwd: new hash and id (sessions end at reload); remove: gone; unknown: exit 1."""
        local_user.add("breakglass")
        before = read_accounts(local_user.accounts)["breakglass"]
        changed = local_user("passwd", "breakglass", "--password-stdin",
                             stdin="indigo-harbour-maple-3\n")
        after = read_accounts(local_user.accounts)["breakglass"]
        assert 0 == changed.returncode, changed.stderr
        assert (True, True) == (before.password_hash != after.password_hash,
                                before.id != after.id)
        assert ["local_account_changed"] == [e["event"] for e in local_user.audit(changed)]
        removed = local_user("remove", "breakglass")
        assert (0, {}) == (removed.returncode, read_accounts(local_user.accounts))
        assert ["local_account_removed"] == [e["event"] for e in local_user.audit(removed)]
        assert 1 == local_user("remove", "breakglass").returncode
        assert 1 == local_user("passwd", "nobody", "--password-stdin",
                               stdin=PASSWORD + "\n").returncode

    def test_a_duplicate_name_is_refused(self, local_user: LocalUser) -> None:
        """add twice: the second fails and the first stays."""
        local_user.add("breakglass")
        assert 1 == local_user.add("breakglass", role="read_only").returncode
        assert "admin" == read_accounts(local_user.accounts)["breakglass"].role

    def test_the_password_is_not_a_command_line_argument(self, local_user: LocalUser) -> None:
        """There is no --password option: argv never carries one (ps shows argv)."""
        result = local_user("add", "x", "--role", "admin", "--first-name", "A",
                            "--last-name", "B", "--password", PASSWORD)
        assert 2 == result.returncode and not local_user.accounts.exists()


class TestCheckConfig:
    def test_check_config_counts_the_accounts_and_warns_about_an_unsafe_file(
            self, local_user: LocalUser) -> None:
        """check-config names the accounts it found, or why the file cannot be used."""
        local_user.add("breakglass")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        command = [sys.executable, "-m", "agent", "check-config", "--config",
                   str(local_user.config)]
        ok = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT,  # noqa: S603
                            timeout=60, check=False)
        assert "local sign-in: 1 account in" in ok.stdout, ok.stderr
        local_user.accounts.chmod(0o644)
        unsafe = subprocess.run(command, capture_output=True, text=True, env=env,  # noqa: S603
                                cwd=ROOT, timeout=60, check=False)
        assert "local accounts unusable" in unsafe.stderr and "chmod 0640" in unsafe.stderr


class TestTheFile:
    @pytest.mark.parametrize(("field", "value"), [
        ("password_hash", 12345), ("password_hash", None), ("role", ["admin"]),
        ("given_name", 7), ("family_name", {"x": 1}), ("id", 3.5), ("changed", "yesterday"),
        ("changed", True), ("name", 1), ("name", "Not@Valid"), ("role", "superuser"),
        ("password_hash", "scrypt$n=3,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA"),
        ("password_hash", "plain-text-password")])
    def test_a_field_of_the_wrong_type_is_named_with_its_account(
            self, local_user: LocalUser, field: str, value: object) -> None:
        """JSON-valid but a field of the wrong type (issue 23, 6): the file is refused at
        load, naming the account and the field, and check-config calls it unusable
        (every sign-in to that account answered 500 before)."""
        local_user.add("breakglass")
        data = json.loads(local_user.accounts.read_text())
        data["accounts"][0][field] = value
        local_user.accounts.write_text(json.dumps(data))
        with pytest.raises(AccountsError) as caught:
            read_accounts(local_user.accounts)
        assert "breakglass" in str(caught.value) or field == "name"
        assert f"{field}" in str(caught.value)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        checked = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "agent", "check-config", "--config", str(local_user.config)],
            capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=False)
        assert "local accounts unusable" in checked.stderr and field in checked.stderr, \
            checked.stderr

    def test_a_missing_or_unknown_field_is_named_with_its_account(
            self, local_user: LocalUser) -> None:
        """An account without its password hash, or with a field we do not know: named."""
        local_user.add("breakglass")
        data = json.loads(local_user.accounts.read_text())
        del data["accounts"][0]["password_hash"]
        data["accounts"][0]["pasword_hash"] = "x"
        local_user.accounts.write_text(json.dumps(data))
        with pytest.raises(AccountsError, match=r"breakglass.*password_hash"):
            read_accounts(local_user.accounts)

    def test_the_agent_refuses_a_file_others_can_read(self, local_user: LocalUser) -> None:
        """0644 is refused (the hashes would be readable by every local user)."""
        local_user.add("breakglass")
        local_user.accounts.chmod(0o644)
        with pytest.raises(AccountsError, match="chmod 0640"):
            read_accounts(local_user.accounts)

    def test_a_symlink_is_neither_read_nor_written_through(
            self, local_user: LocalUser, tmp_path: Path) -> None:
        """O_NOFOLLOW on read; a write refuses to replace a symlink's target."""
        target = tmp_path / "elsewhere"
        target.write_text("{}")
        target.chmod(0o600)
        local_user.accounts.symlink_to(target)
        with pytest.raises(AccountsError):
            read_accounts(local_user.accounts)
        result = local_user.add("breakglass")
        assert 1 == result.returncode and "{}" == target.read_text()

    def test_a_rewrite_keeps_the_mode_and_leaves_no_temporary_file(
            self, local_user: LocalUser, tmp_path: Path) -> None:
        """0640 chosen by the administrator survives passwd; only the file is there."""
        local_user.add("breakglass")
        local_user.accounts.chmod(0o640)
        local_user("passwd", "breakglass", "--password-stdin", stdin="indigo-harbour-maple-3\n")
        assert 0o640 == stat.S_IMODE(local_user.accounts.stat().st_mode)
        assert ["local-accounts"] == sorted(p.name for p in tmp_path.glob("*local-accounts*"))


@pytest.fixture
async def always(tmp_path: Path) -> AsyncIterator[tuple[Stack, AgentProcess, LocalUser]]:
    """A provider, the agent as a process offering the form always, and local-user."""
    stack = await make_stack(tmp_path, start=False)
    accounts = tmp_path / "local-accounts"
    agent = AgentProcess(stack, tmp_path, local={"accounts_file": str(accounts),
                                                 "sign_in": "always"})
    try:
        yield stack, agent, LocalUser(tmp_path, agent.config)
    finally:
        await agent.stop()
        await stack.close()


async def test_sighup_after_remove_ends_the_session_and_passwd_ends_the_other(
        always: tuple[Stack, AgentProcess, LocalUser]) -> None:
    """local-user remove + SIGHUP: the removed account's session is over (401); passwd +
    SIGHUP ends the other account's session too, and the new password signs in."""
    stack, agent, local_user = always
    assert 0 == local_user.add("breakglass", password=LOCAL_PASSWORD).returncode
    assert 0 == local_user.add("second", role="read_only", password=LOCAL_PASSWORD).returncode
    agent.start()
    await agent.ready()
    first, second = stack.browser(), stack.browser()
    assert 303 == (await local_sign_in(first)).status
    assert 303 == (await local_sign_in(second, "second")).status

    assert 0 == local_user("remove", "breakglass").returncode
    await reload(agent, 1)
    assert (401, 200) == ((await first.get("/auth/check")).status,
                          (await second.get("/auth/check")).status)
    assert 303 != (await local_sign_in(first)).status

    assert 0 == local_user("passwd", "second", "--password-stdin",
                           stdin="indigo-harbour-maple-3\n").returncode
    await reload(agent, 2)
    assert 401 == (await second.get("/auth/check")).status
    assert 303 == (await local_sign_in(second, "second", "indigo-harbour-maple-3")).status
    revoked = [json.loads(line) for line in agent.output().splitlines()
               if '"session_revoked"' in line]
    assert [("breakglass", "local_account_removed"), ("second", "local_account_changed")] == [
        (e["upn"], e["reason"]) for e in revoked]


async def reload(agent: AgentProcess, count: int) -> None:
    assert agent.proc is not None
    agent.proc.send_signal(signal.SIGHUP)
    for _ in range(300):
        if agent.output().count('"config_reloaded"') >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(agent.output()[-2000:])


def test_config_stub_is_valid(tmp_path: Path) -> None:
    """The stub config the command tests use is a valid agent configuration."""
    from agent.settings import settings_from_mapping

    settings = settings_from_mapping(agent_config_stub(tmp_path / "a", tmp_path))
    assert tmp_path / "a" == settings.local.accounts_file
