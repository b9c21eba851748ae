"""Property-based: hostile answers from the token endpoint, Graph, discovery and JWKS.

Hypothesis makes the local provider answer with odd nesting, sizes, types and encodings
(its ``faults`` and ``token_tweaks``, over real HTTP and TLS) at sign-in, at re-validation
and at the discovery and key fetches the background tasks make. Whatever comes back: no
exception escapes a handler or a background task (no 5xx, no ``internal_error``, no
``task_failed``, no asyncio "exception was never retrieved"), and every refusal is a clean
page with a logged reason, or an outcome with one. Example counts are kept small so the
file runs in well under a minute.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from agent.devidp import Fault
from agent.entra.discovery import TenantMetadata
from agent.errors import IdentityProviderUnavailable, MetadataProblem
from agent.web import keys
from tests.harness import Browser, Stack, make_stack
from tests.security.conftest import ADMIN

T = TypeVar("T")
GRAPH_USER = "graphprofile@contoso.example"  # token without profile claims or groups: Graph
OVERAGE_USER = "overage@contoso.example"  # more groups than a token holds: Graph
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
PAGES = {302, 400, 403, 502}
CRASHES = {"internal_error", "task_failed", "unhandled_exception"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats()
    | st.text(max_size=40) | st.sampled_from(["", "-1", "1e400", "\x00", "\ud7ff" * 3]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=12)


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def oversized(field: str, size: int) -> bytes:
    return json.dumps({field: "A" * size}).encode()


def shaped(fields: list[str]) -> st.SearchStrategy[bytes]:
    """A JSON object with the expected field names and values of any type."""
    return st.dictionaries(st.sampled_from(fields), json_values, max_size=len(fields)).map(
        lambda d: json.dumps(d).encode())


def bodies(fields: list[str]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        shaped(fields),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.sampled_from([2_000, 20_000, 200_000]).map(nested),
        st.tuples(st.sampled_from(fields), st.sampled_from([70_000, 1_500_000])).map(
            lambda t: oversized(*t)),
        st.binary(max_size=200),
        shaped(fields).map(lambda b: b.decode().encode("utf-16")),
        st.just(b"<html><body>Proxy error</body></html>"),
    )


def faults(fields: list[str]) -> st.SearchStrategy[Fault]:
    return st.builds(
        Fault, status=st.sampled_from([200, 200, 400, 401, 403, 404, 429, 500, 503]),
        body=bodies(fields),
        content_type=st.sampled_from(["application/json", "application/json; charset=utf-16",
                                      "text/html", "application/octet-stream",
                                      "application/json; charset=no-such-charset"]),
        headers=st.sampled_from([{}, {"Retry-After": "x"}, {"Retry-After": "-5"},
                                 {"Retry-After": "99999999999"}, {"Content-Encoding": "gzip"}]))


TOKEN_FIELDS = ["access_token", "id_token", "refresh_token", "token_type", "expires_in",
                "scope", "client_info", "error", "error_description", "error_codes",
                "suberror"]
GRAPH_FIELDS = ["givenName", "surname", "userPrincipalName", "value", "@odata.nextLink",
                "error", "id", "mail"]
DISCOVERY_FIELDS = ["issuer", "authorization_endpoint", "token_endpoint", "jwks_uri",
                    "end_session_endpoint", "keys", "id_token_signing_alg_values_supported",
                    "authorization_response_iss_parameter_supported", "kid", "n", "e", "kty"]
HEADER = ["alg", "kid", "typ", "x5t", "jku", "crit", "cty", "b64"]
CLAIMS = ["given_name", "family_name", "upn", "preferred_username", "groups", "oid", "sub",
          "tid", "iat", "exp", "nbf", "ver", "sid", "roles", "acrs", "auth_time", "name",
          "_claim_names", "_claim_sources", "email", "nonce", "aud", "azp"]


class Crashes(logging.Handler):
    """Records of the standard library's logging at ERROR (asyncio's "never retrieved")."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage()[:300])


