"""Configuration: defaults, every problem at once, nothing changed by validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.__main__ import main
from agent.errors import ConfigError
from agent.settings import load_settings, parse_duration, settings_from_mapping

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "0b5b0b4e-3c8b-4bfb-8f0e-6c0f1c2d3e4f"
GROUP = "6e2f3c4d-1a2b-4c5d-8e9f-0a1b2c3d4e5f"
EXAMPLE = Path(__file__).parents[2] / "config" / "agent.example.toml"
PLACEHOLDERS = {"tenant_id = \"00000000-0000-0000-0000-000000000000\"": f"tenant_id = \"{TENANT}\"",
                "client_id = \"00000000-0000-0000-0000-000000000000\"": f"client_id = \"{CLIENT}\"",
                "11111111-1111-1111-1111-111111111111": "6e2f3c4d-1a2b-4c5d-8e9f-0a1b2c3d4e51",
                "22222222-2222-2222-2222-222222222222": "6e2f3c4d-1a2b-4c5d-8e9f-0a1b2c3d4e52",
                "33333333-3333-3333-3333-333333333333": "6e2f3c4d-1a2b-4c5d-8e9f-0a1b2c3d4e53"}


def filled_example(tmp_path: Path) -> Path:
    """The shipped example with the values an operator must set filled in."""
    text = EXAMPLE.read_text()
    for placeholder, value in PLACEHOLDERS.items():
        assert placeholder in text
        text = text.replace(placeholder, value)
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def minimal(**entra: object) -> dict[str, object]:
    return {"entra": {"tenant_id": TENANT, "client_id": CLIENT,
                      "redirect_uri": "https://sensor-01.plant.example/auth/sso/callback",
                      **entra},
            "roles": {"admin": [GROUP]}}


class TestLoad:
    def test_example_config_is_valid(self, tmp_path: Path) -> None:
        """The shipped example, its placeholders replaced, is a valid configuration."""
        settings = load_settings(filled_example(tmp_path))
        assert settings.session.idle_timeout == 1800
        assert settings.entra.redirect_path == "/auth/sso/callback"

    def test_defaults(self) -> None:
        """Keys left out take the spec's defaults."""
        settings = settings_from_mapping(minimal())
        assert ("127.0.0.1", 8080) == (settings.server.listen_host, settings.server.listen_port)
        assert "https://login.microsoftonline.com" == settings.entra.authority_host
        assert "https://sensor-01.plant.example" == settings.entra.origin
        assert 43200 == settings.session.absolute_timeout

    def test_every_problem_reported_at_once(self) -> None:
        """A file with several mistakes lists each with key and reason."""
        data = minimal(tenant_id="contoso", timeout="ten seconds")
        data["roles"] = {"admin": ["not-a-guid"], "auditor": [GROUP]}
        data["session"] = {"idle_timeout": "13h", "typo_key": 1}
        with pytest.raises(ConfigError) as caught:
            settings_from_mapping(data)
        keys = [key for key, _, _ in caught.value.problems]
        assert {"entra.tenant_id", "entra.timeout", "roles.admin", "roles.auditor",
                "session.idle_timeout", "session.typo_key"} <= set(keys)

    def test_unknown_section(self) -> None:
        """A misspelt section is an error, not silently ignored."""
        data = minimal()
        data["sesion"] = {}
        with pytest.raises(ConfigError) as caught:
            settings_from_mapping(data)
        assert "sesion" == caught.value.problems[0][0]

    def test_unknown_section_lists_every_section_and_the_near_one(self) -> None:
        """The unknown-section message names [sensor] and [[setting]] too, and the section
        a typo was meant to be; a misspelt [sensor] key gets its "did you mean" as well."""
        data = minimal()
        data["sesion"] = {}
        data["sensor"] = {"nmae": "s1"}
        with pytest.raises(ConfigError) as caught:
            settings_from_mapping(data)
        problems = {key: why for key, _, why in caught.value.problems}
        assert problems["sesion"].startswith("unknown section; did you mean session? known: ")
        known = problems["sesion"].split("known: ")[1].split(", ")
        assert {"server", "entra", "roles", "session", "local", "sensor", "setting"} <= set(known)
        assert problems["sensor.nmae"].startswith("unknown key; did you mean name? known keys: ")

    def test_group_in_two_roles_refused(self) -> None:
        """One group mapped to two roles is ambiguous and refused."""
        data = minimal()
        data["roles"] = {"admin": [GROUP], "read_only": [GROUP.upper()]}
        with pytest.raises(ConfigError, match="also mapped to role admin"):
            settings_from_mapping(data)

    def test_plain_http_redirect_only_on_loopback(self) -> None:
        """http redirect URIs are accepted for loopback (as Entra does), refused elsewhere."""
        assert settings_from_mapping(minimal(redirect_uri="http://127.0.0.1:8080/cb"))
        with pytest.raises(ConfigError, match="https"):
            settings_from_mapping(minimal(redirect_uri="http://sensor/cb"))

    def test_missing_ca_bundle_file(self, tmp_path: Path) -> None:
        """A ca_bundle that does not exist is named."""
        with pytest.raises(ConfigError, match="ca_bundle"):
            settings_from_mapping(minimal(ca_bundle=str(tmp_path / "nope.pem")))

    def test_not_toml(self, tmp_path: Path) -> None:
        """A file that is not TOML says so."""
        path = tmp_path / "agent.toml"
        path.write_text("[entra\n")
        with pytest.raises(ConfigError, match="not valid TOML"):
            load_settings(path)

    def test_max_sessions_per_user(self) -> None:
        """Default 10; at least 1."""
        assert 10 == settings_from_mapping(minimal()).session.max_sessions_per_user
        data = minimal()
        data["session"] = {"max_sessions_per_user": 0}
        with pytest.raises(ConfigError) as caught:
            settings_from_mapping(data)
        assert ["session.max_sessions_per_user"] == [k for k, _, _ in caught.value.problems]

    def test_durations(self) -> None:
        """Durations are number + unit."""
        assert [45, 1800, 43200, 86400] == [parse_duration(t) for t in ("45s", "30m", "12h", "1d")]
        with pytest.raises(ValueError):
            parse_duration("12")


