"""``GraphClient``: profile, group checks in chunks, bounded retries on throttling, failing
closed; against the local provider's Graph, with the sleep recorded instead of waited."""

from __future__ import annotations

import pytest

from agent.devidp import DevIdentityProvider, DevUser, Fault
from agent.entra.graph import MAX_IDS_PER_CALL, MAX_RETRIES, MAX_RETRY_AFTER, GraphClient
from agent.entra.outbound import Outbound
from agent.errors import DependencyFailure
from tests.entra.conftest import access_token


class Sleeps:
    """Records how long the client asked to wait, without waiting."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def graph(idp: DevIdentityProvider, outbound: Outbound, sleeps: Sleeps) -> GraphClient:
    return GraphClient(outbound, idp.graph_url, sleep=sleeps)


def person(idp: DevIdentityProvider, username: str = "admin@contoso.example") -> DevUser:
    found = idp.user_by_username(username)
    assert found is not None
    return found


async def unavailable_reason(graph: GraphClient, token: str) -> str:
    with pytest.raises(DependencyFailure) as caught:
        await graph.profile(token)
    return caught.value.reason


class TestProfile:
    async def test_names_and_upn(self, graph: GraphClient, idp: DevIdentityProvider) -> None:
        """/me gives first name, last name and UPN."""
        profile = await graph.profile(access_token(idp, person(idp)))
        assert ("Adele", "Vance", "admin@contoso.example") == (
            profile.given_name, profile.family_name, profile.upn)

    async def test_empty_attribute_is_none(self, graph: GraphClient,
                                           idp: DevIdentityProvider) -> None:
        """An attribute empty in the directory comes back as None."""
        profile = await graph.profile(access_token(idp, person(idp, "nolastname@contoso.example")))
        assert profile.family_name is None and profile.given_name == "Cher"


class TestRetries:
    async def test_throttled_once_then_answered(self, graph: GraphClient,
                                                idp: DevIdentityProvider,
                                                sleeps: Sleeps) -> None:
        """One 429: the client waits Retry-After and asks again."""
        idp.faults["graph_me"] = Fault(status=429, headers={"Retry-After": "2"}, body=b"{}",
                                       times=1)
        assert (await graph.profile(access_token(idp, person(idp)))).upn
        assert ([2.0], 2) == (sleeps.seconds, idp.requests["graph_me"])

    async def test_throttled_beyond_the_retries(self, graph: GraphClient,
                                                idp: DevIdentityProvider,
                                                sleeps: Sleeps) -> None:
        """Still 429 after MAX_RETRIES retries: graph_throttled, and no more calls."""
        idp.faults["graph_me"] = Fault(status=429, headers={"Retry-After": "1"}, body=b"{}")
        assert "graph_throttled" == await unavailable_reason(graph, access_token(idp, person(idp)))
        assert MAX_RETRIES + 1 == idp.requests["graph_me"] == len(sleeps.seconds) + 1

    @pytest.mark.parametrize(("header", "waited"), [
        ("600", MAX_RETRY_AFTER), ("soon", 1.0), ("-3", 0.0), ("0.5", 0.5)])
    async def test_retry_after_is_bounded(self, graph: GraphClient, idp: DevIdentityProvider,
                                          sleeps: Sleeps, header: str, waited: float) -> None:
        """Retry-After is capped, and a value that is not a number means one second."""
        idp.faults["graph_me"] = Fault(status=429, headers={"Retry-After": header}, body=b"{}",
                                       times=1)
        await graph.profile(access_token(idp, person(idp)))
        assert [waited] == sleeps.seconds

    @pytest.mark.parametrize(("status", "reason"), [
        (401, "graph_forbidden"), (403, "graph_forbidden"), (500, "graph_error"),
        (503, "graph_error")])
    async def test_other_failures_are_not_retried(
            self, graph: GraphClient, idp: DevIdentityProvider, sleeps: Sleeps,
            status: int, reason: str) -> None:
        """Refusals and server errors end the sign-in at once (fail closed)."""
        idp.faults["graph_me"] = Fault(status=status, body=b"{}")
        assert reason == await unavailable_reason(graph, access_token(idp, person(idp)))
        assert (1, []) == (idp.requests["graph_me"], sleeps.seconds)


class TestMemberGroups:
    async def test_asks_in_chunks_of_twenty(self, graph: GraphClient,
                                            idp: DevIdentityProvider) -> None:
        """25 configured ids: two calls; the answer is the user's groups among them."""
        user = person(idp)
        asked = [f"dddddddd-0000-4000-8000-{i:012d}" for i in range(24)] + [user.groups[0]]
        found = await graph.member_groups(access_token(idp, user), asked)
        assert [user.groups[0].lower()] == found
        assert -(-len(asked) // MAX_IDS_PER_CALL) == idp.requests["graph_check_member_groups"]

    async def test_unexpected_shape_fails_closed(self, graph: GraphClient,
                                                 idp: DevIdentityProvider) -> None:
        """An answer without a list of ids is graph_bad_response, never 'no groups'."""
        idp.faults["graph_check_member_groups"] = Fault(status=200, body=b'{"value": "x"}')
        with pytest.raises(DependencyFailure) as caught:
            await graph.member_groups(access_token(idp, person(idp)), ["a"])
        assert "graph_bad_response" == caught.value.reason
