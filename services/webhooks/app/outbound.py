"""The HTTP client for deliveries: it connects only to an address vetted when the connection is
made. The name is resolved once per connection, every address it resolves to is vetted, and
the socket is dialled to a vetted IP, while the Host header and TLS (SNI and certificate check)
keep using the URL's hostname. No environment proxies, no redirects.
"""

import asyncio
import contextlib
import ssl
import typing

import httpcore
import httpx

from .urls import Resolver, system_resolver, vetted_addresses

MAX_RESPONSE_BYTES = 4096  # what is read of a receiver's answer, and kept in the delivery log
# Resolving, TCP and TLS: a receiver that is up answers within this, and one that black-holes
# connections must not hold a delivery slot for the whole attempt timeout.
CONNECT_TIMEOUT_S = 3.0


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Dials vetted IPs instead of letting the socket layer resolve the name again."""

    def __init__(self, *, allow_private: bool, resolve: Resolver = system_resolver) -> None:
        self.allow_private, self.resolve = allow_private, resolve
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None, socket_options=None
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):  # a name server that never answers counts as connecting
                addresses = await vetted_addresses(host, port, allow_private=self.allow_private, resolve=self.resolve)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"Cannot resolve {host} within {timeout:g}s.") from None
        for ip in addresses:  # the next vetted address if one does not answer
            try:
                return await self._inner.connect_tcp(ip, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                continue
        # Named by host, not IP: the tenant sees this message in the delivery log.
        raise httpcore.ConnectError(f"Cannot connect to {host}:{port}.")

    async def connect_unix_socket(self, *args, **kwargs):
        raise httpcore.ConnectError("Unix sockets are not used for deliveries.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


# httpcore's errors as httpx's (most specific first), so callers catch httpx.HTTPError as usual.
_ERRORS = [
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProtocolError, httpx.ProtocolError),
]


@contextlib.contextmanager
def _as_httpx_errors() -> typing.Iterator[None]:
    try:
        yield
    except tuple(frm for frm, _ in _ERRORS) as exc:
        mapped = next(to for frm, to in _ERRORS if isinstance(exc, frm))
        raise mapped(str(exc)) from exc


class _Body(httpx.AsyncByteStream):
    def __init__(self, stream) -> None:
        self._stream = stream

    async def __aiter__(self) -> typing.AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        if hasattr(self._stream, "aclose"):
            await self._stream.aclose()


class PinnedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over an httpcore pool whose network backend is a PinnedBackend."""

    def __init__(self, backend: PinnedBackend, limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(trust_env=False),
            network_backend=backend,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = httpcore.URL(
            scheme=request.url.raw_scheme, host=request.url.raw_host, port=request.url.port, target=request.url.raw_path
        )
        req = httpcore.Request(
            request.method, url, headers=request.headers.raw, content=request.stream, extensions=request.extensions
        )
        with _as_httpx_errors():
            resp = await self._pool.handle_async_request(req)
        return httpx.Response(resp.status, headers=resp.headers, stream=_Body(resp.stream), extensions=resp.extensions)

    async def aclose(self) -> None:
        await self._pool.aclose()


def delivery_client(
    *,
    allow_private: bool,
    timeout: float,
    limits: httpx.Limits | None = None,
    resolve: Resolver = system_resolver,
    ssl_context: ssl.SSLContext | None = None,
    connect_timeout: float = CONNECT_TIMEOUT_S,
) -> httpx.AsyncClient:
    """`ssl_context` defaults to httpx's (certifi's CAs); tests pass one trusting their own CA."""
    transport = PinnedTransport(
        PinnedBackend(allow_private=allow_private, resolve=resolve), limits or httpx.Limits(), ssl_context
    )
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(timeout, connect=min(connect_timeout, timeout)),
        follow_redirects=False,
        trust_env=False,
    )


async def read_capped(response: httpx.Response, cap: int = MAX_RESPONSE_BYTES) -> bytes:
    """At most `cap` bytes of the body: a receiver cannot make us read (or store) more."""
    body = b""
    async for chunk in response.aiter_raw():
        body += chunk[: cap - len(body)]
        if len(body) >= cap:
            break
    return body
