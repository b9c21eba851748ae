"""Outbound HTTPS to Entra ID and Microsoft Graph: trust, proxy, timeouts, error translation.

Two clients share one policy: an aiohttp session for the agent's own calls (discovery, JWKS,
Graph) and a requests-compatible object for MSAL (``http_client=``), which adds the SPA
``Origin`` header to token requests. Both honour ``ca_bundle`` and ``https_proxy``; requests
lets ``REQUESTS_CA_BUNDLE`` override ``Session.verify``, so ``verify=`` goes on every call.
The proxy and its login: ``proxy.py``.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from ..errors import AgentError, IdentityProviderUnavailable
from ..settings import EntraSettings
from .proxy import proxy_for, proxy_login_adapter, proxy_refusal

if TYPE_CHECKING:
    import requests  # imported with MSAL, when its application is first built (client.py)

MAX_BODY = 1024 * 1024  # bytes of an answer from Entra ID or Graph, after decompression


class ResponseTooLarge(AgentError):
    """An answer longer than ``MAX_BODY``: refused before it is read into memory whole."""


def ssl_context(settings: EntraSettings) -> ssl.SSLContext:
    """Trust the configured CA bundle, else the system store."""
    if settings.ca_bundle is not None:
        return ssl.create_default_context(cafile=str(settings.ca_bundle))
    return ssl.create_default_context()


@dataclass
class JsonResponse:
    status: int
    headers: dict[str, str]
    body: Any


class Outbound:
    """The agent's aiohttp client; failures become ``IdentityProviderUnavailable``."""

    def __init__(self, settings: EntraSettings) -> None:
        self.settings = settings
        self._ssl = ssl_context(settings)
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, tuple[str | None, dict[str, str] | None]] = {}

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
            connector=aiohttp.TCPConnector(ssl=self._ssl, limit=50),
            trust_env=False,  # the environment's proxy: proxy_for, once per host
        )

    def _proxy(self, url: str) -> tuple[str | None, dict[str, str] | None]:
        host = urlsplit(url).hostname or ""
        if host not in self._proxies:
            proxy, login = proxy_for(self.settings, url)
            self._proxies[host] = (proxy, {"Proxy-Authorization": login} if login else None)
        return self._proxies[host]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request_json(self, method: str, url: str, *, dependency: str,
                           headers: dict[str, str] | None = None,
                           json_body: Any = None) -> JsonResponse:
        """Send a request and parse JSON; network errors and non-JSON answers raise 502."""
        if self._session is None:
            raise RuntimeError("Outbound.start() not called")
        slug = reason_slug(dependency)
        proxy, proxy_headers = self._proxy(url)
        try:
            async with self._session.request(
                method, url, headers=headers, json=json_body, proxy=proxy,
                proxy_headers=proxy_headers, allow_redirects=False,
            ) as resp:
                raw = await _read_capped(resp)
                status, resp_headers = resp.status, dict(resp.headers)
        except ResponseTooLarge:
            raise IdentityProviderUnavailable(
                f"{slug}_response_too_large", f"{dependency} answered with more than "
                f"{MAX_BODY // 1024} KiB", dependency=dependency) from None
        except TimeoutError:
            raise IdentityProviderUnavailable(
                f"{slug}_timeout", f"{dependency} did not answer within "
                f"{self.settings.timeout:g} s", dependency=dependency) from None
        except aiohttp.ClientHttpProxyError as exc:
            raise IdentityProviderUnavailable(
                f"{slug}_unreachable", f"cannot reach {dependency}: "
                f"{proxy_refusal(exc.status, proxy_headers is not None)}",
                dependency=dependency) from None
        except aiohttp.ClientError as exc:
            raise IdentityProviderUnavailable(
                f"{slug}_unreachable", f"cannot reach {dependency}: {type(exc).__name__}",
                dependency=dependency) from None
        try:
            body = json.loads(raw) if raw else None
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
            body = _NOT_JSON
        if body is _NOT_JSON and status < 500 and status != 429:
            raise IdentityProviderUnavailable(
                f"{slug}_bad_response", f"{dependency} answered HTTP {status} "
                "with a body that is not JSON", dependency=dependency)
        return JsonResponse(status, resp_headers, body)


_NOT_JSON = object()


class NothingKept(dict[str, Any]):
    """Forgets whatever is stored in it: MSAL's ``http_cache`` and telemetry buffer
    (entra/client.py says why)."""

    def __setitem__(self, key: str, value: Any) -> None:
        return None

    def setdefault(self, key: str, default: Any = None) -> Any:
        return default


