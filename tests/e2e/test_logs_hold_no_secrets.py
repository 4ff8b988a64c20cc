"""Tokens and signatures sent through :3000 appear neither in the gateway's access log nor in the
services' logs."""

import os
import secrets
import time
from pathlib import Path

import httpx

# The stack under test keeps its logs in its state directory (deploy/local/env.sh).
LOGS = Path(os.environ.get("BILLSTREAM_STATE_DIR", Path(__file__).resolve().parents[2] / ".local")) / "logs"


def test_signatures_tokens_and_keys_are_redacted_in_every_log(gateway):
    sig, token, key = secrets.token_urlsafe(16), secrets.token_urlsafe(24), "sk_test_" + secrets.token_hex(12)
    httpx.get(f"{gateway}/pay/invoice/inv_logcheck?sig={sig}")
    httpx.get(f"{gateway}/pay/{token}")
    httpx.get(f"{gateway}/api/invoices/inv_1/pdf/download", params={"tenant": "t", "expires": 1, "signature": sig})
    httpx.get(f"{gateway}/api/invoices", headers={"Authorization": f"Bearer {key}"})
    # Nginx and the services write their lines after answering: one request more to each, with a
    # marker, and wait for the markers (each log is written in order), so a line that would leak
    # is already there when we look, not written after the test passed.
    marker = f"inv_logdone_{secrets.token_hex(6)}"
    httpx.get(f"{gateway}/pay/invoice/{marker}")
    httpx.get(f"{gateway}/api/invoices/{marker}", headers={"Authorization": f"Bearer {key}"})
    deadline = time.monotonic() + 20
    while not all(
        marker in (LOGS / f"{name}.log").read_text(errors="replace")
        for name in ("nginx-access", "payments", "invoicing")
    ):
        assert time.monotonic() < deadline, "the marker requests never reached the logs"
        time.sleep(0.1)
    texts = {p.name: p.read_text(errors="replace") for p in LOGS.glob("*.log")}
    assert "nginx-access.log" in texts and "payments.log" in texts
    assert "/pay/[redacted]" in texts["nginx-access.log"]
    for name, text in texts.items():
        for secret in (sig, token, key):
            assert secret not in text, (name, secret)
