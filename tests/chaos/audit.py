"""After the traffic: is every acknowledged effect there exactly once? `collect` reads what the
platform shows (HTTP through the gateway, the receiver's webhooks, the mailbox's Maildir);
`tally` is pure and compares it with the client's ledger (unit-tested).

- lost: an acknowledged effect (or one refused as `idempotency_key_committed`: it happened) missing
  (by id, in a list, in the invoice's events, in payments, a webhook or e-mail never received).
  An op that was never acknowledged may be absent.
- duplicated: one request's effect present twice (acknowledged or not): two resources for one op,
  two payment_received for one offline payment or one charge, a refund counted twice, the balance
  charged twice, two distinct webhook events or e-mails for one fact, one number on two invoices.
- stuck: present but not finished after quiet (payment pending, refund pending, a webhook whose
  delivery is still pending).
- unverified: a webhook whose Standard Webhooks signature did not verify.
- redelivered: the same webhook id or Message-ID received again: allowed (at-least-once, docs/
  webhooks.md: subscribers dedupe on webhook-id), reported, not a failure.
"""

import mailbox
from collections import Counter
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path

from .ledger import Op

SETTLED_OK = {"SUCCEEDED", "REFUNDED", "PARTIALLY_REFUNDED"}


@dataclass
class Observed:
    customers: list[dict] = field(default_factory=list)  # the customer list, every page
    customer_found: dict[str, bool] = field(default_factory=dict)  # GET /api/customers/{id}
    invoices: list[dict] = field(default_factory=list)  # the invoice list, every page
    invoice_found: dict[str, dict | None] = field(default_factory=dict)  # GET /api/invoices/{id}
    invoice_events: dict[str, list[dict]] = field(default_factory=dict)  # GET /api/invoices/{id}/events
    payments_listed: dict[str, list[dict]] = field(default_factory=dict)  # GET /api/payments?invoiceId=
    payment_found: dict[str, dict | None] = field(default_factory=dict)  # GET /api/payments/{id}
    webhooks: list[dict] = field(default_factory=list)  # {id, type, verified, data}, as received
    emails: list[dict] = field(default_factory=list)  # {message_id, event_id, to}
    undelivered: set[str] = field(default_factory=set)  # event ids whose delivery is not yet succeeded


@dataclass
class Tally:
    lost: int = 0
    duplicated: int = 0
    stuck: int = 0
    unverified: int = 0
    gave_up: int = 0
    redelivered: int = 0
    checked: int = 0  # facts compared, so a vacuous audit shows
    findings: list[dict] = field(default_factory=list)

    def add(self, what: str, detail: str, op: Op | None = None, **ids) -> None:
        setattr(self, what, getattr(self, what) + 1)
        self.findings.append(
            {
                "what": what,
                "detail": detail,
                "op": op.id if op else None,
                "kind": op.kind if op else None,
                "at": op.started if op else None,
                **ids,
            }
        )

    @property
    def failed(self) -> bool:
        return bool(self.lost or self.duplicated or self.stuck or self.unverified)


