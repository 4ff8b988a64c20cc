"""Steady traffic through the gateway, like a careful Stripe client: every POST carries an
Idempotency-Key, and an answer the client cannot trust (5xx, timeout, connection refused, 409
idempotency_key_in_use, 429) is retried with the same key and body until a definite answer comes
or the op's budget runs out ("gave up"). Each scenario is one customer's story: customer →
invoice → finalize or send → paid offline (whole or in two parts), or on the hosted page and then
partly refunded, or left open."""

import asyncio
import random
import re
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from .ledger import Op

RETRY_CODES = {"idempotency_key_in_use", "rate_limited"}
CARD_OK = "4242424242424242"


class Traffic:
    def __init__(self, gateway: str, api_key: str, run: str, *, seed: int, budget_s: float = 60.0) -> None:
        self.gateway, self.api_key, self.run, self.budget_s = gateway, api_key, run, budget_s
        self.rng = random.Random(seed)  # which stories are told; timing makes the rest vary
        self.ops: list[Op] = []
        self.t0 = time.monotonic()
        self.stopping = asyncio.Event()
        self._n = 0

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    def _op(self, kind: str, keyed: bool = True) -> Op:
        self._n += 1
        key = f"chaos-{self.run}-{self._n}-{uuid.uuid4().hex[:8]}" if keyed else ""
        op = Op(id=f"op{self._n:05d}", kind=kind, key=key, started=self.now())
        self.ops.append(op)
        return op

    # -- one request, retried like a careful client -------------------------------------------

    async def call(
        self, client: httpx.AsyncClient, op: Op, method: str, path: str, *, json=None, retry_404: bool = False
    ) -> httpx.Response | None:
        """The definite answer (2xx or a 4xx that means what it says), or None when gave up or
        when the work committed but its answer was lost (op.committed)."""
        deadline, delay = time.monotonic() + self.budget_s, 0.25
        headers = {"Idempotency-Key": op.key} if op.key and method == "POST" else {}
        while True:
            op.attempts += 1
            try:
                r = await client.request(method, path, json=json, headers=headers)
                code = _code(r)
                definite = (
                    r.status_code < 500
                    and code not in RETRY_CODES
                    and r.status_code != 429
                    and not (retry_404 and r.status_code == 404)
                )
                if code == "idempotency_key_committed":  # the work happened; its answer was lost
                    op.ended, op.committed = self.now(), True
                    return None
                if definite:
                    op.ended = self.now()
                    op.acked = r.is_success
                    op.refused = None if r.is_success else (code or str(r.status_code))
                    return r
                op.note(f"t+{self.now()} {r.status_code} {code or ''}".strip())
                if r.status_code == 429 and (after := r.headers.get("retry-after", "")).isdigit():
                    delay = max(delay, float(after))  # the rate limit says when
            except httpx.HTTPError as exc:
                op.note(f"t+{self.now()} {type(exc).__name__}")
            delay = await self._wait_or_give_up(op, delay, deadline)
            if delay is None:
                return None

    async def _wait_or_give_up(self, op: Op, delay: float, deadline: float) -> float | None:
        """Sleep (jittered) before the next try and return the next delay; None once the budget is spent."""
        if time.monotonic() + delay > deadline:
            op.ended, op.gave_up = self.now(), True
            return None
        await asyncio.sleep(delay * (0.5 + random.random()))
        return min(delay * 2, 3.0)

    # -- the stories --------------------------------------------------------------------------

    async def worker(self, index: int) -> None:
        async with httpx.AsyncClient(
            base_url=self.gateway, timeout=15, headers={"Authorization": f"Bearer {self.api_key}"}
        ) as client:
            while not self.stopping.is_set():
                try:
                    await self.story(client, index)
                except Exception as exc:  # noqa: BLE001 - a client bug must not end the run silently
                    print(f"[chaos] worker {index}: {exc!r}", flush=True)
                    await asyncio.sleep(1)

    async def story(self, client: httpx.AsyncClient, index: int) -> None:
        n = self._n + 1
        op = self._op("customer")
        email = f"c{n}.{self.run}@chaos.example.com"
        r = await self.call(
            client,
            op,
            "POST",
            "/api/customers",
            json={"name": f"Chaos {self.run} {n}", "email": email, "currency": "UGX", "metadata": {"chaosOp": op.id}},
        )
        op.result.update(email=email)
        if not op.acked:
            return
        customer = r.json()
        op.result.update(customer_id=customer["id"])

        items = [
            {
                "description": f"Item {i}",
                "quantity": self.rng.randint(1, 3),
                "unitAmount": self.rng.randrange(2000, 100000, 500),
            }
            for i in range(self.rng.randint(1, 2))
        ]
        op = self._op("invoice")
        due = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
        r = await self.call(
            client,
            op,
            "POST",
            "/api/invoices",
            json={"customerId": customer["id"], "items": items, "dueDate": due, "metadata": {"chaosOp": op.id}},
        )
        op.result.update(customer_id=customer["id"])
        if not op.acked:
            return
        invoice = r.json()
        iid, total = invoice["id"], invoice["total"]
        op.result.update(invoice_id=iid, total=total)

        how = "send" if self.rng.random() < 0.5 else "finalize"
        op = self._op(how)
        op.result.update(invoice_id=iid)
        await self.call(client, op, "POST", f"/api/invoices/{iid}/{how}")
        if not op.acked:
            return

        path = self.rng.choices(["hosted", "offline", "offline_split", "open"], [40, 25, 20, 15])[0]
        if path == "offline":
            await self.mark_paid(client, iid, total)
        elif path == "offline_split":
            first = (total // 2) // 100 * 100 or 1
            if await self.mark_paid(client, iid, first):
                await self.mark_paid(client, iid, total - first)
        elif path == "hosted":
            await self.hosted(client, iid, total)

    async def mark_paid(self, client, iid: str, amount: int) -> bool:
        op = self._op("mark_paid")
        reference = f"chaos-{self.run}-{op.id}"
        op.result.update(invoice_id=iid, amount=amount, reference=reference)
        r = await self.call(
            client,
            op,
            "POST",
            f"/api/invoices/{iid}/mark-paid",
            json={"amount": amount, "method": "bank_transfer", "reference": reference},
        )
        if r is not None and op.acked:
            op.result.update(payment_id=r.json()["paymentId"])
        return op.acked

    async def hosted(self, client, iid: str, total: int) -> None:
        op = self._op("checkout")
        op.result.update(invoice_id=iid)
        # Payments learns of the invoice over Kafka: a 404 a moment after finalizing means "not yet".
        r = await self.call(client, op, "POST", f"/api/invoices/{iid}/checkout", json={}, retry_404=True)
        if not op.acked:
            return
        token = r.json()["checkoutUrl"].rstrip("/").rsplit("/", 1)[1]

        # The customer's browser: a form post, no Idempotency-Key. After an unknown outcome it
        # posts again; the page must then refuse to take the balance twice.
        op = self._op("hosted_pay", keyed=False)
        op.result.update(invoice_id=iid, amount=total)
        form = {"method": "card", "card_number": CARD_OK, "amount": ""}
        async with httpx.AsyncClient(base_url=self.gateway, timeout=15) as browser:
            # Like a customer, pay once the page offers the form: payments may still be taking in
            # the finalize (the page then says "still a draft").
            if not await self._page_ready(browser, f"/pay/{token}"):
                op.ended, op.gave_up = self.now(), True
                return
            r = await self._post_form(browser, op, f"/pay/{token}", form)
        if r is None or not op.acked:
            return
        payment_id = r.headers["location"].rstrip("/").rsplit("/", 1)[1]
        op.result.update(payment_id=payment_id)

        status = await self.wait_payment(client, payment_id)
        op.result.update(status_seen=status)
        if status != "SUCCEEDED":
            return
        for share in [4] if self.rng.random() < 0.5 else [4, 5]:
            amount = total // share
            rop = self._op("refund")
            rop.result.update(invoice_id=iid, payment_id=payment_id, amount=amount)
            r = await self.call(
                client,
                rop,
                "POST",
                f"/api/payments/{payment_id}/refund",
                json={"amount": amount, "reason": f"chaos {rop.id}"},
            )
            if not rop.acked:
                return
            rop.result.update(refund_id=r.json()["id"], refund_status=r.json()["status"])

    async def _post_form(self, browser: httpx.AsyncClient, op: Op, path: str, form: dict) -> httpx.Response | None:
        deadline, delay = time.monotonic() + self.budget_s, 0.25
        while True:
            op.attempts += 1
            try:
                r = await browser.post(path, data=form)
                if r.status_code == 303 and "/payments/" in r.headers.get("location", ""):
                    op.ended, op.acked = self.now(), True
                    return r
                if r.status_code < 500 and r.status_code != 303:
                    said = re.search(r'id="error">([^<]*)<', r.text)
                    op.ended, op.refused = self.now(), f"page {r.status_code}: {said.group(1) if said else ''}"
                    return r
                op.note(f"t+{self.now()} {r.status_code}")  # 5xx, or a 303 back to the page (not yet payable)
            except httpx.HTTPError as exc:
                op.note(f"t+{self.now()} {type(exc).__name__}")
            delay = await self._wait_or_give_up(op, delay, deadline)
            if delay is None:
                return None

    async def _page_ready(self, browser: httpx.AsyncClient, path: str) -> bool:
        deadline = time.monotonic() + self.budget_s
        while time.monotonic() < deadline:
            try:
                r = await browser.get(path)
                if r.status_code == 200 and 'id="pay-form"' in r.text:
                    return True
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
        return False

    async def wait_payment(self, client, payment_id: str, timeout: float = 30.0) -> str | None:
        """The payment's status once settled (the sandbox settles in about half a second)."""
        deadline, status = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            try:
                r = await client.get(f"/api/payments/{payment_id}")
                if r.is_success:
                    status = r.json()["status"]
                    if status not in ("PENDING", "PROCESSING"):
                        return status
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
        return status


def _code(r: httpx.Response) -> str | None:
    try:
        return (r.json().get("error") or {}).get("code")
    except (ValueError, AttributeError):
        return None
