"""The error pages' texts (agent/explain.py) as agent/web/pages.py fills them: every field a
text names has a value on the path that shows it, and a field without one is a bug that
shows, never a page with ``{contact}`` in it."""

from __future__ import annotations

import pytest

from agent.errors import (
    ConfigurationProblem,
    IdentityProviderUnavailable,
    MissingAttributes,
    ReasonedError,
    SignInRefused,
    SignInRejected,
    StateUnwritable,
)
from agent.explain import MISCONFIGURED, REASONS, Explanation
from agent.settings import settings_from_mapping
from agent.web.pages import _fill, explain
from tests.harness import CLIENT, TENANT

SETTINGS = settings_from_mapping({
    "entra": {"tenant_id": TENANT, "client_id": CLIENT,
              "redirect_uri": "https://sensor.example/auth/sso/callback"},
    "roles": {"admin": ["aaaaaaaa-0000-4000-8000-000000000001"]},
    "server": {"access_contact": "the plant's OT team"}})


def shown(explanation: Explanation) -> str:
    return " ".join((explanation.title, explanation.what, explanation.todo))


class TestFill:
    def test_a_field_without_a_value_raises(self) -> None:
        """A text naming a value the page does not give is the agent's bug: KeyError, not
        the raw template."""
        with pytest.raises(KeyError):
            _fill(Explanation("t", "Ask {contact}.", "x"), error="an error")

    @pytest.mark.parametrize("reason", sorted(REASONS))
    def test_every_reason_fills_on_its_path(self, reason: str) -> None:
        """Each reason's text is filled with what explain() gives it; no braces remain."""
        error = SignInRefused(reason, "detail")
        text, _ = explain(error, SETTINGS)
        assert "{" not in shown(text) and "}" not in shown(text)

    @pytest.mark.parametrize("error", [
        IdentityProviderUnavailable("idp_timeout", "slow", dependency="Entra ID"),
        ConfigurationProblem("something_new", "x", dependency="Microsoft Graph"),
        ConfigurationProblem("graph_forbidden", "x", dependency="Microsoft Graph"),
        MissingAttributes(["Last name"]),
        SignInRefused("not_a_known_reason", "odd"),
        SignInRejected("not_a_known_reason", "odd"),
        StateUnwritable("disk full"),
    ], ids=lambda e: f"{type(e).__name__}:{e.reason}")
    def test_every_other_path_fills(self, error: ReasonedError) -> None:
        """The generic texts (unreachable, misconfigured, refused, rejected) fill too."""
        text, _ = explain(error, SETTINGS)
        assert "{" not in shown(text) and "}" not in shown(text)

    def test_a_configuration_problem_without_its_own_text(self) -> None:
        """An unknown configuration problem names the dependency and who to tell."""
        error = ConfigurationProblem("something_new", "x", dependency="Microsoft Graph")
        text, _ = explain(error, SETTINGS)
        assert MISCONFIGURED.title == text.title
        assert "Microsoft Graph" in text.what
        assert SETTINGS.server.access_contact in text.todo