class Env:
    """One event loop and one stack for a whole hypothesis run."""

    def __init__(self, tmp_path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.stack: Stack = self.run(make_stack(tmp_path, config=generous))
        self.examples = 0
        self.clients = 0
        self.last: Any = None
        self.crashes = Crashes()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.stack.close())
        self.loop.close()

    async def browser(self) -> Browser:
        return self.stack.browser()

    @contextmanager
    def watched(self) -> Iterator[list[MutableMapping[str, Any]]]:
        """Structlog events of one example; fails on any crash sign in them or in logging."""
        root = logging.getLogger()
        root.addHandler(self.crashes)
        try:
            with capture_logs() as logs:
                yield logs
            self.run(asyncio.sleep(0))  # let a failed task be collected and reported
        finally:
            root.removeHandler(self.crashes)
        assert [] == [e for e in logs if e["event"] in CRASHES], logs
        assert [] == self.crashes.seen

    def reset(self) -> None:
        self.stack.idp.reset_misbehaviour()


def generous(data: dict[str, Any]) -> None:
    data["session"]["sign_ins_per_minute_per_client"] = 1_000_000
    data["entra"]["timeout"] = "2s"


def with_env(tmp_path: Path, body: Callable[[Env], None]) -> None:
    env = Env(tmp_path)
    try:
        body(env)
    finally:
        env.close()


def sign_in_checked(env: Env, username: str) -> int:
    """One sign-in through the provider's pages; a refusal must be a page with a reason.
    Each from its own address (behind the trusted proxy), so that no refusal is folded
    into a later audit_burst summary."""
    env.clients += 1

    async def go() -> tuple[int, str]:
        browser = await env.browser()
        browser.http.headers["X-Forwarded-For"] = f"10.9.{env.clients // 250}.{env.clients % 250}"
        try:
            resp = await browser.sign_in(username)
            return resp.status, await resp.text()
        finally:
            await browser.close()

    with env.watched() as logs:
        status, text = env.run(go())
    assert status in PAGES, (status, text[:300])
    env.last = (status, [e for e in logs if e["event"] in ("sso_login_refused", "idp_error")])
    if status != 302:
        reasons = [e.get("reason") for e in logs if e["event"] == "sso_login_refused"]
        assert reasons and all(reasons), logs
        assert "What to do" in text or "try again" in text.lower(), text[:500]
    return status


def test_hostile_token_endpoint_answers_at_sign_in(tmp_path: Path) -> None:
    """Whatever the token endpoint answers to the code redemption: a page with a reason."""

    def body(env: Env) -> None:
        refused = []

        @SETTINGS
        @given(fault=faults(TOKEN_FIELDS))
        def prop(fault: Fault) -> None:
            env.examples += 1
            env.reset()
            env.stack.idp.faults["token"] = fault
            refused.append(sign_in_checked(env, ADMIN) != 302)

        prop()
        assert env.examples >= 20 and sum(refused) >= 15  # the faults did bite
        env.reset()
        assert 302 == sign_in_checked(env, ADMIN), repr(env.last)[:3000]  # next user: in

    with_env(tmp_path, body)


def test_hostile_id_token_claims_at_sign_in(tmp_path: Path) -> None:
    """Claims and JOSE header entries of any type in an ID token: a page with a reason,
    or signed in."""

    def body(env: Env) -> None:
        refused = []

        @SETTINGS
        @given(claims=st.dictionaries(st.sampled_from(CLAIMS), json_values, max_size=3),
               header=st.dictionaries(st.sampled_from(HEADER), json_values, max_size=2),
               user=st.sampled_from([ADMIN, GRAPH_USER]))
        def prop(claims: dict[str, Any], header: dict[str, Any], user: str) -> None:
            env.examples += 1
            env.reset()
            env.stack.idp.token_tweaks.update(claims=claims, header=header)
            refused.append(sign_in_checked(env, user) != 302)

        prop()
        assert env.examples >= 20 and sum(refused) >= 10

    with_env(tmp_path, body)


