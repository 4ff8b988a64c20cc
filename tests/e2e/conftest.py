import contextlib
import os
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from deploy.local.demo import create_tenant, wait_until_key_active

GATEWAY = os.environ.get("BILLSTREAM_GATEWAY_URL", "http://localhost:3000")
PG = os.environ.get("BILLSTREAM_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:55432/postgres")


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def gateway() -> str:
    try:
        httpx.get(f"{GATEWAY}/health", timeout=3).raise_for_status()
    except httpx.HTTPError as exc:
        pytest.fail(f"the stack is not running behind {GATEWAY} ({exc!r}); run `make up` first")
    return GATEWAY


def service_dsn(service: str) -> str:
    """The database of one running service (the tests read read models directly)."""
    return PG.rsplit("/", 1)[0] + f"/billstream_{service}"


class PatientTransport(httpx.HTTPTransport):
    """Waits out a 429 as its Retry-After says, the way a client should: tests that write and
    read in tight loops go faster than one key's rate limit (100/s) on a quick machine."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for _ in range(20):
            response = super().handle_request(request)
            if response.status_code != 429:
                return response
            response.read()
            response.close()
            time.sleep(float(response.headers.get("retry-after") or 1))
        return response


@contextlib.contextmanager
def tenant_client(gateway: str, name: str) -> Iterator[httpx.Client]:
    """A client of a new tenant (its test key, active in every service) that waits out 429s."""
    t = create_tenant(f"{name} {uuid.uuid4().hex[:6]}")
    headers = {"Authorization": f"Bearer {t['apiKey']}"}
    with httpx.Client(base_url=gateway, headers=headers, timeout=30, transport=PatientTransport()) as client:
        wait_until_key_active(client)
        yield client


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()
