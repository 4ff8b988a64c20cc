"""The HTTP call the JSON-over-HTTPS adapters share (Paystack, Flutterwave, M-Pesa): a provider
that does not answer, answers 5xx or 429, or answers anything but JSON is unavailable (retried
with the same key); anything else is handed back with its status for the adapter to read."""

import httpx

from .base import ProviderUnavailable


class NotSent(ProviderUnavailable):
    """The request never reached the provider (no connection): repeating it cannot act twice."""


class ServerError(ProviderUnavailable):
    """A 5xx; `payload` is its JSON body (Daraja answers a charge still in progress that way)."""

    def __init__(self, code: str, message: str, payload: dict) -> None:
        super().__init__(code, message)
        self.payload = payload


async def call(
    provider: str,
    method: str,
    url: str,
    *,
    timeout: float,
    transport: httpx.AsyncBaseTransport | None = None,
    **request,
) -> tuple[int, dict]:
    """(status code, JSON body); `request`: httpx's json, params, headers, auth."""
    try:
        async with httpx.AsyncClient(timeout=timeout, transport=transport) as client:
            r = await client.request(method, url, **request)
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise NotSent("provider_unavailable", f"{provider} could not be reached: {exc!r}") from exc
    except httpx.HTTPError as exc:
        raise ProviderUnavailable("provider_unavailable", f"{provider} did not answer: {exc!r}") from exc
    try:
        payload = r.json()
    except ValueError as exc:
        raise ProviderUnavailable("provider_unavailable", f"{provider} answered {r.status_code} without JSON") from exc
    if not isinstance(payload, dict):
        payload = {"data": payload}
    if r.status_code >= 500:
        raise ServerError("provider_unavailable", f"{provider} answered {r.status_code}", payload)
    if r.status_code == 429:  # refused before doing anything
        raise NotSent("provider_unavailable", f"{provider} answered 429")
    return r.status_code, payload
