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

import msal.oauth2cli.oidc
import pytest

import agent
from agent import errors
from agent.devidp import Fault
from agent.entra.client import nonce_hash
from agent.entra.msal_errors import raised_by_msal
from agent.errors import (
    AgentError,
    ConfigurationProblem,
    DependencyFailure,
    IdentityProviderUnavailable,
    MetadataProblem,
    ReasonedError,
    SignInError,
    SignInRefused,
    SignInRejected,
    StateUnwritable,
)
from agent.sessions import journal
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


class TestBranches:
    def test_dependency_failures_are_a_branch_of_their_own(self) -> None:
        """Entra ID, Graph or the tenant's metadata failing is not a ``SignInError``, so no
        caller depends on the order of its except clauses to tell them apart."""
        for cls in (IdentityProviderUnavailable, MetadataProblem, ConfigurationProblem):
            assert issubclass(cls, DependencyFailure) and not issubclass(cls, SignInError)
        branches = (SignInError, DependencyFailure, StateUnwritable)
        assert all(issubclass(b, ReasonedError) for b in branches)
        for found in agent_exceptions():
            assert sum(issubclass(found, b) for b in branches) <= 1, found

    def test_the_user_related_branches_do_not_overlap(self) -> None:
        """Re-validation tells a refused identity from an untrusted token by class alone."""
        assert not issubclass(SignInRefused, SignInRejected)
        assert not issubclass(SignInRejected, SignInRefused)

    def test_one_name_for_state_that_cannot_be_written(self) -> None:
        """The store and the sign-in raise the same ``StateUnwritable`` (HTTP 503)."""
        assert journal.StateUnwritable is StateUnwritable
        assert 503 == StateUnwritable("disk full").status
        assert "state_unwritable" == StateUnwritable("disk full").reason
        assert not hasattr(errors, "StateUnavailable")

    def test_configuration_problems_are_not_unavailability(self) -> None:
        """A configuration problem met at run time answers 503 (not 502 "unreachable")."""
        problem = ConfigurationProblem("graph_forbidden", "no consent",
                                       dependency="Microsoft Graph")
        assert (503, False) == (problem.status,
                                isinstance(problem, IdentityProviderUnavailable))

    def test_metadata_problem_reads_as_its_detail(self) -> None:
        """The not-ready reason and its log line show the detail alone, as before."""
        assert "the JWKS holds no key" == str(MetadataProblem("the JWKS holds no key"))


class TestMsalReadingErrors:
    def test_an_error_raised_inside_msal_is_msal_reading_an_answer(self) -> None:
        """An ID token without dots makes MSAL's own code raise IndexError: translated."""
        with pytest.raises(IndexError) as raised:
            msal.oauth2cli.oidc._decode_id_token_claims("nodots")
        assert raised_by_msal(raised.value)

    def test_an_error_raised_by_the_agents_own_code_is_not(self) -> None:
        """A TypeError in the agent's own code is a bug: never passed off as a bad token."""
        with pytest.raises(TypeError) as raised:
            nonce_hash(None)  # type: ignore[arg-type]  # the bug this test plants
        assert not raised_by_msal(raised.value)


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


def graph_without_consent(stack: Stack) -> None:
    stack.idp.faults["graph_me"] = Fault(
        status=403, body=b'{"error":{"code":"Authorization_RequestDenied"}}')


def id_token_without_dots(stack: Stack) -> None:
    stack.idp.faults["token"] = Fault(status=200, body=b'{"token_type": "Bearer", '
                                      b'"id_token": "nodots", "access_token": "x", '
                                      b'"expires_in": 3600}')


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
    "Graph without admin consent (a configuration problem)": Case(
        GRAPH_USER, graph_without_consent, 503, "grant admin consent",
        {"reason": "graph_forbidden", "upn": None}),
    "ID token MSAL cannot read (malformed, not a crash)": Case(
        "admin@contoso.example", id_token_without_dots, 400, "could not be trusted",
        {"reason": "id_token_malformed", "upn": None}),
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
