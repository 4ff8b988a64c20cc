"""Endpoint URL checks: http(s) only, and no private network targets unless allowed."""

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from shared.errors import ApiError


async def check_endpoint_url(url: str, *, allow_private: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError("url_invalid", "url must be an absolute http(s) URL.", field="url")
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ApiError("url_unresolvable", f"Cannot resolve {parts.hostname}.", field="url") from exc
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast:
            raise ApiError("url_not_public", f"{parts.hostname} resolves to a non-public address ({ip}).", field="url")
