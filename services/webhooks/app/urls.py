"""Endpoint URL checks: http(s) only, a valid port, and only globally routable addresses unless
the operator allows private ones (local development and tests deliver to 127.0.0.1).

The same vetting runs when an endpoint is saved and, in the delivery transport
(outbound.py), on every address a connection is about to use. Messages never name the address
a hostname resolved to: that would map the internal network for whoever asks.
"""

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from shared.errors import Refused

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses it resolves to; injectable so tests never touch real DNS.
Resolver = Callable[[str, int], Awaitable[list[str]]]

SHARED_SPACE = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT; 100.100.100.200 is a metadata service
NAT64 = ipaddress.ip_network("64:ff9b::/96")


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))  # unique, in the resolver's order


def embedded_v4(ip: IP) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64, Teredo client), if any."""
    if ip.version == 4:
        return None
    if ip.ipv4_mapped or ip.sixtofour:
        return ip.ipv4_mapped or ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_allowed(ip: IP, *, allow_private: bool) -> bool:
    inner = embedded_v4(ip)
    if inner is not None and not address_allowed(inner, allow_private=allow_private):
        return False
    if ip.is_unspecified or ip.is_multicast:  # never a receiver, whatever the setting
        return False
    if allow_private:
        return True
    return ip.is_global and ip not in SHARED_SPACE


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def _legacy_numeric(host: str) -> bool:
    """`2130706433`, `0`, `127.1`, `0x7f.1`: forms the C resolver reads as IPv4, ipaddress does not."""
    if _is_literal(host):
        return False
    try:
        socket.inet_aton(host)
        return True
    except OSError:
        return False


def parse_endpoint_url(url: str) -> tuple[str, int]:
    """(host, port) of an acceptable URL, or Refused."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a port out of range or not a number, a malformed [IPv6]
        raise Refused(
            "url_invalid", "url must be an absolute http(s) URL with a valid host and port.", field="url"
        ) from exc
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise Refused("url_invalid", "url must be an absolute http(s) URL.", field="url")
    if port == 0:
        raise Refused("url_invalid", "url must have a port from 1 to 65535.", field="url")
    if _legacy_numeric(host):
        raise Refused("url_invalid", "Write an IPv4 host as four decimal numbers (a.b.c.d).", field="url")
    return host, port or (443 if parts.scheme == "https" else 80)


async def vetted_addresses(
    host: str, port: int, *, allow_private: bool, resolve: Resolver = system_resolver
) -> list[str]:
    """Every address `host` resolves to, if all are allowed; else Refused (naming none of them)."""
    host = host.strip("[]")
    literal = _is_literal(host)
    if literal:
        addresses = [host]
    else:
        try:
            addresses = await resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise Refused("url_unresolvable", f"Cannot resolve {host}.", field="url") from exc
        if not addresses:
            raise Refused("url_unresolvable", f"Cannot resolve {host}.", field="url")
    # All must pass: a name with one public and one internal address is refused.
    if not all(address_allowed(ipaddress.ip_address(a.split("%")[0]), allow_private=allow_private) for a in addresses):
        what = "is not a publicly routable address" if literal else "resolves to a non-public address"
        raise Refused("url_not_public", f"{host} {what}.", field="url")
    return addresses


async def check_endpoint_url(url: str, *, allow_private: bool, resolve: Resolver = system_resolver) -> None:
    """At create/update. Deliveries vet again at connect time, so this is an early answer only."""
    host, port = parse_endpoint_url(url)
    if allow_private and not _is_literal(host):
        return  # nothing to refuse but unspecified/multicast, which the transport refuses anyway
    await vetted_addresses(host, port, allow_private=allow_private, resolve=resolve)
