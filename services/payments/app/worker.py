"""Runs due charge and refund jobs: woken by NOTIFY when one is written, polling as a fallback (retries and
reconciliation of charges whose callback never came)."""

import asyncio

import asyncpg
import structlog

from shared.logs import get_logger
from shared.wakeup import Wakeup

log = get_logger(__name__)
CHANNEL = "payments_charge_jobs"


class ChargeWorker:
    def __init__(self, payments, refunds, dsn: str, *, poll_interval: float = 0.5) -> None:
        self.payments, self.refunds, self.dsn, self.poll_interval = payments, refunds, dsn, poll_interval
        self._wakeup = Wakeup(poll_interval)

    async def run(self) -> None:
        listener = await asyncpg.connect(self.dsn)
        try:
            await self._wakeup.listen(listener, CHANNEL)
            while True:
                due = await self.payments.due_jobs()
                refunds = await self.refunds.due()
                if due or refunds:
                    await asyncio.gather(
                        *(self._run_one(pid) for pid in due), *(self._refund_one(rid) for rid in refunds)
                    )
                    continue
                await self._wakeup.wait()
        finally:
            await listener.close()

    async def _run_one(self, payment_id: str) -> None:
        try:
            with structlog.contextvars.bound_contextvars(payment_id=payment_id):
                await self.payments.run_job(payment_id)
        except Exception as exc:  # noqa: BLE001 - a bug or the database away: the job stays due and is retried
            log.error("charge job failed", payment_id=payment_id, error=repr(exc))

    async def _refund_one(self, refund_id: str) -> None:
        try:
            with structlog.contextvars.bound_contextvars(refund_id=refund_id):
                await self.refunds.send(refund_id)
        except Exception as exc:  # noqa: BLE001 - refused refunds are recorded by send(); anything else is retried
            log.error("refund job failed", refund_id=refund_id, error=repr(exc))
