"""No key, token or signature reaches a log line (shared/logs.py's redact_secrets processor)."""

import json

import pytest
import structlog

from shared.logs import configure_logging, get_logger


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("GET /pay/Jq3b1Zg0bC7kP9x2mLw4aT5y/payments/pay_1", "Jq3b1Zg0bC7kP9x2mLw4aT5y"),
        ("/pay/invoice/inv_1?sig=axASDg.HStLgxmIKEGAahE0Qev", "axASDg.HStLgxmIKEGAahE0Qev"),
        ("/api/invoices/inv_1/pdf/download?tenant=t&expires=1&signature=MQFz946W566z", "MQFz946W566z"),
        ("key sk_live_51HxYzAbC was revoked", "51HxYzAbC"),
        ("secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2La", "MfKQ9r8GKYqrTwjUPD8ILPZIo2La"),
        ("Authorization: Bearer sk_test_abc", "sk_test_abc"),
    ],
)
def test_secrets_are_replaced_in_every_field(capsys, text, secret):
    configure_logging("test", json=True)
    try:
        get_logger("t").warning(text, path=text, nested={"url": text}, items=[text])
    finally:
        structlog.reset_defaults()
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert secret not in line and "[redacted]" in line
    assert json.loads(line)["nested"]["url"].count("[redacted]") == 1


def test_ordinary_lines_are_left_alone(capsys):
    configure_logging("test", json=True)
    try:
        get_logger("t").info("http request", path="/pay/invoice/inv_1", total="a=5")
    finally:
        structlog.reset_defaults()
    logged = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert (logged["path"], logged["total"]) == ("/pay/invoice/inv_1", "a=5")
