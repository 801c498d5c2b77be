"""Which URLs the crawler may fetch: http(s) only, and only hosts whose every address is public.

The host is resolved and *every* address it resolves to is checked; one loopback / private / link-local /
reserved / multicast / unspecified (in short: not globally routable) address refuses the URL, unless
private hosts are allowed or the address lies in an explicitly allowed network. The fetcher calls
:func:`check_url` again on every redirect hop.

Limitation: the check resolves the name, then the HTTP library resolves it again to connect, so a DNS
server that answers differently the second time (DNS rebinding) is not caught.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["UrlPolicy", "Resolver", "system_resolver", "address_problem", "check_url"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]
ALLOWED_SCHEMES = ("http", "https")


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6), via the system resolver."""
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


@dataclass(frozen=True)
class UrlPolicy:
    """What :func:`check_url` accepts.

    ``allowed_networks`` are CIDR networks exempt from the private-address refusal even when
    ``allow_private_hosts`` is false (an internal mirror, or 127.0.0.1 in tests).
    """

    allow_private_hosts: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()
    resolver: Resolver = field(default=system_resolver, compare=False)

    @classmethod
    def from_strings(
        cls,
        *,
        allow_private_hosts: bool,
        allowed_networks: Sequence[str],
        resolver: Resolver = system_resolver,
    ) -> UrlPolicy:
        nets = tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks)
        return cls(allow_private_hosts=allow_private_hosts, allowed_networks=nets, resolver=resolver)


def address_problem(address: str, policy: UrlPolicy) -> str | None:
    """Why ``address`` may not be contacted (``"private"``, ``"loopback"`` ...), or None if it may."""
    ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if policy.allow_private_hosts or any(ip in net for net in policy.allowed_networks):
        return None
    for kind in ("loopback", "unspecified", "link_local", "multicast", "private", "reserved"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    if not ip.is_global:
        return "not globally routable"
    return None


def check_url(url: str, policy: UrlPolicy) -> str | None:
    """Return why ``url`` must not be fetched, or None when it may be.

    Refuses schemes other than http(s), URLs without a host, and hosts with any address that fails
    :func:`address_problem`. A host that does not resolve is not refused here: the connection attempt
    fails and is reported as a download error.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"malformed url: {exc}"
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        return f"scheme {scheme or '(none)'!r} not allowed (allowed: {', '.join(ALLOWED_SCHEMES)})"
    host = parts.hostname
    if not host:
        return "url has no host"
    if port is None:
        port = 443 if scheme == "https" else 80
    try:
        literal = str(ipaddress.ip_address(host))
    except ValueError:
        literal = None
    if literal is not None:
        problem = address_problem(literal, policy)
        return None if problem is None else f"{problem} address {literal}"
    try:
        addresses = policy.resolver(host, port)
    except (OSError, UnicodeError):
        return None  # unresolvable: the connection attempt reports it
    for address in addresses:
        problem = address_problem(address, policy)
        if problem is not None:
            return f"host {host} resolves to {problem} address {address}"
    return None
