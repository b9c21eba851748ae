"""Fixtures of the Entra client unit tests: the local provider and the agent's outbound client
pointed at it (real HTTPS on loopback; nothing of the agent is stubbed)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.devidp import GRAPH_APP_ID, DevIdentityProvider, DevUser, demo_users
from agent.devidp.keys import build_jws
from agent.entra.outbound import Outbound
from agent.settings import EntraSettings, settings_from_mapping
from tests.clock import Clock
from tests.harness import CLIENT, ROLE_GROUPS, TENANT, agent_config, free_port


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def idp(clock: Clock) -> AsyncIterator[DevIdentityProvider]:
    provider = DevIdentityProvider(TENANT, CLIENT, [], demo_users(ROLE_GROUPS), clock=clock)
    await provider.start()
    yield provider
    await provider.stop()


@pytest.fixture
def entra(idp: DevIdentityProvider, tmp_path: Path) -> EntraSettings:
    return settings_from_mapping(agent_config(idp, free_port(), tmp_path / "state")).entra


@pytest.fixture
async def outbound(entra: EntraSettings) -> AsyncIterator[Outbound]:
    client = Outbound(entra)
    await client.start()
    yield client
    await client.close()


def access_token(idp: DevIdentityProvider, user: DevUser) -> str:
    """A Graph access token for ``user``, signed by the provider's current key."""
    now = int(time.time())
    return build_jws({"aud": GRAPH_APP_ID, "iss": f"{idp.url}/{TENANT}/", "iat": now,
                      "exp": now + 3600, "oid": user.oid, "tid": TENANT,
                      "scp": "User.Read GroupMember.Read.All"}, idp.signing_key)
