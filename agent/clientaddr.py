"""Who the client is: the TCP peer, or, behind a trusted proxy, the address it forwarded.

``X-Forwarded-For`` counts only when the TCP peer is a trusted proxy (``[server]
trusted_proxies``, addresses or networks; loopback by default, as gunicorn's
``forwarded_allow_ips``). The header is then walked from the right: each proxy appends the
address it received the request from, so entries a trusted hop appended are skipped and the
first untrusted one is the client. Everything left of it was written by the client and is
never read. Limits key on ``client_key``: an IPv6 client is its /64 (one subscriber's
allocation; anyone holding one has 2**64 addresses to rotate through).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_TRUSTED_PROXIES = ("127.0.0.1", "::1")
_MAX_HOPS = 32  # entries walked; a longer chain ends at the last trusted hop


def parse_network(text: str) -> IPNetwork:
    """``"10.0.0.5"`` or ``"10.0.0.0/24"`` (host bits allowed); ValueError otherwise."""
    return ipaddress.ip_network(text.strip(), strict=False)


def parse_address(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ProxyTrust:
    """Decides the client address of a request from its TCP peer and ``X-Forwarded-For``."""

    def __init__(self, trusted: Iterable[str]) -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(parse_network(n) for n in trusted)

    def trusts(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)

    def client(self, peer: str | None, forwarded_for: str | None) -> str:
        """The client's address as text ("-" when the peer is unknown, e.g. a unix socket)."""
        if not peer:
            return "-"
        peer_address = parse_address(peer)
        if peer_address is None:
            return peer[:64]
        if not forwarded_for or not self.networks or not self.trusts(peer_address):
            return str(peer_address)
        hop = peer_address
        for entry in reversed(forwarded_for.split(",")[-_MAX_HOPS:]):
            address = parse_address(entry)
            if address is None:  # garbage a proxy passed on: the last address we know
                return str(hop)
            if not self.trusts(address):
                return str(address)
            hop = address
        return str(hop)


def client_key(address: str) -> str:
    """What per-client limits count: the address, an IPv6 one as its /64."""
    if ":" not in address:  # IPv4 (or "-"): as it is, without parsing on every request
        return address
    parsed = parse_address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed) if parsed is not None else address


def loopback_only(network: IPNetwork) -> bool:
    return network.is_loopback or (
        isinstance(network, ipaddress.IPv6Network) and network.prefixlen == 128
        and network.network_address.ipv4_mapped is not None
        and network.network_address.ipv4_mapped.is_loopback)


def exposure_warnings(listen_host: str, trusted: Iterable[str]) -> list[str]:
    """Why ``listen`` on a non-loopback address with these trusted proxies lets clients
    choose their own address (empty when it does not)."""
    address = parse_address(listen_host)
    if address is None or address.is_loopback:
        return []
    out = []
    for text in trusted:
        network = parse_network(text)
        if address.is_unspecified:  # every interface (with "::", IPv4 too)
            covered = not loopback_only(network)
        else:
            covered = address.version == network.version and address in network
        if covered:
            out.append(
                f"server.trusted_proxies: {text} includes the non-loopback listen address "
                f"{listen_host}: any client on that network can set its own X-Forwarded-For "
                "and escape its per-client limits; list only the proxy's own address")
    return out


class _Problems(Protocol):
    def problem(self, key: str, value: object, why: str) -> None: ...


def trusted_proxies_setting(v: _Problems, server: Mapping[str, Any]) -> tuple[str, ...]:
    """``[server] trusted_proxies``, else the deprecated ``trust_forwarded_for``: true is the
    default (loopback), false trusts no proxy."""
    if "trusted_proxies" not in server:
        return () if server.get("trust_forwarded_for") is False else DEFAULT_TRUSTED_PROXIES
    value = server["trusted_proxies"]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        v.problem("server.trusted_proxies", value,
                  'must be a list of addresses or networks, e.g. ["127.0.0.1", "::1"]')
        return DEFAULT_TRUSTED_PROXIES
    out = []
    for text in value:
        try:
            out.append(str(parse_network(text)))
        except ValueError:
            v.problem("server.trusted_proxies", text,
                      "is not an IP address or network (e.g. 10.0.0.0/24)")
    return tuple(out)
