"""``[roles] source``: groups (group object ids) or app_roles (app role values by Entra's
rules), in the single-setting form and in ``[[setting]]`` blocks; check-config and
show-config say which source applies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.__main__ import main
from agent.errors import ConfigError
from agent.roles import decide_role, is_app_role_value, source_of
from agent.settings import settings_from_mapping

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "0b5b0b4e-3c8b-4bfb-8f0e-6c0f1c2d3e4f"
GROUP = "6e2f3c4d-1a2b-4c5d-8e9f-0a1b2c3d4e5f"


def config(roles: dict[str, Any]) -> dict[str, Any]:
    return {"entra": {"tenant_id": TENANT, "client_id": CLIENT,
                      "redirect_uri": "https://sensor-01.plant.example/auth/sso/callback"},
            "roles": roles}


def problems(roles: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The problems of ``roles`` (without "map at least one", which follows when none of
    its values is valid)."""
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(config(roles))
    return [p for p in caught.value.problems if p[0] != "roles"]


class TestSettings:
    def test_groups_is_the_default(self) -> None:
        """Without source, roles list group object ids as before."""
        settings = settings_from_mapping(config({"admin": [GROUP.upper()]}))
        assert ("groups", (GROUP,)) == (settings.roles_source, settings.roles["admin"])

    def test_app_role_values_are_kept_exactly(self) -> None:
        """With app_roles the values are kept as written (the claim is matched exactly)."""
        settings = settings_from_mapping(config({
            "source": "app_roles", "admin": ["Sensor.Admin"],
            "security_analyst": ["Sensor.SecurityAnalyst", "OT/Analyst:Shift-2"],
            "read_only": ["Sensor.ReadOnly"]}))
        assert "app_roles" == settings.roles_source
        assert ("Sensor.SecurityAnalyst", "OT/Analyst:Shift-2") == \
            settings.roles["security_analyst"]

    def test_a_guid_is_not_an_app_role_value(self) -> None:
        """An app role's id (a GUID) where its value belongs: named, with where to look."""
        found = problems({"source": "app_roles", "admin": [GROUP]})
        assert [("roles.admin", repr(GROUP))] == [(k, v) for k, v, _ in found]
        assert "not its ID" in found[0][2] and "App roles" in found[0][2]

    @pytest.mark.parametrize("value", ["Sensor Admin", ".Sensor.Admin", "", "x" * 121,
                                       "Sensör.Admin", 'Sensor"Admin'])
    def test_values_entra_would_not_allow(self, value: str) -> None:
        """Spaces, a leading dot, empty, over 120 characters, other characters: refused."""
        found = problems({"source": "app_roles", "admin": [value]})
        assert [("roles.admin", repr(value))] == [(k, v) for k, v, _ in found]
        assert "120 characters" in found[0][2]

    def test_every_allowed_character_passes(self) -> None:
        """Entra's whole alphabet for a value is accepted."""
        value = "Aa0!#$%&'()*+,-./:;<=>?@[]^_`{|}~"
        assert is_app_role_value(value)
        assert is_app_role_value("x" * 120)

    def test_one_value_one_role(self) -> None:
        """An app role value mapped to two roles is a problem, as for a group."""
        found = problems({"source": "app_roles", "admin": ["Sensor.Admin"],
                          "read_only": ["Sensor.Admin"]})
        assert "also mapped to role admin" in found[0][2]

    def test_unknown_source(self) -> None:
        """A source other than groups or app_roles is named with both choices."""
        found = problems({"source": "approles", "admin": [GROUP]})
        assert [("roles.source", "'approles'")] == [(k, v) for k, v, _ in found]
        assert '"groups"' in found[0][2] and '"app_roles"' in found[0][2]

    def test_a_value_under_groups_points_to_source(self) -> None:
        """An app role value with the default source: the problem says to set source."""
        found = problems({"admin": ["Sensor.Admin"]})
        assert 'source = "app_roles"' in found[0][2]

    def test_at_least_one_value(self) -> None:
        """No value at all under app_roles: say what to map."""
        with pytest.raises(ConfigError) as caught:
            settings_from_mapping(config({"source": "app_roles"}))
        assert [("roles", "map at least one app role value to admin, security_analyst or "
                 "read_only")] == [(k, w) for k, _, w in caught.value.problems]

    def test_source_inside_a_setting_block(self) -> None:
        """[setting.roles] may choose its own source; it replaces [roles] whole."""
        data = config({"admin": [GROUP]})
        data["entra"].pop("client_id")
        data["sensor"] = {"name": "s-31", "site": "houston", "zone": "boiler"}
        data["setting"] = [{"name": "US", "sites": ["houston"],
                            "entra": {"client_id": CLIENT},
                            "roles": {"source": "app_roles", "admin": ["Sensor.Admin"]}}]
        settings = settings_from_mapping(data)
        assert ("app_roles", ("Sensor.Admin",)) == (settings.roles_source,
                                                    settings.roles["admin"])
        data["setting"][0]["roles"] = {"source": "app_roles", "admin": [GROUP]}
        with pytest.raises(ConfigError) as caught:
            settings_from_mapping(data)
        assert ["roles.admin", "roles"] == [k for k, _, _ in caught.value.problems]