class _CappedBody:
    """A body read in chunks, refused (``ResponseTooLarge``) once it passes ``MAX_BODY``:
    at once when the declared ``Content-Length`` says so, else at the chunk that crosses it.
    One policy for both clients; each feeds it from its own (async or blocking) iterator."""

    CHUNK = 65536

    def __init__(self, declared_length: int | str | None) -> None:
        length = str(declared_length) if declared_length is not None else ""
        if length.isdigit() and int(length) > MAX_BODY:
            raise ResponseTooLarge()
        self._chunks: list[bytes] = []
        self._size = 0

    def add(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > MAX_BODY:
            raise ResponseTooLarge()
        self._chunks.append(chunk)

    def joined(self) -> bytes:
        return b"".join(self._chunks)


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes:
    body = _CappedBody(resp.content_length)
    async for chunk in resp.content.iter_chunked(_CappedBody.CHUNK):
        body.add(chunk)
    return body.joined()


def _read_capped_sync(response: requests.Response) -> bytes:
    body = _CappedBody(response.headers.get("Content-Length"))
    for chunk in response.iter_content(_CappedBody.CHUNK):
        body.add(chunk)
    return body.joined()


def _is_json_object(response: requests.Response) -> bool:
    try:
        return isinstance(response.json(), dict)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to parse
        return False


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` in seconds, for Entra ID and Graph alike: a negative number is 0 (ask
    again now); None for anything else that is not a number of seconds below a day (the
    HTTP-date form is rare from Entra ID: ignored)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(0.0, seconds) if seconds < 86400 else None


def reason_slug(dependency: str) -> str:
    """``"Microsoft Graph"`` → ``"microsoft_graph"``: reason codes stay snake_case."""
    return re.sub(r"[^a-z0-9]+", "_", dependency.lower()).strip("_") or "dependency"


class MsalHttpClient:
    """What MSAL calls as ``http_client``: requests with trust, proxy, timeout and ``Origin``.

    ``last_token_status`` (per thread) tells the caller whether the token endpoint answered,
    so an exception MSAL raises afterwards can be told apart from a network failure.
    """

    def __init__(self, settings: EntraSettings, origin: str | None) -> None:
        self._settings = settings
        self._origin = origin
        self._verify: bool | str = str(settings.ca_bundle) if settings.ca_bundle else True
        import requests

        # The environment's proxy (HTTPS_PROXY / NO_PROXY) is read once, for the authority's
        # host (the only one MSAL calls), not on every request: requests would scan the whole
        # environment (and look for ~/.netrc) each time, about 0.3 ms of a sign-in.
        proxy, login = proxy_for(settings, settings.authority)
        self._proxies = {"https": proxy, "http": proxy} if proxy else None
        self._session = requests.Session()
        self._session.trust_env = False
        self._logged_in = login is not None
        if login:  # on the CONNECT: requests takes it from the adapter, not from headers=
            self._session.mount("https://", proxy_login_adapter(login))
        self._local = threading.local()

    @property
    def last_token_status(self) -> int | None:
        return getattr(self._local, "status", None)

    @property
    def last_token_json_object(self) -> bool:
        """Whether the last answer's body was a JSON object (a token or error response)."""
        return bool(getattr(self._local, "json_object", False))

    @property
    def last_retry_after(self) -> float | None:
        """Seconds the last answer's ``Retry-After`` asked for (numeric form only)."""
        return getattr(self._local, "retry_after", None)

    def reset(self) -> None:
        self._local.status = None
        self._local.json_object = False
        self._local.retry_after = None

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        kwargs.pop("verify", None)
        kwargs.setdefault("timeout", self._settings.timeout)
        import requests

        try:
            response = self._session.request(
                method, url, verify=self._verify, proxies=self._proxies,
                allow_redirects=False, stream=True, **kwargs)
        except requests.exceptions.ProxyError as exc:
            if " 407 " not in str(exc):
                raise
            raise IdentityProviderUnavailable(  # what to do, which MSAL's callers cannot say
                "idp_unreachable", "cannot reach Entra ID: "
                + proxy_refusal(407, self._logged_in), dependency="Entra ID") from None
        try:
            body = _read_capped_sync(response)
        finally:
            response.close()
        response._content = body  # what .text and .json() read (requests' own cache)
        self._local.status = response.status_code
        self._local.json_object = _is_json_object(response)
        self._local.retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        return response

    def get(self, url: str, params: Any = None, headers: Any = None,
            **kwargs: Any) -> requests.Response:
        return self._send("GET", url, params=params, headers=headers, **kwargs)

    def post(self, url: str, params: Any = None, data: Any = None, headers: Any = None,
             **kwargs: Any) -> requests.Response:
        merged = dict(headers or {})
        if self._origin:
            merged["Origin"] = self._origin
        return self._send("POST", url, params=params, data=data, headers=merged, **kwargs)

    def close(self) -> None:
        self._session.close()
