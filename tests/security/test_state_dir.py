"""A state_dir others could change is refused, at start and by check-config, with the fix.

Whoever can write to ``state_dir`` can plant ``session.key`` (and forge every session) or a
symbolic link the agent would write through. The agent refuses to start on such a directory,
opens its files without following links, and creates temporary files under new names only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.sessions.journal import JOURNAL_FILE, KEY_FILE
from agent.sessions.lines import CopiedLine
from agent.web import keys
from tests.harness import Stack, StackFactory, agent_config, write_config
from tests.needs import unavailable
from tests.security.conftest import ADMIN, session_works

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534


def run_agent(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "agent", *argv], capture_output=True,  # noqa: S603
                          text=True, env=env, cwd=ROOT, timeout=60, check=False)


def world_writable(state: Path) -> None:
    state.chmod(0o777)
    (state / KEY_FILE).write_bytes(b"k" * 32)  # what an attacker would plant


def group_writable(state: Path) -> None:
    state.chmod(0o770)


def foreign_owner(state: Path) -> None:
    os.chown(state, NOBODY, NOBODY)


def key_is_a_link(state: Path) -> None:
    """A link to a key the agent would accept as a file (0600, its own user's): only the
    refusal to follow links (O_NOFOLLOW) can refuse it."""
    target = state / "elsewhere.key"
    target.write_bytes(b"k" * 32)
    target.chmod(0o600)
    assert os.stat(target).st_uid == os.geteuid()
    (state / KEY_FILE).symlink_to(target)


def journal_is_a_link(state: Path) -> None:
    (state / JOURNAL_FILE).symlink_to("/etc/passwd")


def key_readable_by_others(state: Path) -> None:
    (state / KEY_FILE).write_bytes(os.urandom(32))
    (state / KEY_FILE).chmod(0o644)


HOSTILE: dict[str, tuple[Callable[[Path], None], str]] = {
    "world_writable": (world_writable, "writable by other users"),
    "group_writable": (group_writable, "writable by other users"),
    "foreign_owner": (foreign_owner, "belongs to"),
    "key_symlink": (key_is_a_link, "session.key is a symbolic link"),
    "journal_symlink": (journal_is_a_link, "sessions.journal is a symbolic link"),
    "key_readable": (key_readable_by_others, "readable by other users"),
}


@pytest.fixture
async def config(tmp_path: Path, new_stack: StackFactory) -> tuple[Path, Path]:
    """A valid configuration whose state_dir exists (0700, ours) but holds nothing yet."""
    stack = await new_stack(start=False)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return write_config(tmp_path / "agent.toml", agent_config(stack.idp, stack.port, state)), state


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_state_dir_is_refused(name: str, config: tuple[Path, Path]) -> None:
    """check-config exits 1 naming the problem and the fix; serve refuses to start."""
    if name == "foreign_owner" and os.geteuid() != 0:
        unavailable("making a directory someone else's needs root")
    path, state = config
    assert 0 == run_agent("check-config", "--config", str(path)).returncode
    harm, problem = HOSTILE[name]
    harm(state)
    checked = run_agent("check-config", "--config", str(path))
    assert 1 == checked.returncode, checked.stdout
    assert problem in checked.stderr and "fix:" in checked.stderr
    served = run_agent("serve", "--config", str(path))
    assert 1 == served.returncode
    assert "state_dir_unsafe" in served.stdout and problem in served.stdout
    if name == "journal_symlink":
        assert (state / JOURNAL_FILE).is_symlink()


async def test_planted_temp_file_link_is_not_written_through(tmp_path: Path,
                                                             new_stack: StackFactory) -> None:
    """A ``sessions.tmp`` link left in state_dir (the name earlier versions wrote through)
    is removed at start, and compaction writes a new file of its own: the target is intact."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    stack: Stack = await new_stack(start=False)
    state = Path(stack.settings.session.state_dir)
    state.mkdir(mode=0o700)
    (state / "sessions.tmp").symlink_to(victim)
    await stack.start_agent()
    assert not os.path.lexists(state / "sessions.tmp")
    browser = stack.browser()
    assert 302 == (await browser.sign_in(ADMIN)).status
    assert stack.app is not None
    journal = stack.app[keys.SESSIONS].journal
    assert journal is not None
    (state / "sessions.tmp").symlink_to(victim)  # planted again while running
    # What compaction does: records again, refresh-token lines copied as they are.
    journal.rewrite([CopiedLine(r) if isinstance(r, int) else r for r in journal.replay()])
    assert "precious\n" == victim.read_text()
    await stack.stop_agent()
    await stack.start_agent()
    assert await session_works(browser)


@pytest.mark.skipif(os.geteuid() != 0, reason="the agent run by hand as root")
def test_serve_as_root_names_the_service_user_not_root(tmp_path: Path) -> None:
    """Run as root on the service user's state directory (here ``nobody`` plays the service
    user), the fix is to run the agent as that user, never ``chown root:``; on someone
    else's directory the chown names the service user."""
    from agent.sessions.statedir import owner_problem

    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    problem = owner_problem(state, os.stat(state), {0}, True, service_user="nobody")
    assert problem is not None
    assert "chown root" not in problem
    assert "runuser -u nobody -- sensor-sso-agent serve" in problem
    os.chown(state, NOBODY + 1, NOBODY + 1)
    problem = owner_problem(state, os.stat(state), {0}, True, service_user="nobody")
    assert problem is not None and f"fix: chown nobody: {state} && chmod 0700" in problem
