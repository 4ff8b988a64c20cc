"""What the client did and what it was told: one Op per logical request (all its retries share
one Idempotency-Key). The audit compares this ledger with what the platform shows afterwards."""

from dataclasses import dataclass, field


@dataclass
class Op:
    id: str
    kind: str  # customer, invoice, finalize, send, mark_paid, checkout, hosted_pay, refund
    key: str  # the Idempotency-Key every attempt carried ("" for the hosted form, which has none)
    started: float  # seconds since traffic began
    ended: float = 0.0
    acked: bool = False  # a 2xx (or the hosted page's redirect to its payment) reached the client
    gave_up: bool = False  # never a definite answer within the budget: outcome unknown
    refused: str | None = None  # a definite 4xx answer: its error code
    committed: bool = False  # 409 idempotency_key_committed: the work happened, its answer was lost
    attempts: int = 0
    unknown: int = 0  # attempts whose outcome the client could not know (5xx, timeout, connection)
    result: dict = field(default_factory=dict)  # ids and amounts: customer_id, invoice_id, payment_id, ...
    errors: list[str] = field(default_factory=list)  # the first and last 3 unknown outcomes, for the report

    @property
    def happened(self) -> bool:
        """The platform said the effect exists (its ids may be unknown to the client)."""
        return self.acked or self.committed

    def note(self, error: str) -> None:
        self.unknown += 1
        self.errors.append(error)
        if len(self.errors) > 6:
            del self.errors[3]
