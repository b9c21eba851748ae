"""The error tree (agent/errors.py): every error the agent raises on purpose is an
``AgentError``, and the typed attributes of a sign-in error (AADSTS code, provider error,
dependency, UPN, object id, missing attributes) reach the page and the audit line.

The refusals go through real HTTP: agent ↔ local provider (agent/devidp) with faults.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import agent
from agent.devidp import Fault
from agent.errors import AgentError
from tests.harness import Stack
from tests.security.conftest import attempt

NOGROUP = "nogroup@contoso.example"
NOLASTNAME = "nolastname@contoso.example"
GRAPH_USER = "graphprofile@contoso.example"  # token without profile claims: Graph is asked


def agent_exceptions() -> list[type[BaseException]]:
    """Every exception class defined in the agent package (the shipped code)."""
    found = []
    for module in pkgutil.walk_packages(agent.__path__, "agent."):
        if module.name.endswith("__main__"):
            continue
        loaded = importlib.import_module(module.name)
        found += [cls for _, cls in inspect.getmembers(loaded, inspect.isclass)
                  if issubclass(cls, BaseException) and cls.__module__ == module.name]
    return found


def test_every_exception_the_agent_defines_is_an_agent_error() -> None:
    """One tree: a caller can catch anything the agent raises on purpose as ``AgentError``."""
    found = agent_exceptions()
    names = {cls.__name__ for cls in found}
    assert {"MetadataProblem", "CheckFailed", "CredentialProblem", "StateDirUnsafe",
            "StateUnwritable", "MissingAttributes", "LocalSignInRefused"} <= names
    assert [] == [f"{c.__module__}.{c.__name__}" for c in found if not issubclass(c, AgentError)]


def oid_of(stack: Stack, username: str) -> str:
    return next(u.oid for u in stack.idp.users if u.username == username)


def not_assigned(stack: Stack) -> None:
    stack.idp.authorize_error = ("access_denied", "AADSTS50105: The signed in user is not "
                                 "assigned to a role for the application.")


def needs_interaction(stack: Stack) -> None:
    stack.idp.authorize_error = ("interaction_required", "no code in this description")


def token_endpoint_busy(stack: Stack) -> None:
    stack.idp.faults["token"] = Fault(status=400, body=b'{"error": "temporarily_unavailable", '
                                      b'"error_description": "AADSTS90033: busy", '
                                      b'"error_codes": [90033]}')


def graph_failing(stack: Stack) -> None:
    stack.idp.faults["graph_me"] = Fault(status=500, body=b"{}")


@dataclass(frozen=True)
class Case:
    username: str
    arrange: Callable[[Stack], None] | None
    status: int
    words: str  # on the page
    refused: dict[str, Any]  # fields of the sso_login_refused line (a callable: from the stack)
    idp_error: dict[str, Any] | None = None  # fields of the idp_error line, if one is written
    aadsts_shown: bool = False


CASES = {
    "no_role (upn, oid)": Case(
        NOGROUP, None, 403, "No access to this sensor",
        {"reason": "no_role", "upn": NOGROUP, "oid": lambda s: oid_of(s, NOGROUP)}),
    "missing_attributes (missing, upn, oid)": Case(
        NOLASTNAME, None, 403, "lacks: Last name.",
        {"reason": "missing_attributes", "upn": NOLASTNAME, "missing": ["Last name"],
         "oid": lambda s: oid_of(s, NOLASTNAME)}),
    "provider error with AADSTS (aadsts, provider_error)": Case(
        "admin@contoso.example", not_assigned, 403, "not assigned",
        {"reason": "idp_error", "upn": None},
        {"reason": "idp_error", "aadsts": "50105", "error": "access_denied"},
        aadsts_shown=True),
    "provider error without AADSTS (provider_error)": Case(
        "admin@contoso.example", needs_interaction, 403,
        "Entra ID answered: interaction_required.",
        {"reason": "idp_error", "upn": None},
        {"reason": "idp_error", "aadsts": None, "error": "interaction_required"}),
    "Entra ID unavailable (dependency, aadsts)": Case(
        "admin@contoso.example", token_endpoint_busy, 502, "because Entra ID is unreachable",
        {"reason": "idp_error", "upn": None},
        {"reason": "idp_error", "aadsts": "90033", "error": None}, aadsts_shown=True),
    "Graph unavailable (dependency)": Case(
        GRAPH_USER, graph_failing, 502, "because Microsoft Graph is unreachable",
        {"reason": "graph_error", "upn": None}),
}


class TestTypedAttributesReachPageAndAudit:
    @pytest.mark.parametrize("name", list(CASES))
    async def test_refusal(self, stack: Stack, name: str) -> None:
        """Status, page words and the audit line's fields come from the error's attributes."""
        case = CASES[name]
        if case.arrange is not None:
            case.arrange(stack)
        outcome = await attempt(stack, case.username)
        assert (case.status, False) == (outcome.status, outcome.has_session), outcome.text
        assert case.words in outcome.text
        assert ("Entra ID error code" in outcome.text) is case.aadsts_shown
        [refused] = outcome.events("sso_login_refused")
        expected = {k: v(stack) if callable(v) else v for k, v in case.refused.items()}
        assert expected == {k: refused.get(k) for k in expected}
        assert case.status == refused["status"]
        if "oid" not in expected:
            assert "oid" not in refused  # only a genuine identity's object id is named
        if "missing" not in expected:
            assert "missing" not in refused
        idp_errors = outcome.events("idp_error")
        if case.idp_error is None:
            assert [] == idp_errors
        else:
            [line] = idp_errors
            assert case.idp_error == {k: line.get(k) for k in case.idp_error}
