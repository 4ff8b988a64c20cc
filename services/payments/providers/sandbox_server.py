"""The sandbox provider itself: a small payment-provider API under /sandbox/v1 with its own
ledger (sandbox_* tables) and signed, retried callbacks. It stands in for a real provider's
systems, so the adapter in sandbox.py is exercised the way real adapters are.

Charges are asynchronous: the API answers `processing`, a `charge.processing` callback follows at
once and `charge.succeeded`/`charge.failed` once the charge settles. Idempotency-Key is required;
the same key returns the same charge, so a retried request never charges twice.
"""

import asyncio
import json
import secrets
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse

from shared.http_errors import error_body
from shared.logs import get_logger

from . import signing
from .base import Instrument, ProviderError
from .sandbox import CARDS, MOBILE_MONEY, SIGNATURE_HEADER, normalise

log = get_logger(__name__)

FAILURE_MESSAGES = {
    "card_declined": "The card was declined.",
    "insufficient_funds": "The account has insufficient funds.",
    "try_again_later": "The issuer could not process the charge now; retry later.",
    "approval_timeout": "The customer did not approve the payment in time.",
}


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(error_body("invalid_request_error", code, message), status)


def plan(
    instrument: Instrument, previous_code: str | None, delay: float, slow: float
) -> tuple[str, str | None, float, bool]:
    """(outcome, failure code, seconds until it settles, whether the API call stalls)."""
    behaviour = (CARDS if instrument.type == "card" else MOBILE_MONEY)[instrument.number]
    if behaviour == "succeeds":
        return "succeeded", None, delay, False
    if behaviour == "times_out":
        return "succeeded", None, slow, True
    if behaviour == "approval_timeout":
        return "failed", "approval_timeout", slow, False
    if behaviour == "try_again_later" and previous_code == "try_again_later":
        return "succeeded", None, delay, False  # the retry after a soft decline goes through
    return "failed", behaviour, delay, False


def charge_view(row: asyncpg.Record, now: datetime) -> dict:
    settled = now >= row["settles_at"]
    failed = settled and row["outcome"] == "failed"
    return {
        "id": row["charge_id"],
        "object": "charge",
        "reference": row["reference"],
        "amount": row["amount"],
        "currency": row["currency"],
        "instrument": {"type": row["instrument_type"], "last4": row["instrument"][-4:]},
        "status": row["outcome"] if settled else "processing",
        "failureCode": row["failure_code"] if failed else None,
        "failureMessage": FAILURE_MESSAGES.get(row["failure_code"]) if failed else None,
        "amountRefunded": row["amount_refunded"],
    }


def callback_body(event_type: str, charge: dict) -> bytes:
    return json.dumps({"id": f"evt_{secrets.token_hex(12)}", "type": event_type, "data": {"charge": charge}}).encode()


