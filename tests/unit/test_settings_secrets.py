"""Outside local mode a service refuses to start with a missing or development secret."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.invoicing.settings import Settings as InvoicingSettings
from services.payments.settings import Settings as PaymentsSettings
from services.webhooks.settings import Settings as WebhooksSettings
from shared.logs import get_logger
from shared.settings import InsecureSettings

ROOT = Path(__file__).resolve().parents[2]
log = get_logger(__name__)


def test_production_names_every_default_secret(monkeypatch):
    monkeypatch.setenv("BILLSTREAM_ENV", "production")
    with pytest.raises(InsecureSettings) as refused:
        PaymentsSettings().check_secrets(log)
    for variable in (
        "BILLSTREAM_PAYMENTS_PAY_LINK_SECRET",
        "BILLSTREAM_PAYMENTS_CREDENTIALS_KEYS",
        "BILLSTREAM_PAYMENTS_SANDBOX_WEBHOOK_SECRET",
    ):
        assert variable in str(refused.value)
    monkeypatch.setenv("BILLSTREAM_WEBHOOKS_PAY_LINK_SECRET", "")  # empty is as bad as the default
    monkeypatch.setenv("BILLSTREAM_WEBHOOKS_SECRETS_KEYS", "set-by-the-operator")
    assert WebhooksSettings().insecure_secrets() == ["BILLSTREAM_WEBHOOKS_PAY_LINK_SECRET"]


def test_production_accepts_real_secrets_and_drops_the_sandbox_ones_when_it_is_off(monkeypatch):
    monkeypatch.setenv("BILLSTREAM_ENV", "production")
    monkeypatch.setenv("BILLSTREAM_INVOICING_PDF_SIGNING_SECRET", "a-long-random-value")
    assert InvoicingSettings().insecure_secrets() == ["BILLSTREAM_INVOICING_PAY_LINK_SECRET"]
    monkeypatch.setenv("BILLSTREAM_INVOICING_PAY_LINK_SECRET", "set-by-the-operator")
    InvoicingSettings().check_secrets(log)
    for name in ("PAY_LINK_SECRET", "CREDENTIALS_KEYS"):
        monkeypatch.setenv(f"BILLSTREAM_PAYMENTS_{name}", "set-by-the-operator")
    monkeypatch.setenv("BILLSTREAM_PAYMENTS_SANDBOX_ENABLED", "false")
    PaymentsSettings().check_secrets(log)


def test_local_mode_runs_with_development_secrets(monkeypatch):
    monkeypatch.setenv("BILLSTREAM_ENV", "local")
    InvoicingSettings().check_secrets(log)  # warns, does not refuse


def test_unset_means_production(monkeypatch):
    monkeypatch.delenv("BILLSTREAM_ENV", raising=False)
    assert InvoicingSettings().env == "production"


def test_a_production_process_exits_at_once_naming_the_variable():
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLSTREAM_")}
    env["BILLSTREAM_ENV"] = "production"
    done = subprocess.run(
        [sys.executable, "-m", "services.invoicing", "serve"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "BILLSTREAM_INVOICING_PDF_SIGNING_SECRET" in done.stderr + done.stdout
