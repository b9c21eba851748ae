"""Label values come from fixed sets only: every reason code the agent raises is in
``labels.REASONS``, and an exposition after hostile input holds no UPN, oid or address."""

from __future__ import annotations

import ast
from pathlib import Path

from agent.entra.outbound import reason_slug
from agent.metrics.labels import (
    DEPENDENCIES,
    DEPENDENCY_OF,
    METHODS,
    OTHER,
    REASONS,
    RELOAD_RESULTS,
    REVALIDATION_OUTCOMES,
    ROLE_IDS,
    THROTTLED,
    TRANSPORT_SUFFIXES,
)
from agent.metrics.tally import AgentMetrics
from tests.metrics.support import Watched, samples, scrape_text

AGENT = Path(__file__).resolve().parents[2] / "agent"
ERRORS = {"SignInRefused", "SignInRejected", "IdentityProviderUnavailable", "StateUnavailable",
          "LocalSignInRefused", "SignInError"}


def raised_reasons() -> set[str]:
    """The first argument of every refusal the agent's code constructs (not the provider's)."""
    found: set[str] = set()
    for path in AGENT.rglob("*.py"):
        if "devidp" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else \
                func.attr if isinstance(func, ast.Attribute) else None
            if name in ERRORS and isinstance(node.args[0], ast.Constant):
                found.add(str(node.args[0].value))
        for node in ast.walk(ast.parse(path.read_text())):  # roles.no_role_reason and kin
            if isinstance(node, ast.FunctionDef) and node.name.endswith("_reason"):
                for ret in ast.walk(node):
                    if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Tuple) \
                            and isinstance(ret.value.elts[0], ast.Constant):
                        found.add(str(ret.value.elts[0].value))
    return found


def test_every_reason_code_the_agent_raises_is_a_label_value() -> None:
    """A new reason code in the agent's code must be added to labels.REASONS (else it
    would count as other); the scan finds the codes it should, those handed over by a
    ``*_reason`` function too."""
    raised = raised_reasons()
    assert {"no_role", "no_app_role", "idp_unreachable", "bad_credentials",
            "id_token_malformed"} <= raised
    assert set() == raised - REASONS


def test_the_way_outs_failures_are_label_values() -> None:
    """What entra/outbound.py names after a dependency (microsoft_graph_timeout, ...) is
    in labels.REASONS for every dependency the metrics know."""
    for name in DEPENDENCY_OF:
        for suffix in TRANSPORT_SUFFIXES:
            assert reason_slug(name) + suffix in REASONS


def test_an_unknown_reason_or_method_counts_as_other() -> None:
    """Whatever the caller passes, the label is one of the fixed values or ``other``."""
    metrics = AgentMetrics()
    metrics.refused("sso", "user@contoso.example")
    metrics.refused("kerberos", "no_role")
    metrics.throttle("10.0.0.1")
    assert {("sso", OTHER), (OTHER, "no_role")} == set(metrics.refusals)
    assert {OTHER, *THROTTLED} == set(metrics.throttled)


ALLOWED = {"method": {*METHODS, OTHER}, "reason": {*REASONS, OTHER},
           "outcome": {"succeeded", "refused", *REVALIDATION_OUTCOMES},
           "role": {*ROLE_IDS, OTHER}, "dependency": set(DEPENDENCIES),
           "result": set(RELOAD_RESULTS), "what": {*THROTTLED, OTHER},
           "status": {"200", "400", "401", "403", "500"}, "le": None, "version": None,
           "python": None, "task": None}


async def test_the_exposition_holds_only_fixed_label_values(watched: Watched) -> None:
    """After sign-ins, refusals and /auth/check answers with hostile headers, every label
    value of the agent's families is one of the fixed values, and no UPN, object id or
    address appears anywhere in the exposition."""
    browser = watched.stack.browser()
    assert 302 == (await browser.sign_in("admin@contoso.example")).status
    await browser.get("/auth/check?role=read_only",
                      headers={"X-Original-URI": "/x@y", "X-Forwarded-For": "10.9.8.7"})
    refused = watched.stack.browser()
    assert 403 == (await refused.sign_in("nogroup@contoso.example")).status
    status, _, text = await scrape_text(watched.url)
    assert 200 == status
    for (name, labels) in samples(text):
        if not name.startswith("sensor_sso_"):
            continue
        for key, value in labels:
            allowed = ALLOWED[key]
            assert allowed is None or value in allowed, (name, key, value)
    for secretish in ("@", "contoso", "10.9.8.7", "127.0.0.1:"):
        assert secretish not in text.replace("127.0.0.1:" + str(watched.port), "")
