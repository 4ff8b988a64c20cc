"""The mailer: sends recorded customer e-mails over SMTP, retrying with backoff.

An e-mail is rendered and recorded in the consumer's transaction, then claimed here with a lease
(as deliveries are), so a crash before the SMTP server accepted it sends it again after the lease.
Its Message-ID is fixed when recorded, so a rare duplicate is recognisable as one.
"""

import asyncio
import email.policy
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formataddr, formatdate

import asyncpg
import httpx

from shared.logs import bind_correlation, get_logger
from shared.wakeup import Wakeup

log = get_logger(__name__)
EMAIL_CHANNEL = "billstream_emails"
RETRY_DELAYS = [30, 300, 1800, 7200, 21600]  # then the e-mail is kept as failed
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024


class SmtpConfig:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        use_ssl: bool = False,
        timeout: float = 20.0,
    ) -> None:
        self.host, self.port, self.username, self.password = host, port, username, password
        self.starttls, self.use_ssl, self.timeout = starttls, use_ssl, timeout

    def send(self, message: EmailMessage) -> None:
        """Blocking; run in a thread."""
        context = ssl.create_default_context()
        if self.use_ssl:
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with smtp:
            if self.starttls and not self.use_ssl:
                smtp.starttls(context=context)
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(message)


# CRLF line ends; headers folded at 78 so encoded words stay within RFC 2047's limits.
POLICY = email.policy.SMTP


def build_message(row: asyncpg.Record | dict, attachment: bytes | None) -> EmailMessage:
    message = EmailMessage(policy=POLICY)
    message["Subject"] = row["subject"]
    message["From"] = row["sender"]
    message["To"] = row["recipient"]
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = f"<{row['email_id']}@billstream>"
    message["X-Billstream-Event-Id"] = row["event_id"]
    message.set_content(row["text_body"])
    message.add_alternative(row["html_body"], subtype="html")
    if attachment is not None:
        message.add_attachment(
            attachment, maintype="application", subtype="pdf", filename=row["attachment_name"] or "invoice.pdf"
        )
    return message


def sender_address(business: str, address: str) -> str:
    return formataddr((business, address))


class EmailWorker:
    def __init__(
        self,
        dsn: str,
        pool: asyncpg.Pool,
        smtp: SmtpConfig,
        *,
        lease_s: float = 120,
        poll_interval: float = 1.0,
        concurrency: int = 5,
        schedule: list[float] = RETRY_DELAYS,
    ) -> None:
        self.dsn, self.pool, self.smtp, self.schedule = dsn, pool, smtp, schedule
        self.lease_s, self.poll_interval, self.concurrency = lease_s, poll_interval, concurrency
        self._wakeup = Wakeup(poll_interval)

    async def run(self) -> None:
        listener = await asyncpg.connect(self.dsn)
        try:
            await self._wakeup.listen(listener, EMAIL_CHANNEL)
            async with httpx.AsyncClient(timeout=15, follow_redirects=True) as client:
                while True:
                    claimed = await self.claim(self.concurrency)
                    await asyncio.gather(*(self.send(client, row) for row in claimed))
                    if len(claimed) < self.concurrency:
                        await self._wakeup.wait()
        finally:
            await listener.close()

    async def claim(self, limit: int) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            """UPDATE customer_emails e SET next_attempt_at = now() + make_interval(secs => $2)
                 FROM (SELECT email_id FROM customer_emails
                        WHERE status = 'pending' AND next_attempt_at <= now()
                        ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) due
                WHERE e.email_id = due.email_id RETURNING e.*""",
            limit,
            float(self.lease_s),
        )

    async def send(self, client: httpx.AsyncClient, row: asyncpg.Record) -> None:
        bind_correlation(row["correlation_id"])
        log_kw = dict(email_id=row["email_id"], kind=row["kind"], invoice_id=row["invoice_id"])
        attachment = await self._attachment(client, row) if row["attachment_url"] else None
        try:
            await asyncio.to_thread(self.smtp.send, build_message(row, attachment))
        except (OSError, smtplib.SMTPException) as exc:
            attempts = row["attempts"] + 1
            error = f"{type(exc).__name__}: {exc}"[:500]
            permanent = isinstance(exc, smtplib.SMTPRecipientsRefused)
            delay = None if permanent or attempts > len(self.schedule) else self.schedule[attempts - 1]
            log.warning("customer e-mail not sent", error=error, retry_in_s=delay, **log_kw)
            await self.pool.execute(
                """UPDATE customer_emails SET attempts = attempts + 1, last_error = $2,
                          status = CASE WHEN $3::float8 IS NULL THEN 'failed' ELSE 'pending' END,
                          next_attempt_at = now() + make_interval(secs => coalesce($3::float8, 0))
                    WHERE email_id = $1""",
                row["email_id"],
                error,
                delay,
            )
            return
        await self.pool.execute(
            """UPDATE customer_emails SET status = 'sent', attempts = attempts + 1, sent_at = now(),
                      last_error = NULL WHERE email_id = $1""",
            row["email_id"],
        )
        log.info("customer e-mail sent", attached_pdf=attachment is not None, **log_kw)

    async def _attachment(self, client: httpx.AsyncClient, row: asyncpg.Record) -> bytes | None:
        """The invoice PDF, if it can be fetched; the e-mail goes without it otherwise (its
        receipt link shows the same invoice)."""
        try:
            response = await client.get(row["attachment_url"])
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("invoice PDF not attached", email_id=row["email_id"], error=repr(exc))
            return None
        body = response.content
        if not body.startswith(b"%PDF") or len(body) > MAX_ATTACHMENT_BYTES:
            log.warning("invoice PDF not attached: not a PDF or too large", email_id=row["email_id"])
            return None
        return body