class TestDecision:
    def test_app_roles_match_exactly(self) -> None:
        """The roles claim is matched exactly: another case is another value."""
        mapping = {"admin": ("Sensor.Admin",), "read_only": ("Sensor.ReadOnly",)}
        assert decide_role(["sensor.admin"], mapping, "app_roles").role is None
        decision = decide_role(["Sensor.ReadOnly", "Sensor.Admin"], mapping, "app_roles")
        assert decision.role is not None
        assert ("admin", ("Sensor.Admin", "Sensor.ReadOnly")) == (
            decision.role.id, tuple(sorted(decision.matched_groups)))

    def test_what_a_session_keeps_names_its_source(self) -> None:
        """Group ids are GUIDs; app role values never are."""
        assert "groups" == source_of([GROUP])
        assert "app_roles" == source_of(["Sensor.Admin"])


class TestCommands:
    def write(self, tmp_path: Path, roles: str) -> Path:
        """A valid file with ``roles`` as its [roles] table."""
        path = tmp_path / "agent.toml"
        path.write_text(f'[entra]\ntenant_id = "{TENANT}"\nclient_id = "{CLIENT}"\n'
                        f'redirect_uri = "https://s.example/auth/sso/callback"\n'
                        f'[session]\nstate_dir = "{tmp_path / "state"}"\n[roles]\n{roles}')
        return path

    def test_check_config_names_the_source(self, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
        """check-config counts app role values and says the roles claim decides."""
        path = self.write(tmp_path, 'source = "app_roles"\nadmin = ["Sensor.Admin"]\n'
                                    'read_only = ["Sensor.ReadOnly"]\n')
        assert 0 == main(["check-config", "--config", str(path)])
        out = capsys.readouterr().out
        assert "2 app role values mapped" in out
        assert "note: roles from app roles: the ID token's roles claim alone" in out

    def test_check_config_groups(self, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
        """The default source: groups counted, groups claim and Graph named."""
        path = self.write(tmp_path, f'admin = ["{GROUP}"]\n')
        assert 0 == main(["check-config", "--config", str(path)])
        out = capsys.readouterr().out
        assert "1 group mapped" in out and "note: roles from Entra groups" in out

    def test_show_config_prints_the_source(self, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
        """show-config prints source under [roles], with what it means."""
        path = self.write(tmp_path, 'source = "app_roles"\nadmin = ["Sensor.Admin"]\n')
        assert 0 == main(["show-config", "--config", str(path)])
        lines = capsys.readouterr().out.splitlines()
        at = lines.index("[roles]")
        assert lines[at + 1].startswith("source = 'app_roles'  # roles from app roles")
        assert "admin = ['Sensor.Admin']" in lines
