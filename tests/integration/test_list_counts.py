"""List totals: exact up to the cap, the planner's estimate past it, so big lists stay cheap."""

from starlette.datastructures import QueryParams

from services.invoicing.api import listing
from services.invoicing.service import service as invoicing
from shared.db import migrate


async def test_count_is_exact_up_to_the_cap_and_estimated_past_it(pool):
    async with pool.acquire() as conn:
        await conn.execute("CREATE TABLE items (tenant_id text, n int)")
        await conn.execute("INSERT INTO items SELECT 't1', g FROM generate_series(1, 500) g")
        await conn.execute("INSERT INTO items SELECT 't2', g FROM generate_series(1, 7) g")
        await conn.execute("ANALYZE items")

        assert await listing.count_rows(conn, "items", "tenant_id = $1", ["t2"], cap=10) == (7, True)
        assert await listing.count_rows(conn, "items", "tenant_id = $1", ["t2"], cap=7) == (7, True)
        total, exact = await listing.count_rows(conn, "items", "tenant_id = $1", ["t1"], cap=10)
        assert not exact and 400 <= total <= 600  # ANALYZE saw all 500 rows
        # An estimate below what was counted never shows: the total stays above the cap.
        total, exact = await listing.count_rows(conn, "items", "tenant_id = $1 AND n > $2", ["t1", 0], cap=499)
        assert not exact and total >= 500


SEED = """INSERT INTO invoice_list (invoice_id, tenant_id, number, status, customer_id, customer_name, customer_email,
                                   currency, total, amount_paid, amount_due, created_at, updated_at, search, view)
          SELECT 'inv_' || lpad(g::text, 3, '0'), 'ten_1', 'INV-' || g, 'PENDING', 'cust_1', 'Ann', 'ann@example.com',
                 'USD', g, 0, g, now() - make_interval(secs => g), now(),
                 CASE WHEN g % 2 = 0 THEN 'even ' ELSE 'odd ' END || g, jsonb_build_object('id', 'inv_' || lpad(g::text, 3, '0'))
          FROM generate_series(1, 30) AS g"""


async def test_list_pages_and_totals_agree_on_every_path(pool, database, monkeypatch):
    await migrate(database, invoicing.migrations)
    await pool.execute(SEED)

    async def listed(query: str) -> dict:
        async with pool.acquire() as conn:
            return await listing.run_list(
                conn,
                table="invoice_list",
                id_col="invoice_id",
                tenant="ten_1",
                params=QueryParams(query),
                filters=listing.INVOICE_FILTERS,
                sortable=listing.INVOICE_SORTS,
                default_sort="-createdAt",
            )

    newest_first = [f"inv_{g:03d}" for g in range(1, 31)]
    evens = [i for i in newest_first if int(i[4:]) % 2 == 0]
    for cap in (1000, 10):  # 10: fewer than the 15 matches, so searches fall back to paging and estimating
        monkeypatch.setattr(listing, "COUNT_CAP", cap)
        page = await listed("search=even&limit=4&page=2")
        assert [v["id"] for v in page["data"]] == evens[4:8]
        assert page["meta"]["hasMore"] and page["meta"]["totalExact"] == (cap > 15)
        if cap > 15:
            assert (page["meta"]["total"], page["meta"]["totalPages"]) == (15, 4)
        last = await listed("search=even&limit=4&page=4")
        assert [v["id"] for v in last["data"]] == evens[12:] and last["meta"]["total"] == 15  # from the last page
        assert (await listed("search=even&limit=4&page=9"))["data"] == []
        everything = await listed("limit=7&page=5")
        assert [v["id"] for v in everything["data"]] == newest_first[28:] and everything["meta"]["total"] == 30
    monkeypatch.setattr(listing, "COUNT_CAP", 1000)
    assert (await listed("search=odd 2&limit=100"))["meta"] == {
        "limit": 100,
        "hasMore": False,
        "nextCursor": None,
        "page": 1,
        "total": 5,
        "totalExact": True,
        "totalPages": 1,
    }
