"""Microsoft Graph: the user's profile and group membership, failing closed.

``/v1.0/me`` fills first name, last name and UPN when the ID token lacks them;
``/v1.0/me/checkMemberGroups`` (transitive, 20 ids per call) answers which of the
*configured* groups the user is in — used on overage and when the token carries no groups.
Throttling (429 + ``Retry-After``) is retried a bounded number of times; any other failure
ends the sign-in with ``IdentityProviderUnavailable`` (a refusal for missing admin consent:
``ConfigurationProblem``): never carry on with no groups.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationProblem, IdentityProviderUnavailable
from .outbound import JsonResponse, Outbound, retry_after_seconds

GRAPH = "Microsoft Graph"
MAX_IDS_PER_CALL = 20
MAX_RETRIES = 2
MAX_RETRY_AFTER = 5.0


@dataclass(frozen=True)
class Profile:
    given_name: str | None
    family_name: str | None
    upn: str | None


class GraphClient:
    def __init__(self, outbound: Outbound, graph_url: str,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.outbound = outbound
        self.graph_url = graph_url.rstrip("/")
        self.sleep = sleep

    async def profile(self, access_token: str) -> Profile:
        url = f"{self.graph_url}/v1.0/me?$select=givenName,surname,userPrincipalName"
        body = await self._call("GET", url, access_token, None)
        return Profile(text_or_none(body.get("givenName")), text_or_none(body.get("surname")),
                       text_or_none(body.get("userPrincipalName")))

    async def member_groups(self, access_token: str, group_ids: list[str]) -> list[str]:
        """Which of ``group_ids`` the user belongs to (transitively)."""
        found: list[str] = []
        for start in range(0, len(group_ids), MAX_IDS_PER_CALL):
            chunk = group_ids[start:start + MAX_IDS_PER_CALL]
            body = await self._call("POST", f"{self.graph_url}/v1.0/me/checkMemberGroups",
                                    access_token, {"groupIds": chunk})
            value = body.get("value")
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise IdentityProviderUnavailable(
                    "graph_bad_response", "Microsoft Graph answered group membership "
                    "in an unexpected shape", dependency=GRAPH)
            wanted = {g.lower() for g in chunk}
            found.extend(v.lower() for v in value if v.lower() in wanted)
        return found

    async def _call(self, method: str, url: str, token: str, payload: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        for attempt in range(MAX_RETRIES + 1):
            resp = await self.outbound.request_json(
                method, url, dependency=GRAPH, headers=headers, json_body=payload)
            if resp.status == 429 and attempt < MAX_RETRIES:
                asked = _retry_after(resp)
                await self.sleep(1.0 if asked is None else min(asked, MAX_RETRY_AFTER))
                continue
            break
        if resp.status == 200 and isinstance(resp.body, dict):
            return resp.body
        if resp.status == 429:
            raise IdentityProviderUnavailable(
                "graph_throttled", "Microsoft Graph is throttling this sensor's requests",
                dependency=GRAPH, retry_after=_retry_after(resp))
        if resp.status in (401, 403):  # the app registration, not Graph's health
            raise ConfigurationProblem(
                "graph_forbidden", f"Microsoft Graph refused the request (HTTP {resp.status}); "
                "grant admin consent for the app's API permissions", dependency=GRAPH)
        raise IdentityProviderUnavailable(
            "graph_error", f"Microsoft Graph answered HTTP {resp.status}", dependency=GRAPH)


def _retry_after(resp: JsonResponse) -> float | None:
    """The seconds Graph's ``Retry-After`` asks for (``outbound.retry_after_seconds``)."""
    return retry_after_seconds({k.lower(): v for k, v in resp.headers.items()}.get("retry-after"))


def text_or_none(value: object) -> str | None:
    """A non-blank string, stripped; anything else is None (a missing attribute)."""
    return value.strip() if isinstance(value, str) and value.strip() else None
