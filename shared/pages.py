"""One shape for every list in the API: `{data, meta: {page, limit, total, totalPages, hasMore,
nextCursor}}`.

A list is read by `page` (1-based, `limit` rows each) or by `cursor`, the `nextCursor` of the page
before: a keyset position, so rows written meanwhile never shift or repeat what follows. With a
cursor, page, total and totalPages are null: not counting on every page is what a cursor saves.
Invoicing's filtered lists (services/invoicing/api/listing.py) build the same meta; the other
lists page through `fetch_page`."""

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import Query

from shared.errors import Refused
from shared.limits import MAX_PAGE


@dataclass(frozen=True)
class PageParams:
    page: int
    limit: int
    cursor: str | None


def page_params(
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> PageParams:
    """A FastAPI dependency: the paging parameters every list takes."""
    return PageParams(page, limit, cursor)


def after(paging: PageParams, row_id: str | None) -> PageParams:
    """Stripe's `startingAfter=<id>`, on a list ordered by its id alone: the cursor it stands for."""
    if row_id is None or paging.cursor:
        return paging
    return PageParams(paging.page, paging.limit, encode_cursor(row_id, row_id))


def encode_cursor(sort_value: Any, row_id: str) -> str:
    raw = json.dumps([sort_value.isoformat() if hasattr(sort_value, "isoformat") else sort_value, row_id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, str]:
    """(sort value as encoded, row id); 400 cursor_invalid for anything this API did not hand out."""
    try:
        value, row_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError) as exc:
        raise Refused("cursor_invalid", "cursor is not one this API returned.", field="cursor") from exc
    if not isinstance(row_id, str) or not isinstance(value, str | int | None):
        raise Refused("cursor_invalid", "cursor is not one this API returned.", field="cursor")
    return value, row_id


def meta(*, limit: int, has_more: bool, next_cursor: str | None, page: int | None, total: int | None) -> dict[str, Any]:
    return {
        "page": page,
        "limit": limit,
        "total": total,
        "totalPages": None if total is None else -(-total // limit),
        "hasMore": has_more,
        "nextCursor": next_cursor,
    }


def _is_time(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Keyset:
    """How a table's list is ordered: by `sort` (of SQL type `sort_type`), ties broken by the
    unique `id`. Both are column names from code, never from a request."""

    table: str
    sort: str
    id: str
    desc: bool = True
    sort_type: str = "timestamptz"


async def fetch_page(
    conn: asyncpg.Connection, keyset: Keyset, where: str, args: list[Any], paging: PageParams
) -> tuple[list[asyncpg.Record], dict[str, Any]]:
    """The page's rows (every column of the table) and its meta. `where` is over `args` as $1, $2, …"""
    args = list(args)
    direction, cmp = ("DESC", "<") if keyset.desc else ("ASC", ">")
    clause = where
    if paging.cursor:
        value, row_id = decode_cursor(paging.cursor)
        if not isinstance(value, str) or (keyset.sort_type == "timestamptz" and not _is_time(value)):
            raise Refused("cursor_invalid", "cursor is not one this list returned.", field="cursor")
        args += [value, row_id]
        n = len(args)
        clause = f"({where}) AND ({keyset.sort}, {keyset.id}) {cmp} (${n - 1}::text::{keyset.sort_type}, ${n})"
    offset = 0 if paging.cursor else (paging.page - 1) * paging.limit
    rows = await conn.fetch(
        f"""SELECT *, {keyset.sort} AS page_sort, {keyset.id} AS page_id FROM {keyset.table} WHERE {clause}
            ORDER BY {keyset.sort} {direction}, {keyset.id} {direction} LIMIT {paging.limit + 1} OFFSET {offset}""",
        *args,
    )
    has_more = len(rows) > paging.limit
    rows = rows[: paging.limit]
    total = None
    if not paging.cursor:
        if rows and not has_more:  # the last page: its rows say how many there are
            total = offset + len(rows)
        else:
            total = await conn.fetchval(f"SELECT count(*) FROM {keyset.table} WHERE {where}", *args)
    last = rows[-1] if has_more else None
    return rows, meta(
        limit=paging.limit,
        has_more=has_more,
        next_cursor=encode_cursor(last["page_sort"], last["page_id"]) if last else None,
        page=None if paging.cursor else paging.page,
        total=total,
    )
