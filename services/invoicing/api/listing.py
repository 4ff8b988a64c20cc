"""List queries over the read models: NovaBilling's page/limit, operator filters such as
`total[gte]=1000`, `status[in]=PENDING,OVERDUE`, `dueDate[before]=2026-12-01`, Chargebee's
operators (`is`, `is_not`, `starts_with`, `in`/`not_in` and `between` with `a,b` or `["a","b"]`,
`is_present=true|false`) and snake_case names (`customer_id`), search, sort and cursor
pagination. Every filter becomes a bound parameter; column names come from allow-lists."""

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic.alias_generators import to_camel
from starlette.datastructures import QueryParams

from shared import auth, pages
from shared.errors import Refused
from shared.limits import MAX_DATE, MAX_PAGE, MIN_DATE, bounded_date, bounded_int
from shared.money import check_currency
from shared.query_params import refuse_unknown

from ..domain.invoice import STATUSES

# Counting is exact up to this many rows; past it the planner's estimate stands in, so a page of a
# huge list costs the same as a page of a small one (meta.totalExact tells which it is).
COUNT_CAP = 10_000
# One value compared with the column; `is_not` and `not_in` keep rows where the field is unset.
OPERATORS = {
    "eq": "=",
    "is": "=",
    "is_not": "IS DISTINCT FROM",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "before": "<",
    "after": ">",
    "on": "=",
}


@dataclass
class Column:
    sql: str
    parse: Any  # str -> value; raises ValueError on bad input
    nullable: bool = False  # sorts NULLS LAST; only where needed, since it defeats plain indexes


# Query names every list understands besides its filters.
PAGING = ("sort", "sortBy", "sortOrder", "limit", "page", "cursor")


def parse_time(v: str) -> datetime:
    at = datetime.fromisoformat(v) if "T" in v else datetime.fromisoformat(v + "T00:00:00+00:00")
    if not MIN_DATE <= at.date() <= MAX_DATE:
        raise ValueError(f"must lie between {MIN_DATE} and {MAX_DATE}")
    return at


def one_of(values: tuple[str, ...], aliases: dict[str, str] | None = None, *, case=str.upper):
    """A parser for a closed set of values in one case (and other names clients send for some of
    them) that names the values when refusing one."""
    aliases = aliases or {}

    def parse(v: str) -> str:
        value = aliases.get(case(v), case(v))
        if value not in values:
            raise ValueError(f"'{v}' is not one of {', '.join(values)}")
        return value

    return parse


def values_of(raw: str) -> list[str]:
    """`a,b` or Chargebee's `["a","b"]`."""
    if raw.startswith("["):
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # RecursionError: `[[[[…` nested past the parser's depth
            raise ValueError("is not a JSON array of values") from exc
        if not isinstance(parsed, list) or any(isinstance(v, list | dict) for v in parsed):
            raise ValueError("is not a JSON array of values")
        return [str(v) for v in parsed]
    return raw.split(",")


def like_literal(text: str) -> str:
    """`text` matched as itself in a LIKE pattern: `%`, `_` and the escape character are plain."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass
class Query:
    where: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)

    def add(self, sql: str, *values: Any) -> None:
        placeholders = []
        for v in values:
            self.args.append(v)
            placeholders.append(f"${len(self.args)}")
        self.where.append(sql.format(*placeholders))

    @property
    def sql(self) -> str:
        return " AND ".join(self.where)


def _cursor_position(cursor: str, column: Column) -> tuple[Any, str]:
    value, row_id = pages.decode_cursor(cursor)
    try:
        return (column.parse(value) if value is not None else None), row_id
    except (ValueError, TypeError) as exc:
        raise Refused("cursor_invalid", "cursor is not one this API returned.", field="cursor") from exc


async def count_rows(conn, table: str, where: str, args: list[Any], cap: int | None = None) -> tuple[int, bool]:
    """Exact count up to `cap` (COUNT_CAP), otherwise the planner's row estimate (never below the cap)."""
    cap = cap or COUNT_CAP
    counted = await conn.fetchval(
        f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {where} LIMIT {cap + 1}) AS capped", *args
    )
    if counted <= cap:
        return counted, True
    plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {table} WHERE {where}", *args)
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return max(int(plan[0]["Plan"]["Plan Rows"]), cap + 1), False


