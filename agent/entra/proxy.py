"""The proxy on the way to Entra ID and Graph, for both HTTP clients and check-connectivity.

``entra.https_proxy``, else the environment's ``HTTPS_PROXY`` (unless ``NO_PROXY`` exempts
the host). A login in its URL (``user:password@``, percent-encoded: a plant's proxy that asks
for one) is split off: each client gets the URL without it and sends the login as
``Proxy-Authorization: Basic`` on its ``CONNECT``, so no error text of theirs can hold the
password. A ``407`` is said with what to do, never with the login.
"""

from __future__ import annotations

import urllib.request
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..settings import EntraSettings
from ..settings.values import split_proxy_login

if TYPE_CHECKING:
    import requests.adapters  # imported with MSAL, when its application is first built


def proxy_for(settings: EntraSettings, url: str) -> tuple[str | None, str | None]:
    """The proxy for ``url`` without its login, and the ``Proxy-Authorization`` value for the
    login (None for either when there is none)."""
    proxy = settings.https_proxy
    if not proxy:
        host = urlsplit(url).hostname or ""
        proxy = urllib.request.getproxies_environment().get("https")
        if not proxy or urllib.request.proxy_bypass(host):
            return None, None
    return split_proxy_login(proxy)


def proxy_refusal(status: int, logged_in: bool) -> str:
    """Why the proxy refused the tunnel, and what to do (never the login itself)."""
    if status != 407:
        return (f"the proxy refused the tunnel (HTTP {status}): allow CONNECT to this host for "
                "the sensor on the proxy")
    if logged_in:
        return ("the proxy refused the login (HTTP 407): check the user and password in "
                "entra.https_proxy (or HTTPS_PROXY)")
    return ("the proxy asks for a login (HTTP 407): put user:password@ in entra.https_proxy "
            "(percent-encode @ : / in them)")


def proxy_login_adapter(login: str) -> requests.adapters.HTTPAdapter:
    """requests' adapter that sends ``login`` as ``Proxy-Authorization`` on its ``CONNECT``
    (requests takes that header from the adapter, never from a request's ``headers=``)."""
    import requests.adapters

    class Adapter(requests.adapters.HTTPAdapter):
        def proxy_headers(self, proxy: str) -> dict[str, str]:
            return {"Proxy-Authorization": login}

    return Adapter()
