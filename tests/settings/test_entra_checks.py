"""check-config's words for [entra] keys whose effect depends on the tenant: the auth context
that proves nothing without a policy, a short max_age, a short revalidate_interval, guests."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.__main__ import main
from agent.errors import ConfigError
from agent.settings import settings_from_mapping
from tests.settings.test_load import filled_example, minimal


def check(tmp_path: Path, capsys: pytest.CaptureFixture[str], entra: str = "",
          **replaced: str) -> tuple[str, str]:
    """check-config on the filled example with lines added to [entra] and an example line
    (``key = value``) replaced for each ``key=new value``."""
    path = filled_example(tmp_path)
    text = path.read_text().replace("[entra]\n", f"[entra]\n{entra}\n", 1)
    lines = text.splitlines()
    for key, value in replaced.items():
        [at] = [i for i, line in enumerate(lines) if line.startswith(f"{key} = ")]
        lines[at] = f"{key} = {value}"
    path.write_text("\n".join(lines) + "\n")
    assert 0 == main(["check-config", "--config", str(path)])
    out = capsys.readouterr()
    return out.out, out.err


class TestEntraNotesAndWarnings:
    def test_auth_context_note_says_how_to_bind_a_policy(
            self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """require_auth_context: a note that acrs alone proves nothing, and where to bind."""
        out, _ = check(tmp_path, capsys, entra='require_auth_context = "c2"')
        assert "require_auth_context = 'c2' proves nothing by itself" in out
        assert "Target resources are Authentication context 'c2'" in out

    def test_short_max_age_is_warned(self, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
        """max_age below 5 minutes: a warning naming the MFA delay; 5m passes quietly."""
        _, err = check(tmp_path, capsys, entra='max_age = "2m"')
        assert "entra.max_age = 120s is below 5 minutes" in err
        (tmp_path / "ok").mkdir()
        _, err = check(tmp_path / "ok", capsys, entra='max_age = "5m"')
        assert "max_age" not in err

    def test_short_revalidate_interval_is_warned_with_a_figure(
            self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """10 s: about 37 refreshes per session in 5 minutes and AADSTS50196 named; the
        default 5m is not warned."""
        _, err = check(tmp_path, capsys, revalidate_interval='"10s"')
        assert "about 37 times in 5 minutes" in err and "AADSTS50196" in err
        (tmp_path / "default").mkdir()
        _, err = check(tmp_path / "default", capsys)
        assert "revalidate_interval" not in err

    def test_guests_note_both_ways(self, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
        """allow_guests is off by default (refused as guest_not_allowed); on, the note says
        how a guest is offboarded."""
        out, _ = check(tmp_path, capsys)
        assert "guest_not_allowed" in out
        (tmp_path / "on").mkdir()
        out, _ = check(tmp_path / "on", capsys, allow_guests="true")
        assert "remove the guest from the sensor's groups" in out

    def test_login_hint_with_select_account_is_warned(
            self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A configured login_hint beside prompt = select_account is never sent: warned."""
        _, err = check(tmp_path, capsys, entra='login_hint = "jo@plant.example"\n'
                                               'prompt = "select_account"')
        assert "entra.login_hint is never sent" in err

    def test_allow_guests_must_be_a_boolean(self) -> None:
        """allow_guests = "yes" is a configuration error."""
        with pytest.raises(ConfigError, match="allow_guests"):
            settings_from_mapping(minimal(allow_guests="yes"))

    def test_show_config_shows_allow_guests(self, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
        """show-config prints the effective allow_guests with the other [entra] values."""
        path = filled_example(tmp_path)
        path.write_text(path.read_text().replace("allow_guests = false", "allow_guests = true"))
        assert 0 == main(["show-config", "--config", str(path)])
        assert "allow_guests = True" in capsys.readouterr().out
