"""HMAC signatures of the form `t=<unix seconds>,v1=<hex hmac-sha256(secret, "t.body")>`
(the sandbox's, and Stripe's scheme), checked in constant time with a replay window."""

import hashlib
import hmac
import time

from .base import SignatureInvalid

TOLERANCE_S = 300


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(
    secret: str, header: str | None, body: bytes, *, now: float | None = None, tolerance: int = TOLERANCE_S
) -> None:
    if not secret:  # anyone can sign with an empty key
        raise SignatureInvalid("no webhook secret is configured")
    if not header:
        raise SignatureInvalid("signature header missing")
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    t_values = [v for k, v in parts if k.strip() == "t"]
    sigs = [v.strip() for k, v in parts if k.strip() == "v1"]
    if not t_values or not sigs or not t_values[0].strip().isdigit():
        raise SignatureInvalid("signature header malformed")
    t = int(t_values[0])
    if abs((time.time() if now is None else now) - t) > tolerance:
        raise SignatureInvalid("signature timestamp outside the tolerance window")
    expected = sign(secret, body, t).split("v1=", 1)[1]
    if not any(hmac.compare_digest(expected, s) for s in sigs):
        raise SignatureInvalid("signature does not match")
