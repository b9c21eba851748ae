"""Groups → role: the most privileged mapped role wins; none → no role."""

from __future__ import annotations

from agent.roles import configured_groups, decide_role, role_name

MAPPING = {"admin": ("a1", "a2"), "security_analyst": ("s1",), "read_only": ("r1", "r2")}


class TestDecideRole:
    def test_single_role(self) -> None:
        """A member of one read-only group is Read only."""
        decision = decide_role(["r2", "unrelated"], MAPPING)
        assert ("read_only", ("r2",)) == (decision.role.id if decision.role else None,
                                          decision.matched_groups)

    def test_most_privileged_wins(self) -> None:
        """A member of admin and read-only groups is Admin."""
        decision = decide_role(["r1", "a2", "s1"], MAPPING)
        assert decision.role is not None and "admin" == decision.role.id
        assert {"r1", "a2", "s1"} == set(decision.matched_groups)

    def test_no_mapped_group(self) -> None:
        """A member of no mapped group gets no role."""
        assert decide_role(["x", "y"], MAPPING).role is None

    def test_case_insensitive_ids(self) -> None:
        """Group object ids compare case-insensitively."""
        decision = decide_role(["S1"], MAPPING)
        assert decision.role is not None and "security_analyst" == decision.role.id

    def test_configured_groups_most_privileged_first(self) -> None:
        """Graph is asked about admin groups first."""
        assert ["a1", "a2", "s1", "r1", "r2"] == configured_groups(MAPPING)


def test_role_name_is_the_readable_name_or_the_id() -> None:
    """Known roles read as people name them; an id this agent does not know stays as it is."""
    assert ("Admin", "Security analyst", "Read only", "auditor") == tuple(
        role_name(r) for r in ("admin", "security_analyst", "read_only", "auditor"))

