"""Outbound safety of webhook deliveries (docs/webhooks.md, "Outbound safety"): which addresses
are allowed, and a delivery client that connects only to the address it vetted at connect time.
Resolvers are injected, receivers are local: no real DNS and no traffic beyond loopback."""

import asyncio
import ipaddress
import ssl
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.webhooks.app.outbound import delivery_client, read_capped
from services.webhooks.app.signing import sign_headers
from services.webhooks.app.urls import address_allowed, check_endpoint_url
from shared.errors import Refused
from tests.support.webhooks_receivers import Receiver, Reply

PUBLIC = "93.184.215.14"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def answers(*rounds: list[str]):
    """A resolver answering each call with the next round of addresses (the last one repeats)."""
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return rounds[min(len(calls), len(rounds)) - 1]

    resolve.calls = calls
    return resolve


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        (PUBLIC, True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("169.254.169.254", False),
        ("0.0.0.0", False),
        ("100.100.100.200", False),
        ("100.64.0.1", False),
        ("224.0.0.1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("64:ff9b::7f00:1", False),
        ("64:ff9b::a9fe:a9fe", False),
        ("2002:7f00:1::", False),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", False),  # Teredo client 127.0.0.1
        ("64:ff9b::5db8:d70e", True),  # NAT64 of a public address
    ],
)
def test_only_globally_routable_addresses_are_allowed(address, ok):
    assert address_allowed(ipaddress.ip_address(address), allow_private=False) is ok


def test_allowing_private_addresses_still_refuses_unspecified_and_multicast():
    allowed = lambda a: address_allowed(ipaddress.ip_address(a), allow_private=True)  # noqa: E731
    assert allowed("127.0.0.1") and allowed("::ffff:127.0.0.1") and allowed("10.0.0.1")
    assert not allowed("0.0.0.0") and not allowed("::") and not allowed("224.0.0.1")


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://100.100.100.200/latest/meta-data", "url_not_public"),
        ("http://[::ffff:127.0.0.1]/hook", "url_not_public"),
        ("http://[64:ff9b::7f00:1]/hook", "url_not_public"),
        ("http://[2002:7f00:1::]/hook", "url_not_public"),
        ("http://2130706433/", "url_invalid"),
        ("http://0/", "url_invalid"),
        ("http://0x7f.1/", "url_invalid"),
        ("https://hooks.example:99999/x", "url_invalid"),
        ("https://hooks.example:0/x", "url_invalid"),
    ],
)
async def test_endpoint_urls_refused_at_create(url, code):
    resolve = answers([PUBLIC])
    with pytest.raises(Refused) as err:
        await check_endpoint_url(url, allow_private=False, resolve=resolve)
    assert (err.value.code, err.value.field) == (code, "url")
    assert resolve.calls == []  # refused on its face, before any lookup


async def test_a_refusal_does_not_name_the_internal_address_resolved():
    with pytest.raises(Refused) as err:
        await check_endpoint_url(
            "https://intranet.example/x", allow_private=False, resolve=answers([PUBLIC, "10.11.12.13"])
        )  # one bad address refuses the name
    assert err.value.code == "url_not_public" and "10.11.12.13" not in err.value.message
    await check_endpoint_url("https://hooks.example/x", allow_private=False, resolve=answers([PUBLIC]))


async def test_dns_rebinding_is_refused_at_connect_time():
    """Public when the endpoint is saved, 127.0.0.1 when the delivery connects."""
    with Receiver() as receiver:
        port = receiver.server.server_address[1]
        url = f"http://rebind.example:{port}/hooks"
        resolve = answers([PUBLIC], ["127.0.0.1"])
        await check_endpoint_url(url, allow_private=False, resolve=resolve)  # passes: public
        async with delivery_client(allow_private=False, timeout=5, resolve=resolve) as client:
            with pytest.raises(Refused) as err:
                await client.post(url, content=b"{}")
        assert err.value.code == "url_not_public" and "127.0.0.1" not in err.value.message
        assert resolve.calls == ["rebind.example", "rebind.example"]  # once to save, once to connect
        assert receiver.hits == []


@pytest.mark.parametrize("internal", ["::ffff:127.0.0.1", "100.100.100.200", "169.254.169.254"])
async def test_a_name_answering_an_internal_address_gets_no_connection(internal):
    async with delivery_client(allow_private=False, timeout=5, resolve=answers([PUBLIC, internal])) as client:
        with pytest.raises(Refused) as err:
            await client.post("http://hooks.example/x", content=b"{}")
    assert err.value.code == "url_not_public" and internal not in err.value.message


async def test_connects_to_the_vetted_ip_keeping_the_host_and_tries_the_next_address():
    with Receiver() as receiver:
        port = receiver.server.server_address[1]
        # 127.0.0.2 has no listener: the next vetted address is tried.
        resolve = answers(["127.0.0.2", "127.0.0.1"])
        async with delivery_client(allow_private=True, timeout=5, resolve=resolve) as client:
            r = await client.post(f"http://hooks.example:{port}/hooks", content=b"{}")
        assert r.status_code == 401 and resolve.calls == ["hooks.example"]
        assert receiver.hits[0].headers["host"] == f"hooks.example:{port}"


async def test_no_redirect_is_followed_and_no_environment_proxy_is_used(monkeypatch):
    with (
        Receiver() as target,
        Receiver() as proxy,
        Receiver(lambda n: Reply(302, headers={"Location": target.url})) as redirecting,
    ):
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy.url.removesuffix("/hooks"))
        redirecting.secrets = [SECRET]  # signed, so it answers with its 302 (unsigned gets 401)
        headers = sign_headers("evt_1", "{}", datetime.now(UTC), [SECRET])
        async with delivery_client(allow_private=True, timeout=5, resolve=answers(["127.0.0.1"])) as client:
            r = await client.post(redirecting.url, content=b"{}", headers=headers)
        assert r.status_code == 302
        assert len(redirecting.hits) == 1 and target.hits == [] and proxy.hits == []


async def test_read_capped_stops_at_the_cap():
    class Endless(httpx.AsyncByteStream):
        async def __aiter__(self):
            while True:
                yield b"x" * 1000

    assert await read_capped(httpx.Response(200, stream=Endless()), 4096) == b"x" * 4096


def _self_signed(tmp_path, name: str) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


async def test_tls_uses_the_url_hostname_for_sni_and_the_certificate_while_dialling_the_vetted_ip(tmp_path):
    cert, key = _self_signed(tmp_path, "hooks.example")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    seen_sni: list[str] = []
    server_ctx.sni_callback = lambda sock, name, ctx: seen_sni.append(name)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        trusting = ssl.create_default_context(cafile=cert)
        async with delivery_client(
            allow_private=True, timeout=5, resolve=answers(["127.0.0.1"]), ssl_context=trusting
        ) as client:
            assert (await client.post(f"https://hooks.example:{port}/x", content=b"{}")).status_code == 204
            with pytest.raises(httpx.ConnectError):  # the certificate is checked against the URL's name
                await client.post(f"https://other.example:{port}/x", content=b"{}")
    finally:
        server.close()
    assert seen_sni[0] == "hooks.example"
