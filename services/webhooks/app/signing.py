"""Standard Webhooks signing. During a secret rotation every message is signed with the new and
the old secret (space-separated signatures, as the specification allows), so a receiver still
configured with the old one keeps verifying until it switches."""

import base64
import secrets
from datetime import datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign_headers(event_id: str, payload: str, now: datetime, secrets_in_use: list[str]) -> dict[str, str]:
    signature = " ".join(Webhook(s).sign(event_id, now, payload) for s in secrets_in_use)
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }


def active_secrets(secret: str, previous: str | None, previous_expires_at: datetime | None, now: datetime) -> list[str]:
    if previous and previous_expires_at and previous_expires_at > now:
        return [secret, previous]
    return [secret]
