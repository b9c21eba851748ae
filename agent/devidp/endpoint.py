"""The preamble every endpoint shares, written once: count, fault, tenant check.

``@endpoint("token")`` counts the request in ``state.requests["token"]``, answers a configured
``state.faults["token"]`` instead of the handler, and refuses a path naming another tenant
(AADSTS90002, JSON or an HTML error page). ``bind`` turns a handler of ``(state, request)``
into an aiohttp route.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Literal

from aiohttp import web

from .faults import ENDPOINTS
from .state import ProviderState

Handler = Callable[[ProviderState, web.Request], Awaitable[web.StreamResponse]]


def endpoint(name: str, *, tenant: Literal["json", "html"] | None = "json"
             ) -> Callable[[Handler], Handler]:
    """Run the shared preamble under ``name`` (one of ``ENDPOINTS``) before the handler.

    ``tenant``: how to refuse another tenant in the path (``None``: no tenant in the path).
    """
    if name not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {name!r}; one of {sorted(ENDPOINTS)}")

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def preamble(state: ProviderState, request: web.Request) -> web.StreamResponse:
            state.requests[name] += 1
            if (faulted := await state.faults.apply(name)) is not None:
                return faulted
            if tenant is not None:
                wrong = state.wrong_tenant(request, html=tenant == "html")
                if wrong is not None:
                    return wrong
            return await handler(state, request)

        return preamble

    return decorate


def bind(state: ProviderState, method: str, path: str, handler: Handler) -> web.RouteDef:
    """The route ``method path`` answered by ``handler(state, request)``."""

    async def answer(request: web.Request) -> web.StreamResponse:
        return await handler(state, request)

    return web.route(method, path, answer)
