"""Checkout sessions: the token behind a hosted-page link (/pay/<token>) for one invoice."""

import secrets
from datetime import UTC, datetime, timedelta

import asyncpg

from shared.ids import new_id

from . import repository as repo


async def open_session(
    conn: asyncpg.Connection,
    tenant: str,
    invoice_id: str,
    return_url: str | None,
    ttl: timedelta,
    *,
    from_link: bool = False,
) -> tuple[str, str, datetime]:
    """A new session; returns (session id, token, expiry)."""
    session_id, token, expires = new_id("cs"), secrets.token_urlsafe(24), datetime.now(UTC) + ttl
    await repo.insert_checkout_session(conn, session_id, token, tenant, invoice_id, return_url, expires, from_link)
    return session_id, token, expires


async def session_for_link(
    conn: asyncpg.Connection, tenant: str, invoice_id: str, return_url: str | None, ttl: timedelta
) -> str:
    """The token an e-mailed pay link opens: a session it opened before that is still good for an
    hour, else a new one, so following the link again does not pile up sessions."""
    token = await repo.link_session_token(conn, tenant, invoice_id)
    if token is None:
        _, token, _ = await open_session(conn, tenant, invoice_id, return_url, ttl, from_link=True)
    return token