def make_router(get_pool, settings) -> APIRouter:
    router = APIRouter(prefix="/sandbox/v1", include_in_schema=False)

    def authorised(authorization: str | None) -> bool:
        return (authorization or "") == f"Bearer {settings.sandbox_secret_key}"

    @router.post("/charges")
    async def create_charge(
        request: Request, authorization: str | None = Header(None), idempotency_key: str | None = Header(None)
    ):
        if not authorised(authorization):
            return _error(401, "unauthorized", "Invalid sandbox secret key.")
        if not idempotency_key:
            return _error(400, "idempotency_key_required", "Send an Idempotency-Key header.")
        body = await request.json()
        try:
            instrument = normalise(Instrument(body["instrument"]["type"], body["instrument"]["number"]))
            amount, currency, reference = int(body["amount"]), str(body["currency"]), str(body["reference"])
            callback_url = str(body["callbackUrl"])
        except ProviderError as exc:
            return _error(400, exc.code, exc.message)
        except (KeyError, TypeError, ValueError):
            return _error(
                400, "parameter_invalid", "amount, currency, reference, instrument and callbackUrl are required."
            )
        if amount <= 0:
            return _error(400, "amount_invalid", "amount must be a positive integer.")
        pool = get_pool()
        now = datetime.now(UTC)
        async with pool.acquire() as conn, conn.transaction():
            existing = await conn.fetchrow("SELECT * FROM sandbox_charges WHERE idempotency_key = $1", idempotency_key)
            if existing is not None:
                if (existing["amount"], existing["reference"]) != (amount, reference):
                    return _error(409, "idempotency_key_reused", "This Idempotency-Key was used for another charge.")
                log.info("sandbox charge replayed", charge_id=existing["charge_id"])
                return charge_view(existing, now)
            previous = await conn.fetchval(
                """SELECT failure_code FROM sandbox_charges WHERE instrument = $1
                   ORDER BY created_at DESC LIMIT 1""",
                instrument.number,
            )
            outcome, code, after, stalls = plan(instrument, previous, settings.sandbox_delay_s, settings.sandbox_slow_s)
            row = await conn.fetchrow(
                """INSERT INTO sandbox_charges (charge_id, idempotency_key, reference, amount, currency,
                       instrument_type, instrument, outcome, failure_code, settles_at, callback_url, created_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING *""",
                f"ch_{secrets.token_hex(12)}",
                idempotency_key,
                reference,
                amount,
                currency,
                instrument.type,
                instrument.number,
                outcome,
                code,
                now + timedelta(seconds=after),
                callback_url,
                now,
            )
            settled = charge_view(row, row["settles_at"])
            await conn.executemany(
                "INSERT INTO sandbox_callbacks (url, body, due_at) VALUES ($1, $2, $3)",
                [
                    (callback_url, callback_body("charge.processing", charge_view(row, now)), now),
                    (callback_url, callback_body(f"charge.{outcome}", settled), row["settles_at"]),
                ],
            )
        if stalls:  # the charge exists, but this answer comes too late for the caller
            await asyncio.sleep(settings.provider_timeout_s + 1.0)
        return charge_view(row, now)

    @router.get("/balance")
    async def balance(authorization: str | None = Header(None)):
        """What a credentials check reads: nothing but whether the key is right."""
        if not authorised(authorization):
            return _error(401, "unauthorized", "Invalid sandbox secret key.")
        return {"object": "balance", "available": []}

    @router.get("/charges/{charge_id}")
    async def get_charge(charge_id: str, authorization: str | None = Header(None)):
        if not authorised(authorization):
            return _error(401, "unauthorized", "Invalid sandbox secret key.")
        row = await get_pool().fetchrow("SELECT * FROM sandbox_charges WHERE charge_id = $1", charge_id)
        if row is None:
            return _error(404, "resource_missing", f"No such charge: {charge_id}")
        return charge_view(row, datetime.now(UTC))

    @router.post("/refunds")
    async def create_refund(
        request: Request, authorization: str | None = Header(None), idempotency_key: str | None = Header(None)
    ):
        if not authorised(authorization):
            return _error(401, "unauthorized", "Invalid sandbox secret key.")
        if not idempotency_key:
            return _error(400, "idempotency_key_required", "Send an Idempotency-Key header.")
        body = await request.json()
        async with get_pool().acquire() as conn, conn.transaction():
            existing = await conn.fetchrow("SELECT * FROM sandbox_refunds WHERE idempotency_key = $1", idempotency_key)
            if existing is not None:
                return {
                    "id": existing["refund_id"],
                    "object": "refund",
                    "status": "succeeded",
                    "amount": existing["amount"],
                    "charge": existing["charge_id"],
                }
            charge = await conn.fetchrow(
                "SELECT * FROM sandbox_charges WHERE charge_id = $1 FOR UPDATE", str(body.get("charge"))
            )
            if charge is None:
                return _error(404, "resource_missing", "No such charge.")
            view = charge_view(charge, datetime.now(UTC))
            amount = int(body.get("amount") or charge["amount"] - charge["amount_refunded"])
            if view["status"] != "succeeded":
                return _error(400, "charge_not_refundable", "Only succeeded charges can be refunded.")
            if amount <= 0 or amount > charge["amount"] - charge["amount_refunded"]:
                return _error(400, "refund_exceeds_charge", "The refund is more than what is left of the charge.")
            refund_id = f"re_{secrets.token_hex(12)}"
            await conn.execute(
                "INSERT INTO sandbox_refunds (refund_id, idempotency_key, charge_id, amount) VALUES ($1, $2, $3, $4)",
                refund_id,
                idempotency_key,
                charge["charge_id"],
                amount,
            )
            await conn.execute(
                "UPDATE sandbox_charges SET amount_refunded = amount_refunded + $2 WHERE charge_id = $1",
                charge["charge_id"],
                amount,
            )
        return {
            "id": refund_id,
            "object": "refund",
            "status": "succeeded",
            "amount": amount,
            "charge": charge["charge_id"],
        }

    return router


class CallbackSender:
    """Delivers the sandbox's due callbacks, signed, retrying with backoff until a 2xx."""

    def __init__(self, pool: asyncpg.Pool, webhook_secret: str, *, poll_interval: float = 0.2) -> None:
        self.pool, self.secret, self.poll_interval = pool, webhook_secret, poll_interval

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                if not await self.send_due(client):
                    await asyncio.sleep(self.poll_interval)

    async def send_due(self, client: httpx.AsyncClient) -> int:
        # Claim with a lease, so a crash mid-send only delays the callback.
        rows = await self.pool.fetch(
            """UPDATE sandbox_callbacks SET due_at = now() + interval '30 seconds', attempts = attempts + 1
               WHERE id IN (SELECT id FROM sandbox_callbacks WHERE delivered_at IS NULL AND due_at <= now()
                            ORDER BY due_at, id LIMIT 20 FOR UPDATE SKIP LOCKED)
               RETURNING id, url, body, attempts"""
        )
        for row in sorted(rows, key=lambda r: r["id"]):
            body = bytes(row["body"])
            try:
                r = await client.post(
                    row["url"],
                    content=body,
                    headers={"content-type": "application/json", SIGNATURE_HEADER: signing.sign(self.secret, body)},
                )
                ok, error = r.status_code < 300, f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                ok, error = False, repr(exc)
            if ok:
                await self.pool.execute("UPDATE sandbox_callbacks SET delivered_at = now() WHERE id = $1", row["id"])
            else:
                backoff = min(2 ** row["attempts"], 300)
                log.warning("sandbox callback failed, will retry", error=error, retry_in_s=backoff)
                await self.pool.execute(
                    "UPDATE sandbox_callbacks SET due_at = now() + make_interval(secs => $2), last_error = $3 WHERE id = $1",
                    row["id"],
                    float(backoff),
                    error,
                )
        return len(rows)
