"""List totals: exact up to the cap, the planner's estimate past it, so big lists stay cheap."""

from services.invoicing.api.listing import count_rows


async def test_count_is_exact_up_to_the_cap_and_estimated_past_it(pool):
    async with pool.acquire() as conn:
        await conn.execute("CREATE TABLE items (tenant_id text, n int)")
        await conn.execute("INSERT INTO items SELECT 't1', g FROM generate_series(1, 500) g")
        await conn.execute("INSERT INTO items SELECT 't2', g FROM generate_series(1, 7) g")
        await conn.execute("ANALYZE items")

        assert await count_rows(conn, "items", "tenant_id = $1", ["t2"], cap=10) == (7, True)
        assert await count_rows(conn, "items", "tenant_id = $1", ["t2"], cap=7) == (7, True)
        total, exact = await count_rows(conn, "items", "tenant_id = $1", ["t1"], cap=10)
        assert not exact and 400 <= total <= 600  # ANALYZE saw all 500 rows
        # An estimate below what was counted never shows: the total stays above the cap.
        total, exact = await count_rows(conn, "items", "tenant_id = $1 AND n > $2", ["t1", 0], cap=499)
        assert not exact and total >= 500
