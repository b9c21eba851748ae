"""MFA step-up (auth context, max_age), hints, and sign-out through Entra ID."""

from __future__ import annotations

import json
from pathlib import Path

from structlog.testing import capture_logs

from agent.__main__ import main
from agent.devidp import DELETE
from tests.harness import StackFactory, query


def step_up(data: dict[str, object]) -> None:
    data["entra"].update(require_auth_context="c1")  # type: ignore[attr-defined]


class TestStepUp:
    async def test_refused_then_accepted_after_the_provider_adds_the_context(
            self, new_stack: StackFactory) -> None:
        """Without c1 in acrs the sign-in is refused; once the user satisfies c1 it succeeds."""
        stack = await new_stack(config=step_up)
        browser = stack.browser()
        authorize_url = await browser.start()
        claims = json.loads(query(authorize_url)["claims"])
        assert {"essential": True, "value": "c1"} == claims["id_token"]["acrs"]
        with capture_logs() as logs:
            refused = await browser.get(await browser.authenticate(authorize_url,
                                                                   "admin@contoso.example"))
        assert 403 == refused.status
        assert "Additional verification required" in await refused.text()
        assert "auth_context_missing" in [e.get("reason") for e in logs
                                          if e["event"] == "sso_login_refused"]
        stack.idp.auth_contexts.add("c1")
        with capture_logs() as logs:
            accepted = await browser.sign_in("admin@contoso.example")
        assert 302 == accepted.status
        succeeded = next(e for e in logs if e["event"] == "sso_login_succeeded")
        assert ["c1"] == succeeded["acrs"]

    async def test_max_age_goes_to_authorize_and_auth_time_is_checked(
            self, new_stack: StackFactory) -> None:
        """max_age is on the authorize request; an auth_time older than it is refused."""
        stack = await new_stack(config=lambda d: d["entra"].update(max_age="1h"))
        browser = stack.browser()
        authorize_url = await browser.start()
        assert "3600" == query(authorize_url)["max_age"]
        ok = await browser.get(await browser.authenticate(authorize_url,
                                                          "admin@contoso.example"))
        assert 302 == ok.status
        stack.idp.token_tweaks.claims = {"auth_time": int(stack.clock() - 7200)}
        stale = await browser.sign_in("admin@contoso.example")
        assert 403 == stale.status
        assert "Sign in again" in await stale.text()
        stack.idp.token_tweaks.claims = {"auth_time": DELETE}
        assert 403 == (await browser.sign_in("admin@contoso.example")).status

    async def test_hints_pass_through(self, new_stack: StackFactory) -> None:
        """domain_hint from config and login_hint from /login?login_hint= reach Entra ID."""
        stack = await new_stack(config=lambda d: d["entra"].update(
            domain_hint="contoso.example"))
        browser = stack.browser()
        page = await (await browser.get("/login", params={
            "login_hint": "reader@contoso.example", "next": "/x"})).text()
        start = page.split('id="sso-sign-in" href="')[1].split('"')[0].replace("&amp;", "&")
        assert {"next": "/x", "login_hint": "reader@contoso.example"} == query(start)
        resp = await browser.get(start)
        params = query(resp.headers["Location"])
        assert ("reader@contoso.example", "contoso.example") == (
            params["login_hint"], params["domain_hint"])


class TestSignOut:
    async def test_entra_sign_out_and_a_landing_page_that_stays_put(
            self, new_stack: StackFactory) -> None:
        """Sign-out goes to end_session_endpoint and back to a page that does not start SSO."""
        back = None

        def config(data: dict[str, object]) -> None:
            nonlocal back
            entra = data["entra"]
            back = entra["redirect_uri"].replace(  # type: ignore[index]
                "/auth/sso/callback", "/login?signed_out=1")
            entra.update(signout_from_entra=True, post_logout_redirect_uri=back)  # type: ignore[attr-defined]

        stack = await new_stack(config=config)
        assert back is not None
        stack.idp.redirect_uris.append(back)
        browser = stack.browser()
        await browser.sign_in("admin@contoso.example")
        csrf = (await (await browser.get("/auth/me")).json())["csrf_token"]
        resp = await browser.post("/auth/logout", data={"csrf_token": csrf})
        assert 303 == resp.status
        location = resp.headers["Location"]
        assert location.startswith(stack.idp.end_session_endpoint + "?")
        assert back == query(location)["post_logout_redirect_uri"]
        assert 401 == (await browser.get("/auth/check")).status
        at_entra = await browser.get(location)
        assert 302 == at_entra.status
        assert at_entra.headers["Location"].startswith(back)
        landing = await browser.get(at_entra.headers["Location"])
        page = await landing.text()
        assert 200 == landing.status and "Location" not in landing.headers
        assert "You have signed out" in page
        assert "http-equiv" not in page.lower() and "<script" not in page.lower()
        assert 1 == stack.idp.requests["authorize"]  # the landing page started nothing


class TestShowConfig:
    def test_effective_setting_with_secrets_masked(self, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
        """show-config names the chosen setting and scope; the secret never appears."""
        secret = tmp_path / "client-secret"
        secret.write_text("very-secret-value")
        path = tmp_path / "agent.toml"
        path.write_text(f"""
[sensor]
name = "s-07"
site = "hamburg"
zone = "packaging"
[entra]
tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47"
redirect_uri = "https://s-07.example/auth/sso/callback"
[[setting]]
name = "EU"
sites = ["hamburg"]
[setting.entra]
client_id = "0b5b0b4e-3c8b-4bfb-8f0e-6c0f1c2d3e4f"
[setting.roles]
admin = ["aaaaaaaa-0000-4000-8000-000000000001"]
[[setting]]
name = "Packaging web"
sites = ["hamburg"]
zones = ["packaging"]
[setting.entra]
client_id = "0b5b0b4e-3c8b-4bfb-8f0e-6c0f1c2d3e4f"
platform = "web"
client_secret_file = "{secret}"
[setting.roles]
admin = ["aaaaaaaa-0000-4000-8000-000000000001"]
""")
        assert 0 == main(["show-config", "--config", str(path)])
        out = capsys.readouterr().out
        assert "setting: 'Packaging web' (matched at the zone level)" in out
        assert "zones contains 'packaging'" in out
        assert "very-secret-value" not in out
        assert f"client_secret_file = ****** (from {secret})" in out

    def test_problems_do_not_echo_proxy_credentials(self, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
        """An invalid file is reported as check-config reports it (on stderr), without the
        proxy password it carries."""
        path = tmp_path / "agent.toml"
        path.write_text('[entra]\nhttps_proxy = "http://agent:proxy-password@proxy:3128#x"\n')
        assert 1 == main(["show-config", "--config", str(path)])
        shown = capsys.readouterr()
        assert f"{path}: configuration is invalid" in shown.err
        assert "https_proxy" in shown.err and "proxy-password" not in shown.out + shown.err