class TestCheckConfigCommand:
    def test_valid_exit_0(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """check-config prints that the configuration is valid and exits 0."""
        assert 0 == main(["check-config", "--config", str(filled_example(tmp_path))])
        assert "configuration is valid" in capsys.readouterr().out

    def test_example_placeholders_named(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The example as shipped names every placeholder left and exits 1."""
        assert 1 == main(["check-config", "--config", str(EXAMPLE)])
        err = capsys.readouterr().err
        for key in ("entra.tenant_id", "entra.client_id", "roles.admin",
                    "roles.security_analyst", "roles.read_only"):
            assert f"{key} = " in err and "placeholder" in err, key
        assert "configuration is valid" not in err

    def test_example_host_warned(self, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
        """The example's redirect_uri host is a warning: valid, but named."""
        assert 0 == main(["check-config", "--config", str(filled_example(tmp_path))])
        assert "still the example's host sensor-01.plant.example" in capsys.readouterr().err

    def test_invalid_exit_1(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """check-config lists every problem with the key and exits 1; the file is untouched."""
        path = tmp_path / "agent.toml"
        text = '[entra]\ntenant_id = "x"\n[roles]\nadmin = []\n'
        path.write_text(text)
        assert 1 == main(["check-config", "--config", str(path)])
        err = capsys.readouterr().err
        assert "entra.tenant_id" in err and "entra.client_id" in err and "roles" in err
        assert text == path.read_text()

    def test_env_variable_names_the_file(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
        """$SENSOR_SSO_AGENT_CONFIG is the default config path."""
        monkeypatch.setenv("SENSOR_SSO_AGENT_CONFIG", str(filled_example(tmp_path)))
        assert 0 == main(["check-config"])


class TestServeRefusesBadConfig:
    def test_serve_exits_1_on_invalid_config(self, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
        """serve prints the problems and does not start on an invalid file."""
        path = tmp_path / "agent.toml"
        path.write_text('[entra]\ntenant_id = "nope"\n')
        assert 1 == main(["serve", "--config", str(path)])
        assert "entra.tenant_id" in capsys.readouterr().err

    def test_serve_refuses_the_example_as_shipped(self,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
        """serve does not start a service that could never sign anyone in."""
        assert 1 == main(["serve", "--config", str(EXAMPLE)])
        err = capsys.readouterr().err
        assert "entra.tenant_id" in err and "placeholder" in err

class TestLifeAfterSignIn:
    def test_revalidation_defaults(self) -> None:
        """Every 5 minutes, 1 hour of grace, the admin socket under /run."""
        settings = settings_from_mapping(minimal())
        assert (300, 3600) == (settings.session.revalidate_interval,
                               settings.session.revalidate_grace)
        assert "/run/sensor-sso-agent/admin.sock" == str(settings.server.admin_socket)
        assert settings.entra.prompt is None

    def test_strict_grace_and_short_interval(self) -> None:
        """``"0s"`` grace is strict; 10 s is the shortest interval."""
        data = minimal(prompt="select_account")
        data["session"] = {"revalidate_interval": "10s", "revalidate_grace": "0s"}
        settings = settings_from_mapping(data)
        assert (10, 0) == (settings.session.revalidate_interval,
                           settings.session.revalidate_grace)
        assert "select_account" == settings.entra.prompt

    def test_bad_values_are_each_reported(self) -> None:
        """Interval below 10 s, an unknown prompt, a relative socket path: three problems."""
        data = minimal(prompt="consent")
        data["session"] = {"revalidate_interval": "5s", "revalidate_grace": "soon"}
        data["server"] = {"admin_socket": "admin.sock"}
        with pytest.raises(ConfigError) as caught:
            settings_from_mapping(data)
        keys = {key for key, _, _ in caught.value.problems}
        assert {"session.revalidate_interval", "session.revalidate_grace", "entra.prompt",
                "server.admin_socket"} == keys

    def test_spa_sessions_cannot_outlive_the_refresh_token(self) -> None:
        """platform "spa" with absolute_timeout above 24 h is an error; "web" may."""
        data = minimal()
        session = {"absolute_timeout": "25h", "idle_timeout": "30m"}
        data["session"] = session
        with pytest.raises(ConfigError) as caught:
            settings_from_mapping(data)
        assert ["session.absolute_timeout"] == [k for k, _, _ in caught.value.problems]
        assert "24" in caught.value.problems[0][2]
        session["absolute_timeout"] = "24h"
        assert 86400 == settings_from_mapping(data).session.absolute_timeout


class TestCredentialsNeverPrinted:
    """check-config runs before every start (ExecStartPre), so what it prints reaches
    journald: a credential in any value, of any type, must not (issue 23, 5)."""

    @pytest.mark.parametrize("lines", [
        'https_proxy = ["http://svc:Proxy-Pw-1@proxy:3128"]',
        'https_proxy = {url = "http://svc:Proxy-Pw-1@proxy:3128"}',
        'https_proxy = "svc:Proxy-Pw-1@proxy:3128"',
        'ca_bundle = "http://svc:Proxy-Pw-1@proxy.plant.example/ca.pem"',
        'ca_bundle = ["http://svc:Proxy-Pw-1@proxy.plant.example/ca.pem"]',
        'client_secret = "Proxy-Pw-1"',
        'client_secret_file = "Proxy-Pw-1"',
        'post_logout_redirect_uri = ["https://svc:Proxy-Pw-1@sensor.example/"]',
    ])
    def test_check_config_masks_credentials_whatever_the_type(
            self, tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: str) -> None:
        """A proxy login in an array or table, a URL with a login in a file key, a secret
        under a wrong key: the key is named, the password is not."""
        text = filled_example(tmp_path).read_text().replace(
            "[entra]\n", f"[entra]\n{lines}\n", 1)
        path = tmp_path / "agent.toml"
        path.write_text(text)
        assert 1 == main(["check-config", "--config", str(path)])
        out, err = capsys.readouterr()
        assert "Proxy-Pw-1" not in out + err
        assert "entra." + lines.split(" ", 1)[0] in err

    def test_a_setting_block_masks_them_too(self, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
        """An unknown key in a [[setting]] block carrying a proxy login: masked as well."""
        text = filled_example(tmp_path).read_text() + (
            '\n[[setting]]\nname = "plant"\nsites = ["a"]\n'
            'https_proxy = "http://svc:Proxy-Pw-1@proxy:3128"\n')
        path = tmp_path / "agent.toml"
        path.write_text(text)
        assert 1 == main(["check-config", "--config", str(path)])
        out, err = capsys.readouterr()
        assert "Proxy-Pw-1" not in out + err
        assert "https_proxy" in err