async def _search_page(conn, select: str, page_sql: str, args: list[Any], offset: int) -> tuple[list, int | None]:
    """A trigram search reads every match to sort them anyway: count them in the same pass (up to
    COUNT_CAP) instead of searching twice. Returns the page and the total, None if unknown."""
    rows = await conn.fetch(
        f"SELECT *, count(*) OVER () AS total FROM ({select} LIMIT {COUNT_CAP + 1}) AS capped {page_sql}", *args
    )
    total = rows[0]["total"] if rows else (0 if offset == 0 else None)
    if total is None or total > COUNT_CAP:  # past the matches that were sorted: page them properly
        return await conn.fetch(f"{select} {page_sql}", *args), None
    return rows, total


def _filter(q: Query, col: Column, op: str, raw: str) -> None:
    """One `name[op]=raw` as a condition; ValueError for a bad value, LookupError for an unknown op."""
    if op == "in" or (not op and "," in raw):
        q.add(f"{col.sql} = ANY({{}})", [col.parse(v) for v in values_of(raw)])
    elif op == "not_in":
        q.add(f"NOT coalesce({col.sql} = ANY({{}}), false)", [col.parse(v) for v in values_of(raw)])
    elif op == "between":
        bounds = values_of(raw)
        if len(bounds) != 2:
            raise ValueError("between takes two values, low and high")
        q.add(f"{col.sql} BETWEEN {{}} AND {{}}", *(col.parse(v) for v in bounds))
    elif op == "starts_with":
        prefix = col.parse(raw)
        if not isinstance(prefix, str):
            raise ValueError("starts_with applies to text fields only")
        q.add(f"{col.sql} LIKE {{}}", like_literal(prefix) + "%")
    elif op == "is_present":
        if raw.lower() not in ("true", "false"):
            raise ValueError("is_present is true or false")
        q.where.append(f"{col.sql} IS {'NOT ' if raw.lower() == 'true' else ''}NULL")
    elif not op or op in OPERATORS:
        q.add(f"{col.sql} {OPERATORS.get(op, '=')} {{}}", col.parse(raw))
    else:
        raise LookupError(op)


