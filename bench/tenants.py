"""A bench tenant on the running stack: created through the CLI, its key active, one customer."""

import asyncio
import json
from dataclasses import dataclass

from bench.env import GATEWAY, create_tenant, wait_until_key_active
from bench.loadgen import HttpPool
from shared.auth import world

INVOICE_ITEMS = [
    {"description": "Pro Plan - Monthly", "quantity": 1, "unitAmount": 180000},
    {"description": "Extra seats", "quantity": 3, "unitAmount": 25000},
]


@dataclass
class BenchTenant:
    tenant_id: str  # the world its test key acts in: the id its rows and events carry
    api_key: str
    customer_id: str
    http: HttpPool

    def invoice_body(self) -> dict:
        return {"customerId": self.customer_id, "dueDate": "2030-12-31", "items": INVOICE_ITEMS}


async def bench_tenant(label: str, paths: tuple[str, ...] = ("/api/invoices",)) -> BenchTenant:
    created = await asyncio.to_thread(create_tenant, label)
    key = created["apiKey"]
    await asyncio.to_thread(wait_until_key_active, key, paths)
    http = HttpPool(GATEWAY, {"Authorization": f"Bearer {key}"})
    status, body = await http.request(
        "POST", "/api/customers", {"name": "Bench Buyer", "email": "buyer@bench.example", "currency": "USD"}
    )
    if status != 201:
        raise RuntimeError(f"POST /api/customers → {status} {body[:200]!r}")
    return BenchTenant(world(created["tenantId"], "test"), key, json.loads(body)["id"], http)