def test_hostile_graph_answers_at_sign_in(tmp_path: Path) -> None:
    """Whatever Graph answers for the profile or the group membership: a page with a
    reason (never a sign-in with no groups because Graph failed)."""

    def body(env: Env) -> None:
        @SETTINGS
        @given(endpoint=st.sampled_from(["graph_me", "graph_check_member_groups",
                                         "graph_get_member_objects"]),
               fault=faults(GRAPH_FIELDS))
        def prop(endpoint: str, fault: Fault) -> None:
            env.examples += 1
            env.reset()
            env.stack.idp.faults[endpoint] = fault
            user = GRAPH_USER if endpoint == "graph_me" else OVERAGE_USER
            refused.append(sign_in_checked(env, user) != 302)

        refused: list[bool] = []
        prop()
        assert env.examples >= 20 and sum(refused) >= 10

    with_env(tmp_path, body)


def test_hostile_discovery_and_keys_in_the_background(tmp_path: Path) -> None:
    """Whatever discovery or JWKS answers to the fetches the background tasks make (load,
    probe, key refresh): only the two errors those tasks handle, and /readyz answers."""

    def body(env: Env) -> None:
        assert env.stack.app is not None
        directory = env.stack.app[keys.TENANT]
        settings_ = env.stack.settings

        async def fetches() -> list[str]:
            fresh = TenantMetadata(settings_.entra, directory.outbound, env.stack.clock)
            failures = []
            for fetch in (fresh.load, directory.probe, directory.refresh_keys):
                try:
                    await fetch()
                except (IdentityProviderUnavailable, MetadataProblem) as exc:
                    failures.append(str(exc))
            browser = await env.browser()
            try:
                ready = await browser.get("/readyz")
                assert ready.status in (200, 503)
            finally:
                await browser.close()
            return failures

        @SETTINGS
        @given(endpoint=st.sampled_from(["discovery", "jwks"]),
               fault=faults(DISCOVERY_FIELDS))
        def prop(endpoint: str, fault: Fault) -> None:
            env.examples += 1
            env.reset()
            env.stack.idp.faults[endpoint] = fault
            with env.watched():
                failures = env.run(fetches())
            assert all(failures)  # each one says why
            refused.append(bool(failures))

        refused: list[bool] = []
        prop()
        assert env.examples >= 20 and sum(refused) >= 10

    with_env(tmp_path, body)


def test_hostile_answers_at_revalidation(tmp_path: Path) -> None:
    """Whatever the token endpoint, the refreshed ID token or Graph says at re-validation:
    each session's outcome is a decision with a reason, never an unforeseen failure."""

    def body(env: Env) -> None:
        assert env.stack.app is not None
        revalidator = env.stack.app[keys.REVALIDATOR]
        sessions = env.stack.app[keys.SESSIONS]

        def live_session(user: str) -> None:
            if not any(s.upn == user for s in sessions.live()):
                env.reset()
                assert 302 == sign_in_checked(env, user)

        @SETTINGS
        @given(kind=st.sampled_from(["token", "claims", "graph_me",
                                     "graph_check_member_groups"]),
               fault=faults(TOKEN_FIELDS + GRAPH_FIELDS),
               claims=st.dictionaries(st.sampled_from(CLAIMS), json_values, min_size=1,
                                      max_size=2))
        def prop(kind: str, fault: Fault, claims: dict[str, Any]) -> None:
            env.examples += 1
            user = {"graph_me": GRAPH_USER, "graph_check_member_groups": OVERAGE_USER}.get(
                kind, ADMIN)
            live_session(user)
            env.reset()
            if kind == "claims":
                env.stack.idp.token_tweaks.claims = claims
            else:
                env.stack.idp.faults[kind] = fault
            with env.watched() as logs:
                outcomes = env.run(revalidator.revalidate_now(user))
            assert outcomes, "no session re-validated"
            for outcome in outcomes:
                assert outcome.result in {"confirmed", "role_changed", "revoked",
                                          "unavailable", "rejected", "gone"}, outcome
                assert outcome.result == "confirmed" or outcome.detail, outcome
            if any(o.result == "revoked" for o in outcomes):
                assert [e for e in logs if e["event"] == "session_revoked" and e["reason"]]
            results.extend(o.result for o in outcomes)

        results: list[str] = []
        prop()
        assert env.examples >= 20 and len(set(results) - {"confirmed"}) >= 2, results

    with_env(tmp_path, body)
