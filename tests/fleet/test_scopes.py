"""Apply scopes: the setting for this sensor is the most specific one; none means SSO off."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.settings import FleetChoice, Settings, settings_from_mapping
from tests.fleet.helpers import OTHER_GROUP, block, fleet
from tests.harness import CLIENT, ROLE_GROUPS, TENANT, StackFactory

SENSOR = {"name": "s-07", "site": "hamburg", "zone": "packaging"}


def resolve(*blocks: dict[str, object], sensor: dict[str, str] | None = None) -> Settings:
    data: dict[str, object] = {"entra": {"tenant_id": TENANT,
                                         "redirect_uri": "https://s-07.example/cb"}}
    data["sensor"] = sensor or SENSOR
    data["setting"] = list(blocks)
    return settings_from_mapping(data)


def chosen(settings: Settings) -> FleetChoice:
    """Which setting the loader chose (always recorded when it loaded a file's mapping)."""
    assert settings.fleet is not None
    return settings.fleet


class TestScopeResolution:
    def test_site_only(self) -> None:
        """A setting scoped to the sensor's site applies, at the site level."""
        settings = resolve(block("EU", sites=["hamburg"]), block("US", sites=["houston"]))
        assert ("EU", "site") == (chosen(settings).setting, chosen(settings).level)
        assert CLIENT == settings.entra.client_id

    def test_zone_overrides_site(self) -> None:
        """A setting narrowed to the sensor's zone beats the site-wide one."""
        settings = resolve(block("EU", sites=["hamburg"]),
                           block("Packaging", sites=["hamburg"], zones=["packaging"],
                                 roles={"admin": [OTHER_GROUP]}))
        assert ("Packaging", "zone") == (chosen(settings).setting, chosen(settings).level)
        assert (OTHER_GROUP,) == settings.roles["admin"]
        assert "more specific than 'EU'" in chosen(settings).why

    def test_sensor_overrides_zone(self) -> None:
        """A setting naming the sensor beats the zone and site settings."""
        settings = resolve(block("EU", sites=["hamburg"]),
                           block("Packaging", sites=["hamburg"], zones=["packaging"]),
                           block("Just s-07", sites=["hamburg"], sensors=["s-07"],
                                 entra={"require_auth_context": "c1"}))
        assert ("Just s-07", "sensor") == (chosen(settings).setting, chosen(settings).level)
        assert "c1" == settings.entra.require_auth_context

    def test_zone_of_another_site_does_not_apply(self) -> None:
        """Scope lists narrow each other: a zone setting of another site is skipped."""
        settings = resolve(block("EU", sites=["hamburg"]),
                           block("Munich packaging", sites=["munich"], zones=["packaging"]))
        assert "EU" == chosen(settings).setting

    def test_two_at_the_same_level_name_both(self) -> None:
        """Two zone settings for this sensor are a config error naming both."""
        with pytest.raises(ConfigError) as caught:
            resolve(block("A", sites=["hamburg"], zones=["packaging"]),
                    block("B", sites=["hamburg"], zones=["packaging", "boiler"]))
        text = str(caught.value.problems)
        assert "'A'" in text and "'B'" in text and "zone level" in text

    def test_no_match_turns_sso_off(self) -> None:
        """No applicable setting: the config is valid, SSO is off, and it says why."""
        settings = resolve(block("US", sites=["houston"]))
        assert settings.sso_off and settings.sso_off_reason is not None
        assert "no setting applies" in settings.sso_off_reason

    def test_single_setting_form_unchanged(self) -> None:
        """Plain [entra] + [roles] without blocks is the single-setting form."""
        settings = settings_from_mapping({
            "entra": {"tenant_id": TENANT, "client_id": CLIENT,
                      "redirect_uri": "https://s-07.example/cb"},
            "roles": {"admin": ROLE_GROUPS["admin"]}})
        assert ("single", None) == (chosen(settings).level, settings.sso_off_reason)

    def test_blocks_need_a_sensor_identity_and_sites(self) -> None:
        """[[setting]] without [sensor], or a block without sites, is refused by key."""
        data = {"entra": {"tenant_id": TENANT, "redirect_uri": "https://s.example/cb"},
                "setting": [{"name": "X", "zones": ["z"]}]}
        with pytest.raises(ConfigError) as caught:
            settings_from_mapping(data)
        keys = {key for key, _, _ in caught.value.problems}
        assert {"sensor", "setting['X'].sites"} <= keys


class TestThroughTheProvider:
    async def test_zone_setting_decides_the_role(self, new_stack: StackFactory) -> None:
        """The zone setting's role mapping is the one a real sign-in is judged by."""
        stack = await new_stack(config=fleet(
            SENSOR, block("EU", sites=["hamburg"]),
            block("Packaging", sites=["hamburg"], zones=["packaging"],
       roles={"read_only": ROLE_GROUPS["admin"]})))
        browser = stack.browser()
        assert 302 == (await browser.sign_in("admin@contoso.example")).status
        resp = await browser.get("/auth/check")
        assert "read_only" == resp.headers["X-Auth-Request-Role"]

    async def test_no_match_sign_in_page_says_sso_is_off(self, new_stack: StackFactory) -> None:
        """No setting applies: the page says SSO is off and offers no SSO button."""
        stack = await new_stack(config=fleet(SENSOR, block("US", sites=["houston"])),
                      start=False)
        await stack.start_agent(wait_ready=False)
        page = await (await stack.browser().get("/login")).text()
        assert "Single sign-on is off for this sensor" in page
        assert 'id="sso-sign-in"' not in page

    async def test_no_match_start_refuses(self, new_stack: StackFactory) -> None:
        """No setting applies: /auth/sso/start refuses with 403 and never reaches Entra ID."""
        stack = await new_stack(config=fleet(SENSOR, block("US", sites=["houston"])),
                      start=False)
        await stack.start_agent(wait_ready=False)
        resp = await stack.browser().get("/auth/sso/start")
        assert 403 == resp.status
        assert "Single sign-on is off for this sensor" in await resp.text()
        assert 0 == stack.idp.requests["discovery"]
        ready = await stack.browser().get("/readyz")
        assert 503 == ready.status
        assert "SSO is off: no setting applies" in (await ready.json())["reason"]


class TestCheckConfigWhenSsoIsOff:
    def test_check_config_says_sso_is_off(self, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
        """A valid fleet file with no setting for this sensor: check-config says SSO is off."""
        from agent.__main__ import main

        path = tmp_path / "agent.toml"
        path.write_text(f'''
[entra]
tenant_id = "{TENANT}"
redirect_uri = "https://s-07.example/auth/sso/callback"

[sensor]
name = "s-07"
site = "hamburg"
zone = "packaging"

[[setting]]
name = "US"
sites = ["houston"]
[setting.entra]
client_id = "{CLIENT}"
[setting.roles]
admin = ["{ROLE_GROUPS['admin'][0]}"]
''')
        assert 0 == main(["check-config", "--config", str(path)])
        out = capsys.readouterr().out
        assert "SSO is off on this sensor" in out and "no setting applies" in out
        assert "00000000" not in out