def _by_op(rows: list[dict]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for row in rows:
        if op := (row.get("metadata") or {}).get("chaosOp"):
            out.setdefault(op, []).append(row["id"])
    return out


def tally(ops: list[Op], obs: Observed) -> Tally:
    t = Tally(gave_up=sum(op.gave_up for op in ops))

    def once(n: int, acked: bool, what: str, op: Op | None, lost_as: str = "lost", **ids) -> None:
        t.checked += 1
        if n == 0 and acked:
            t.add(lost_as, f"{what}: missing", op, **ids)
        elif n > 1:
            t.add("duplicated", f"{what}: {n} times", op, **ids)

    def events(iid: str, type_: str, **match) -> list[dict]:
        return [
            e
            for e in obs.invoice_events.get(iid, [])
            if e.get("type") == type_ and all((e.get("data") or {}).get(k) == v for k, v in match.items())
        ]

    hooks_by_id: dict[str, list[dict]] = {}
    for w in obs.webhooks:
        hooks_by_id.setdefault(w["id"], []).append(w)
        if not w.get("verified"):
            t.add("unverified", f"webhook {w['id']} ({w.get('type')}) failed signature verification", event_id=w["id"])

    def hook_ids(type_: str, **match) -> set[str]:
        return {
            w["id"]
            for w in obs.webhooks
            if w.get("verified")
            and w.get("type") == type_
            and all((w.get("data") or {}).get(k) == v for k, v in match.items())
        }

    customers, invoices = _by_op(obs.customers), _by_op(obs.invoices)
    refunds_by_payment: dict[str, list[Op]] = {}
    for op in ops:
        r, iid = op.result, op.result.get("invoice_id")
        if op.kind == "customer":
            once(
                len(customers.get(op.id, [])), op.happened, "customer in the list", op, customer_id=r.get("customer_id")
            )
            if op.acked and not obs.customer_found.get(r["customer_id"]):
                t.add("lost", "customer by id: 404", op, customer_id=r["customer_id"])
        elif op.kind == "invoice":
            once(len(invoices.get(op.id, [])), op.happened, "invoice in the list", op, invoice_id=iid)
            if op.acked and not obs.invoice_found.get(iid):
                t.add("lost", "invoice by id: 404", op, invoice_id=iid)
        elif op.kind in ("finalize", "send"):
            kind = "invoice.finalized" if op.kind == "finalize" else "invoice.sent"
            once(len(events(iid, kind)), op.happened, f"{kind} in the invoice's events", op, invoice_id=iid)
        elif op.kind == "mark_paid":
            once(
                len(events(iid, "invoice.payment_received", reference=r["reference"])),
                op.happened,
                "offline payment_received in the invoice's events",
                op,
                invoice_id=iid,
                reference=r["reference"],
            )
            manual = [p for p in obs.payments_listed.get(iid, []) if p.get("providerReference") == r["reference"]]
            once(len(manual), op.happened, "manual payment in GET /api/payments?invoiceId", op, invoice_id=iid)
        elif op.kind == "hosted_pay" and op.acked:
            pid = r["payment_id"]
            found = obs.payment_found.get(pid)
            listed = [p["id"] for p in obs.payments_listed.get(iid, [])]
            if not found:
                t.add("lost", "payment by id: 404", op, invoice_id=iid, payment_id=pid)
                continue
            once(listed.count(pid), True, "payment in GET /api/payments?invoiceId", op, invoice_id=iid, payment_id=pid)
            if found["status"] in ("PENDING", "PROCESSING"):
                t.add("stuck", f"payment still {found['status']}", op, invoice_id=iid, payment_id=pid)
            elif found["status"] in SETTLED_OK:
                once(
                    len(events(iid, "invoice.payment_received", paymentId=pid)),
                    True,
                    "the charge's payment_received in the invoice's events",
                    op,
                    invoice_id=iid,
                    payment_id=pid,
                )
                once(
                    len(hook_ids("payment.succeeded", paymentId=pid)),
                    True,
                    "payment.succeeded webhook",
                    op,
                    invoice_id=iid,
                    payment_id=pid,
                )
        elif op.kind == "refund":
            refunds_by_payment.setdefault(r["payment_id"], []).append(op)
            if op.acked:
                rid = r["refund_id"]
                lost_as = "stuck" if r.get("refund_status") == "pending" else "lost"
                once(
                    len(events(iid, "invoice.refunded", refundId=rid)),
                    True,
                    "invoice.refunded in the invoice's events",
                    op,
                    lost_as,
                    invoice_id=iid,
                    refund_id=rid,
                )
                once(
                    len(hook_ids("payment.refunded", refundId=rid)),
                    True,
                    "payment.refunded webhook",
                    op,
                    lost_as,
                    invoice_id=iid,
                    refund_id=rid,
                )

    # Money: refunds add up per payment; an invoice's balance is never charged twice.
    for pid, rops in refunds_by_payment.items():
        found = obs.payment_found.get(pid) or {}
        refunded = found.get("amountRefunded", 0)
        acked = sum(o.result["amount"] for o in rops if o.happened)
        maybe = sum(o.result["amount"] for o in rops if not o.happened and o.refused is None)
        if refunded < acked:
            t.add("lost", f"payment refunded {refunded} < acknowledged refunds {acked}", rops[0], payment_id=pid)
        elif refunded > acked + maybe:
            t.add("duplicated", f"payment refunded {refunded} > requested {acked + maybe}", rops[0], payment_id=pid)
    totals = {o.result["invoice_id"]: o.result["total"] for o in ops if o.kind == "invoice" and o.acked}
    hosted = {o.result["invoice_id"]: o for o in ops if o.kind == "hosted_pay"}
    for iid, op in hosted.items():
        charged = [p for p in obs.payments_listed.get(iid, []) if p["status"] in SETTLED_OK]
        if sum(p["amount"] for p in charged) > totals.get(iid, 0):
            t.add(
                "duplicated",
                f"{len(charged)} settled charges for one balance of {totals.get(iid)}",
                op,
                invoice_id=iid,
                payment_ids=[p["id"] for p in charged],
            )
    for iid, listed in obs.payments_listed.items():
        for p in listed:
            if p["status"] in ("PENDING", "PROCESSING") and not any(
                o.result.get("payment_id") == p["id"] for o in hosted.values() if o.acked
            ):
                t.add(
                    "stuck",
                    f"payment still {p['status']} (request not acknowledged)",
                    hosted.get(iid),
                    invoice_id=iid,
                    payment_id=p["id"],
                )

    numbers = Counter(i["number"] for i in obs.invoice_found.values() if i and i.get("number"))
    for number, n in numbers.items():
        if n > 1:
            t.add("duplicated", f"invoice number {number} on {n} invoices", None, number=number)

    # Every event of every acknowledged invoice reached the endpoint (it subscribes to "*"), and
    # each e-mail event sent exactly one message.
    by_event = {}
    for m in obs.emails:
        by_event.setdefault(m["event_id"], []).append(m["message_id"])
    for iid, evs in obs.invoice_events.items():
        for e in evs:
            got = hooks_by_id.get(e["id"], [])
            t.checked += 1
            if not any(w.get("verified") for w in got):
                t.add(
                    "stuck" if e["id"] in obs.undelivered else "lost",
                    f"webhook for {e['type']} never received",
                    None,
                    invoice_id=iid,
                    event_id=e["id"],
                )
            t.redelivered += max(0, len(got) - 1)
            data = e.get("data") or {}
            wants_mail = e["type"] in ("invoice.sent", "invoice.paid") or (
                e["type"] == "invoice.payment_received" and not data.get("isFullyPaid")
            )
            if wants_mail and ((data.get("invoice") or {}).get("customer") or {}).get("email"):
                ids = by_event.get(e["id"], [])
                once(len(set(ids)), True, f"e-mail for {e['type']}", None, invoice_id=iid, event_id=e["id"])
                t.redelivered += len(ids) - len(set(ids))
    return t


def read_mail(directory: Path, tag: str) -> list[dict]:
    """Headers of every message in the stack's Maildir sent to one of this run's addresses."""
    out, parser = [], BytesHeaderParser(policy=policy.default)
    if not directory.exists():
        return out
    box = mailbox.Maildir(directory, create=False)
    for key in box.keys():  # noqa: SIM118 - iterating a Maildir yields messages, not keys
        try:
            headers = parser.parsebytes(box.get_bytes(key))
        except (KeyError, OSError):
            continue
        if tag in str(headers["To"] or ""):
            out.append(
                {
                    "message_id": str(headers["Message-ID"]),
                    "event_id": str(headers["X-Billstream-Event-Id"]),
                    "to": str(headers["To"]),
                    "subject": str(headers["Subject"]),
                }
            )
    return out


# -- reading what the platform shows (I/O) ------------------------------------------------------


def _get(client, path: str, params: dict | None = None, *, tries: int = 20):
    """A read, retried through leftover turbulence; None for a 404."""
    import time

    import httpx

    for i in range(tries):
        try:
            r = client.get(path, params=params)
            if r.status_code == 404:
                return None
            if r.is_success:
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(min(0.5 * (i + 1), 3))
    raise RuntimeError(f"GET {path} kept failing during the audit")


def _pages(client, path: str, **params) -> list[dict]:
    rows, page = [], 1
    while True:
        body = _get(client, path, {**params, "limit": 100, "page": page})
        rows += body["data"]
        if not body["meta"].get("hasMore") or not body["data"]:
            return rows
        page += 1


def collect(client, ops: list[Op], webhooks: list[dict], endpoint_id: str, mail_dir: Path, tag: str) -> Observed:
    obs = Observed(webhooks=list(webhooks), emails=read_mail(mail_dir, tag))
    obs.customers = _pages(client, "/api/customers")
    obs.invoices = _pages(client, "/api/invoices")
    for op in ops:
        if op.kind == "customer" and op.acked:
            cid = op.result["customer_id"]
            obs.customer_found[cid] = _get(client, f"/api/customers/{cid}") is not None
    invoice_ids = {op.result["invoice_id"] for op in ops if op.kind == "invoice" and op.acked}
    invoice_ids |= {i["id"] for i in obs.invoices}
    for iid in sorted(invoice_ids):
        obs.invoice_found[iid] = _get(client, f"/api/invoices/{iid}")
        if obs.invoice_found[iid] is not None:
            obs.invoice_events[iid] = (_get(client, f"/api/invoices/{iid}/events") or {"data": []})["data"]
    for iid in sorted({op.result["invoice_id"] for op in ops if op.kind in ("hosted_pay", "mark_paid")}):
        obs.payments_listed[iid] = _pages(client, "/api/payments", invoiceId=iid)
    for pid in sorted({op.result["payment_id"] for op in ops if op.result.get("payment_id")}):
        obs.payment_found[pid] = _get(client, f"/api/payments/{pid}")
    cursor = None
    while True:  # deliveries not yet succeeded: a missing webhook with one of these is stuck, not lost
        body = _get(
            client,
            f"/api/webhook-endpoints/{endpoint_id}/deliveries",
            {"status": "pending", "limit": 100, **({"cursor": cursor} if cursor else {})},
        )
        obs.undelivered |= {d["eventId"] for d in body["data"]}
        if not (cursor := body["meta"]["nextCursor"]):
            break
    return obs