async def run_list(
    conn,
    *,
    table: str,
    id_col: str,
    tenant: str,
    params: QueryParams,
    filters: dict[str, Column],
    sortable: dict[str, Column],
    default_sort: str,
    search_col: str | None = "search",
    tombstones: bool = False,
) -> dict:
    """`tombstones`: the table keeps deleted rows (`deleted`), which no list shows."""
    q = Query()
    q.add("tenant_id = {}", tenant)
    if tombstones:
        q.where.append("NOT deleted")
    known = (*PAGING, "search") if search_col else PAGING
    for name, raw in params.multi_items():
        base, _, op = name.partition("[")
        op = op.rstrip("]")
        if base in known and not op:
            continue
        if base not in filters and to_camel(base) in filters:
            base = to_camel(base)
        refuse_unknown([base], {*filters, *known})
        try:
            _filter(q, filters[base], op, raw)
        except ValueError as exc:
            raise Refused("parameter_invalid", f"{name}: {exc}", field=name) from exc
        except LookupError:
            raise Refused("parameter_invalid", f"Unknown operator '{op}' for {base}.", field=name) from None
    searching = bool(params.get("search") and search_col)
    if searching:
        search = params["search"]
        q.add(f"{search_col} LIKE {{}}", f"%{like_literal(search.lower())}%")

    sort = params.get("sort", default_sort)
    if (by := params.get("sortBy")) and "sort" not in params:  # NovaBilling's sortBy=…&sortOrder=asc|desc
        order = params.get("sortOrder", "desc").lower()
        if order not in ("asc", "desc"):
            raise Refused("parameter_invalid", "sortOrder is asc or desc.", field="sortOrder")
        sort = by if order == "asc" else f"-{by}"
    desc = sort.startswith("-")
    if sort.lstrip("-") not in sortable:
        raise Refused("parameter_invalid", f"Cannot sort by '{sort}'. Use one of {sorted(sortable)}.", field="sort")
    sort_col = sortable[sort.lstrip("-")]
    try:
        limit = int(params.get("limit", 20))
        page = int(params.get("page", 1))
    except ValueError as exc:
        raise Refused("parameter_invalid", "page and limit are whole numbers.", field="page") from exc
    if not 1 <= limit <= 100:
        raise Refused("parameter_invalid", "limit is 1-100.", field="limit")
    if not 1 <= page <= MAX_PAGE:
        raise Refused("parameter_invalid", f"page is 1-{MAX_PAGE:,}; page deeper with cursor.", field="page")

    cursor = params.get("cursor")
    count_sql, count_args = q.sql, list(q.args)
    if cursor:
        value, row_id = _cursor_position(cursor, sort_col)
        cmp = "<" if desc else ">"
        q.add(f"({sort_col.sql}, {id_col}) {cmp} ({{}}, {{}})", value, row_id)
    direction = "DESC" if desc else "ASC"
    order = f"{direction}{' NULLS LAST' if sort_col.nullable else ''}"
    offset = 0 if cursor else (page - 1) * limit
    page_sql = f"ORDER BY sort_value {order}, row_id {direction} LIMIT {limit + 1} OFFSET {offset}"
    select = f"SELECT view, {sort_col.sql} AS sort_value, {id_col} AS row_id FROM {table} WHERE {q.sql}"
    if searching and not cursor:
        rows, total_found = await _search_page(conn, select, page_sql, q.args, offset)
    else:
        rows, total_found = await conn.fetch(f"{select} {page_sql}", *q.args), None
    has_more = len(rows) > limit
    rows = rows[:limit]
    total, exact = None, None
    if not cursor:
        if rows and not has_more:  # the last page: its rows say how many there are
            total, exact = offset + len(rows), True
        elif total_found is not None:
            total, exact = total_found, True
        else:
            total, exact = await count_rows(conn, table, count_sql, count_args)
    meta = pages.meta(
        limit=limit,
        has_more=has_more,
        next_cursor=pages.encode_cursor(rows[-1]["sort_value"], rows[-1]["row_id"]) if has_more else None,
        page=None if cursor else page,
        total=total,
    )
    meta["totalExact"] = exact  # past COUNT_CAP rows the total is the planner's estimate
    return {"data": [auth.with_livemode(r["view"], tenant) for r in rows], "meta": meta}


INVOICE_FILTERS = {
    # NovaBilling's guide says FINALIZED for an issued invoice; its product says CANCELED for void.
    "status": Column("status", one_of(STATUSES, {"FINALIZED": "PENDING", "CANCELED": "VOID"})),
    "customerId": Column("customer_id", str),
    "subscriptionId": Column("subscription_id", str),
    "customerEmail": Column("customer_email", lambda v: v.lower()),
    "number": Column("number", str),
    "reference": Column("reference", str),
    "currency": Column("currency", check_currency),
    "total": Column("total", bounded_int),
    "amountDue": Column("amount_due", bounded_int),
    "amountPaid": Column("amount_paid", bounded_int),
    "dueDate": Column("due_date", bounded_date),
    "createdAt": Column("created_at", parse_time),
    # What dunning last said of the invoice (billing.dunning, newest version): Chargebee's
    # dunning_status; `dunningStatus[is_present]=false` for invoices dunning never took up.
    "dunningStatus": Column(
        "(SELECT d.status FROM invoice_dunning d WHERE d.invoice_id = invoice_list.invoice_id)",
        one_of(("IN_PROGRESS", "EXHAUSTED", "STOPPED", "SUCCESS")),
    ),
}
INVOICE_SORTS = {
    "createdAt": Column("created_at", parse_time),
    "dueDate": Column("due_date", bounded_date, nullable=True),
    "total": Column("total", bounded_int),
    "amountDue": Column("amount_due", bounded_int),
    "number": Column("number", str, nullable=True),
}
