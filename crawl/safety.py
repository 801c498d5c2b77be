"""Which URLs the crawler may fetch, and where its connection may go: checked addresses only.

Only http(s) URLs are fetched, and only from hosts whose every address is public. :func:`check_target`
resolves the host once, through :attr:`UrlPolicy.resolver`, and checks *every* address it resolves to; one
loopback / private / link-local / reserved / multicast / unspecified (in short: not globally routable)
address refuses the URL, unless private hosts are allowed or the address lies in an explicitly allowed
network.

The addresses that passed are pinned: the fetcher connects to one of them and never looks the name up
again (:meth:`Target.pinned_url` names the address in the URL; the ``Host`` header, and for https the TLS
server name and the certificate check, keep the original host). A DNS server that answers differently
the second time (DNS rebinding) so never decides where a connection goes. Every redirect hop is checked
and pinned the same way.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit, urlunsplit

__all__ = [
    "UrlPolicy",
    "Resolver",
    "Target",
    "system_resolver",
    "address_problem",
    "check_target",
    "check_url",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]
ALLOWED_SCHEMES = ("http", "https")


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6), via the system resolver.

    In the system's order of preference (the fetcher tries them in this order), without repeats.
    """
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class UrlPolicy:
    """What :func:`check_target` accepts.

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


@dataclass(frozen=True)
class Target:
    """What :func:`check_target` found for ``url``.

    ``problem`` says why the URL must not be fetched (None when it may). Otherwise ``addresses`` holds
    every address the host resolved to, each of which passed the policy: connect to these only. It is
    empty, with ``unresolved`` saying why, when the host did not resolve.
    """

    url: str
    problem: str | None = None
    addresses: tuple[str, ...] = ()
    unresolved: str | None = None

    @property
    def host_header(self) -> str:
        """The ``Host`` header for this URL: its host in ASCII, with the port when the URL names one."""
        parts = urlsplit(self.url)
        host = _ascii_host(parts.hostname or "")
        if ":" in host:
            host = f"[{host}]"
        return host if parts.port is None else f"{host}:{parts.port}"

    def pinned_url(self, address: str) -> str:
        """``url`` with its host replaced by ``address`` (one of :attr:`addresses`) and an explicit port."""
        if address not in self.addresses:
            raise ValueError(f"{address} is not a checked address of {self.url}")
        parts = urlsplit(self.url)
        userinfo, _, _ = parts.netloc.rpartition("@")
        host = f"[{address.replace('%', '%25')}]" if ":" in address else address
        netloc = f"{userinfo + '@' if userinfo else ''}{host}:{_port(parts)}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def _port(parts: SplitResult) -> int:
    if parts.port is not None:
        return parts.port
    return 443 if parts.scheme.lower() == "https" else 80


def _ascii_host(host: str) -> str:
    return host if host.isascii() else host.encode("idna").decode("ascii")


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


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _resolve(host: str, port: int, policy: UrlPolicy) -> tuple[list[str], str | None]:
    """The resolver's answer without repeats, or ``([], why)`` when there is none."""
    try:
        addresses = list(dict.fromkeys(policy.resolver(host, port)))
    except (OSError, UnicodeError) as exc:
        return [], f"cannot resolve host {host}: {type(exc).__name__}: {exc}"
    if not addresses:
        return [], f"host {host} resolved to no address"
    return addresses, None


def check_target(url: str, policy: UrlPolicy) -> Target:
    """Check ``url`` and resolve its host once; see :class:`Target` for the answer.

    Refuses schemes other than http(s), URLs without a host, and hosts with any address that fails
    :func:`address_problem` (or that is no address at all). A host that does not resolve is not refused:
    with no address to connect to, the fetch fails as a download error.
    """
    try:
        parts = urlsplit(url)
        port = _port(parts)
        host = _ascii_host(parts.hostname or "")
    except (ValueError, UnicodeError) as exc:
        return Target(url, problem=f"malformed url: {exc}")
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        return Target(
            url, problem=f"scheme {scheme or '(none)'!r} not allowed (allowed: {', '.join(ALLOWED_SCHEMES)})"
        )
    if not host:
        return Target(url, problem="url has no host")
    literal = _literal(host)
    if literal is not None:
        problem = address_problem(literal, policy)
        if problem is not None:
            return Target(url, problem=f"{problem} address {literal}")
        return Target(url, addresses=(literal,))
    addresses, unresolved = _resolve(host, port, policy)
    for address in addresses:
        if _literal(address.split("%", 1)[0]) is None:
            return Target(url, problem=f"host {host} resolves to {address!r}, which is no IP address")
        problem = address_problem(address, policy)
        if problem is not None:
            return Target(url, problem=f"host {host} resolves to {problem} address {address}")
    return Target(url, addresses=tuple(addresses), unresolved=unresolved)


def check_url(url: str, policy: UrlPolicy) -> str | None:
    """Why ``url`` must not be fetched, or None when it may (see :func:`check_target`)."""
    return check_target(url, policy).problem
