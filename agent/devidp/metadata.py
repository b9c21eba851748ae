"""The tenant's discovery document and its JWKS."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from .endpoint import bind, endpoint
from .state import ProviderState


def routes(state: ProviderState) -> list[web.RouteDef]:
    return [
        bind(state, "GET", "/{tenant}/v2.0/.well-known/openid-configuration", discovery),
        bind(state, "GET", "/{tenant}/discovery/v2.0/keys", jwks),
    ]


@endpoint("discovery")
async def discovery(state: ProviderState, request: web.Request) -> web.StreamResponse:
    return web.json_response(discovery_document(state),
                             headers={"Cache-Control": "max-age=86400, private"})


@endpoint("jwks")
async def jwks(state: ProviderState, request: web.Request) -> web.StreamResponse:
    with_kid = not state.token_tweaks.jwks_without_kid
    keys = [k.jwk(state.issuer, with_kid=with_kid) for k in state.keys]
    return web.json_response({"keys": keys}, headers={"Cache-Control": "max-age=86400"})


def discovery_document(state: ProviderState) -> dict[str, Any]:
    """The tenant's v2.0 OpenID configuration, shaped like Entra's."""
    issuer = state.token_tweaks.discovery_issuer or state.issuer
    doc: dict[str, Any] = {
        "token_endpoint": state.token_endpoint,
        "token_endpoint_auth_methods_supported": [
            "client_secret_post", "private_key_jwt", "client_secret_basic",
        ],
        "jwks_uri": state.jwks_uri,
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": issuer,
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"{state.graph_url}/oidc/userinfo",
        "authorization_endpoint": state.authorization_endpoint,
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": state.end_session_endpoint,
        "claims_supported": [
            "sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
            "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr",
            "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email",
        ],
        "tenant_region_scope": "EU",
        "cloud_instance_name": "devidp.localhost",
        "cloud_graph_host_name": urlsplit(state.graph_url).netloc,
        "msgraph_host": urlsplit(state.graph_url).netloc,
        "rbac_url": f"{state.url}/rbac",
    }
    if state.iss_parameter_supported:
        doc["authorization_response_iss_parameter_supported"] = True
    return doc
