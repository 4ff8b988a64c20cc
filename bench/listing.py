"""(6) GET /api/invoices, list and search, through :3000 for a tenant with 100,000 invoices.

The rows are seeded straight into the running invoicing database's invoice_list projection for a
bench tenant (copies of a real invoice's view, made through the API), and deleted afterwards.
Baseline: the same requests for the same tenant before seeding (one invoice)."""

import json

import asyncpg

from bench.env import dsn_for
from bench.loadgen import open_loop
from bench.report import Row, progress
from bench.stats import latency_summary, median_of_runs
from bench.tenants import bench_tenant

TARGET_P99_MS = 50.0
PREFIX = "inv_bench_"
CUSTOMERS = 500  # distinct customer names: a name search matches 1 in 500 invoices
QUERIES = {
    "list (newest first, 20)": "/api/invoices?limit=20",
    "list status=PAID, page 3": "/api/invoices?status=PAID&limit=20&page=3",
    "search by customer name": "/api/invoices?search=customer%20123&limit=20",
    "search by number fragment": "/api/invoices?search=inv-2026-0042&limit=20",
}

SEED = """
INSERT INTO invoice_list (invoice_id, tenant_id, number, status, customer_id, customer_name, customer_email,
                          reference, currency, total, amount_paid, amount_due, due_date, created_at,
                          updated_at, search, view)
SELECT id, $1, number, status, 'cust_bench_' || c, 'Customer ' || c, 'billing' || c || '@customer' || c || '.example',
       NULL, 'USD', 1000 + g % 100000, 0, 1000 + g % 100000, date '2030-12-31', created, created,
       lower('Customer ' || c || ' billing' || c || '@customer' || c || '.example ' || number),
       jsonb_set(jsonb_set(jsonb_set($2::jsonb, '{id}', to_jsonb(id)), '{number}', to_jsonb(number)),
                 '{status}', to_jsonb(status))
FROM (SELECT g, $3 || g AS id, 'INV-2026-' || lpad(g::text, 6, '0') AS number,
             (ARRAY['DRAFT', 'PENDING', 'PAID', 'OVERDUE'])[1 + g % 4] AS status, g % $4 AS c,
             now() - make_interval(secs => g) AS created
      FROM generate_series(1, $5::int) AS g) AS s
"""


async def _measure(tenant, path: str, rate: float, seconds: float, runs: int, label: str) -> dict[str, float]:
    results = []
    for i in range(runs):
        progress("listing", f"{label}: run {i + 1}/{runs}")
        r = await open_loop(lambda: tenant.http.request("GET", path), rate, seconds)
        results.append({**latency_summary(r.latencies), "errors": r.error_rate})
    return median_of_runs(results)


async def run(quick: bool, runs: int) -> list[Row]:
    invoices = 10_000 if quick else 100_000
    rate, seconds = (20, 2.0) if quick else (20, 8.0)
    tenant = await bench_tenant("listing")
    status, body = await tenant.http.request("POST", "/api/invoices", tenant.invoice_body())
    if status != 201:
        raise RuntimeError(f"POST /api/invoices → {status} {body[:200]!r}")
    view = json.loads(body)
    db = await asyncpg.connect(dsn_for("billstream_invoicing"))
    rows = []
    try:
        baseline = {
            name: await _measure(tenant, path, rate, seconds, runs, f"{name}, 1 invoice")
            for name, path in QUERIES.items()
        }
        progress("listing", f"seeding {invoices:,} invoices for tenant {tenant.tenant_id}")
        await db.execute(SEED, tenant.tenant_id, json.dumps(view), PREFIX, CUSTOMERS, invoices)
        await db.execute("ANALYZE invoice_list")
        for name, path in QUERIES.items():
            m = await _measure(tenant, path, rate, seconds, runs, f"{name}, {invoices:,} invoices")
            b = baseline[name]
            what = "same tenant, 1 invoice"
            rows.append(Row("listing", f"{name} p50 ({invoices:,} invoices, {rate}/s)", m["p50"], "ms", b["p50"], what))
            rows.append(
                Row(
                    "listing",
                    f"{name} p99",
                    m["p99"],
                    "ms",
                    b["p99"],
                    what,
                    "≤ 50 ms",
                    m["p99"] <= TARGET_P99_MS and m["errors"] == 0,
                )
            )
    finally:
        deleted = await db.execute(
            "DELETE FROM invoice_list WHERE tenant_id = $1 AND invoice_id LIKE $2", tenant.tenant_id, PREFIX + "%"
        )
        progress("listing", f"removed the seeded rows ({deleted})")
        await db.close()
        await tenant.http.close()
    return rows
