"""Disabling an endpoint, and the `webhook_endpoint.disabled` event that says so.

The event is appended to this service's event store in the same transaction as the change, so
the outbox relay publishes it (on `billing.webhooks`) exactly when the disabling commits.
"""

from datetime import UTC, datetime

import asyncpg

from shared import auth
from shared.aggregate import Aggregates
from shared.logs import get_logger

from ..domain.events import STREAM_TYPE, WebhookEndpointDisabled, WebhookEndpointView
from . import repository as repo

log = get_logger(__name__)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, as every Billstream API writes times."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def public_view(row: asyncpg.Record) -> dict:
    """The endpoint resource as the API shows it (never the secret)."""
    return {
        "id": row["endpoint_id"],
        "object": "webhook_endpoint",
        "livemode": auth.livemode(row["tenant_id"]),
        "url": row["url"],
        "enabledEvents": list(row["enabled_events"]),
        "description": row["description"],
        "enabled": row["enabled"],
        "disabledReason": row["disabled_reason"],
        "disabledAt": iso(row["disabled_at"]),
        "failingSince": iso(row["failing_since"]),
        "previousSecretExpiresAt": iso(row["previous_secret_expires_at"]),
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


async def disable(
    conn: asyncpg.Connection,
    aggregates: Aggregates,
    endpoint_id: str,
    *,
    reason: str,
    detail: str,
    now: datetime | None = None,
) -> bool:
    """Disable an enabled endpoint and record why; False if it was not enabled (no event).

    Must run in the caller's transaction. The conditional UPDATE takes the row lock, so two
    workers that both see the endpoint failing publish one event between them, and the stream
    is loaded under that lock, so its version holds until commit (the append is not retried).
    """
    now = now or datetime.now(UTC)
    row = await repo.disable_endpoint(conn, endpoint_id, now, reason)
    if row is None:
        return False
    stream = await aggregates.load(conn, endpoint_id)
    data = WebhookEndpointDisabled(
        endpoint_id=endpoint_id,
        reason=reason,
        detail=detail,
        endpoint=WebhookEndpointView.model_validate(public_view(row)),
    )
    await aggregates.append(
        conn,
        STREAM_TYPE,
        endpoint_id,
        stream.version,
        [("webhook_endpoint.disabled", data)],
        tenant_id=row["tenant_id"],
        at=now,
    )
    log.warning("webhook endpoint disabled", endpoint_id=endpoint_id, reason=reason, detail=detail)
    return True
