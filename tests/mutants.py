"""Hand-made mutants for the tests that claim the most: each breaks the code one test guards,
runs that test, and expects it to fail. `python -m tests.mutants [name...]` against the local
stack (`make up`); e2e mutants restart the service they change, and restore it after.

A mutant that survives (its test still passes) means the test checks less than its name says.
"""

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    test: str
    # Services to restart with the mutant; then the file is restored before the test runs, so
    # only those services (not the test process or the others) run it.
    services: tuple[str, ...] = field(default=())


MUTANTS = [
    Mutant(
        "stop-dunning guard: a failure after stop-dunning schedules a retry",
        "services/dunning/domain/dunning.py",
        "if not automatic or invoice_closed or state.finished or state.retry_scheduled:",
        "if not automatic or invoice_closed or state.retry_scheduled:",
        "tests/integration/test_dunning_flows.py::test_stop_dunning_stops_retries",
    ),
    Mutant(
        "refund once: the worker repeats a timed-out refund with a new key",
        "services/payments/app/refunds.py",
        'f"billstream_{refund_id}", reference',
        "f\"billstream_{refund_id}_{job['attempts']}\", reference",
        "tests/integration/test_payments_flows.py::test_refund_after_a_provider_timeout_is_finished_by_the_worker_once",
    ),
    Mutant(
        "payment list rebuild: reset() does nothing",
        "services/payments/projections/payment_list.py",
        'await conn.execute("TRUNCATE payment_list")',
        "pass",
        "tests/integration/test_payments_consistency.py::test_payment_list_rebuilds_to_the_same_rows",
    ),
    Mutant(
        "invoice list rebuild: reset() does nothing",
        "services/invoicing/projections/invoice_list.py",
        'await conn.execute("TRUNCATE invoice_list")',
        "pass",
        "tests/integration/test_projections.py::test_rebuilt_projection_equals_the_incremental_one",
    ),
    Mutant(
        "double counting: a payment invoicing already counted is counted again",
        "services/payments/app/repository.py",
        "AND NOT EXISTS (SELECT 1 FROM invoice_payment_acks a",
        "AND NOT EXISTS (SELECT 1 FROM (SELECT * FROM invoice_payment_acks WHERE false) a",
        "tests/integration/test_payments_flows.py::test_partial_payment_then_the_rest",
    ),
    Mutant(
        "outbox backoff: the relay retries a down Kafka every 0.5 s without backing off",
        "shared/outbox.py",
        "backoff = min(backoff * 2, self.max_backoff)",
        "backoff = min(backoff, self.max_backoff)",
        "tests/integration/test_outbox_relay.py::test_relay_backs_off_while_kafka_is_down_and_catches_up",
    ),
    Mutant(
        "idempotency: a 5xx answer is kept as the key's answer",
        "shared/idempotency.py",
        "if status >= 500 or status == 401:",
        "if status == 401:",
        "tests/integration/test_idempotency.py::test_a_5xx_before_any_work_is_not_kept_and_the_retry_runs",
    ),
    Mutant(
        "relay leader: every relay publishes, elected or not",
        "shared/outbox.py",
        'while not await leader.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK):',
        'while not await leader.fetchval("SELECT pg_try_advisory_lock($1) OR true", RELAY_LOCK):',
        "tests/integration/test_outbox_relay_leader.py",
    ),
    Mutant(
        "delivery leases: another process's leases do not count against an endpoint's cap",
        "services/webhooks/app/delivery.py",
        "AND f.leased_until > now()) in_flight",
        "AND f.leased_until > now() AND false) in_flight",
        "tests/integration/test_webhooks_leases.py",
    ),
    Mutant(
        "customer defaults: the customer's net days are ignored",
        "services/invoicing/app/invoices.py",
        "timedelta(days=c.net_term_days or 0)",
        "timedelta(days=0)",
        "tests/e2e/test_invoicing_api.py::test_create_draft_with_taxes_and_discounts_and_defaults_from_the_customer",
        ("invoicing",),
    ),
    Mutant(
        "customer defaults: the customer's automatic collection is ignored",
        "services/invoicing/app/invoices.py",
        "bool(c.auto_collection)",
        "False",
        "tests/e2e/test_invoicing_api.py::test_create_draft_with_taxes_and_discounts_and_defaults_from_the_customer",
        ("invoicing",),
    ),
    Mutant(
        "PDF link: an expired link still downloads",
        "services/invoicing/api/pdf.py",
        "if expires < time.time():",
        "if expires < time.time() - 86400:",
        "tests/e2e/test_invoicing_api.py::test_pdf_link_is_signed_expiring_and_renders_the_invoice",
        ("invoicing",),
    ),
    Mutant(
        "every service: the webhooks service alone ignores revocation",
        "shared/auth.py",
        "WHERE key_hash = $1 AND revoked_at IS NULL",
        "WHERE key_hash = $1",
        "tests/e2e/test_skeleton.py::test_keys_are_checked_by_every_service_and_revocation_reaches_them",
        ("webhooks",),
    ),
    Mutant(
        "every service: the dunning service alone ignores revocation",
        "shared/auth.py",
        "WHERE key_hash = $1 AND revoked_at IS NULL",
        "WHERE key_hash = $1",
        "tests/e2e/test_skeleton.py::test_keys_are_checked_by_every_service_and_revocation_reaches_them",
        ("dunning",),
    ),
]


def restart(services: tuple[str, ...]) -> None:
    if services:
        subprocess.run(
            [str(ROOT / "deploy/local/services.sh"), "restart", *services], cwd=ROOT, check=True, capture_output=True
        )


def pytest(test: str) -> str | None:
    """None when the test passes; otherwise its failure summary line ("" when it errored
    instead of failing: a fixture or import broken, which proves nothing)."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-rfE", "-p", "no:cacheprovider", test],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode == 0:
        return None
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED ")]
    return failed[0][:300] if failed else ""


def run(m: Mutant) -> str | None:
    """The test's failure with the mutant in place (None: the mutant survived)."""
    path = ROOT / m.path
    original = path.read_text()
    assert original.count(m.old) == 1, f"{m.name}: {m.old!r} is not in {m.path} exactly once"
    try:
        path.write_text(original.replace(m.old, m.new))
        restart(m.services)
        if m.services:
            path.write_text(original)
        return pytest(m.test)
    finally:
        path.write_text(original)
        restart(m.services)


def main(names: list[str]) -> int:
    chosen = [m for m in MUTANTS if not names or any(n in m.name for n in names)]
    survived = []
    for m in chosen:
        started = time.monotonic()
        if (broken := pytest(m.test)) is not None:  # a kill counts only if the test passes unmutated
            print(f"BASELINE {m.name}: the test fails without the mutant: {broken}", flush=True)
            survived.append(m.name)
            continue
        why = run(m)
        verdict = "SURVIVED" if why is None else "ERRORED " if not why else "killed  "
        print(f"{verdict} {time.monotonic() - started:5.0f} s  {m.name}", flush=True)
        if why:
            print(f"           {why}", flush=True)
        if not why:
            survived.append(m.name)
    print(f"{len(chosen) - len(survived)} of {len(chosen)} mutants killed")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
