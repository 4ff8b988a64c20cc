"""A local mailbox: a real SMTP server (aiosmtpd) that keeps every message it receives in a
Maildir, and a page that lists them. The webhooks service sends customer e-mails here by default.

    python -m deploy.local.mailbox serve            # foreground
    python -m deploy.local.mailbox start|stop|status  # background, pid and log in .local/

SMTP on 127.0.0.1:52525 (BILLSTREAM_MAILBOX_SMTP_PORT), the page on http://127.0.0.1:58025/
(BILLSTREAM_MAILBOX_HTTP_PORT), messages in .local/mail (BILLSTREAM_MAILBOX_DIR).
"""

import email
import email.policy
import html
import json
import mailbox
import os
import signal
import subprocess
import sys
import threading
import time
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote

from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("BILLSTREAM_STATE_DIR", ROOT / ".local"))
HOST = os.environ.get("BILLSTREAM_MAILBOX_HOST", "127.0.0.1")
SMTP_PORT = int(os.environ.get("BILLSTREAM_MAILBOX_SMTP_PORT", "52525"))
HTTP_PORT = int(os.environ.get("BILLSTREAM_MAILBOX_HTTP_PORT", "58025"))
MAIL_DIR = Path(os.environ.get("BILLSTREAM_MAILBOX_DIR", STATE / "mail"))
PID_FILE, LOG_FILE = STATE / "run" / "mailbox.pid", STATE / "logs" / "mailbox.log"


def _parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def summary(key: str, message: EmailMessage) -> dict:
    attachments = [p.get_filename() for p in message.iter_attachments()]
    return {
        "id": key,
        "from": message["From"],
        "to": message["To"],
        "subject": message["Subject"],
        "date": message["Date"],
        "messageId": message["Message-ID"],
        "attachments": attachments,
    }


class Mailbox:
    """The SMTP server and the page, over one Maildir. Usable from tests on any free ports."""

    def __init__(
        self, directory: Path = MAIL_DIR, *, host: str = HOST, smtp_port: int = SMTP_PORT, http_port: int = HTTP_PORT
    ) -> None:
        for sub in ("tmp", "new", "cur"):  # Maildir(create=True) skips an existing empty directory
            (directory / sub).mkdir(parents=True, exist_ok=True)
        self.store = mailbox.Maildir(directory, create=False)
        self._lock = threading.Lock()
        self.host, self.smtp_port = host, smtp_port
        self.smtp = Controller(_Handler(self), hostname=host, port=smtp_port)
        self.http = ThreadingHTTPServer((host, http_port), _page(self))
        self.http_port = self.http.server_address[1]
        self.url = f"http://{host}:{self.http_port}/"

    def keep(self, raw: bytes) -> str:
        with self._lock:
            return self.store.add(raw)

    def messages(self, to: str | None = None) -> list[tuple[str, EmailMessage]]:
        """Every message kept (only those that mention `to`, if given), oldest first. The box is
        never emptied, so a reader looking for one address says so: the raw bytes are searched
        before anything is parsed, which keeps that fast after thousands of e-mails."""
        needle = to.lower().encode() if to else None
        with self._lock:
            items = [
                (key, raw)
                for key in self.store.keys()  # noqa: SIM118 - a Maildir iterates messages
                if (raw := self.store.get_file(key).read()) and (needle is None or needle in raw.lower())
            ]
        # Maildir keys start with the delivery time: sorting them sorts by arrival.
        return [(key, _parse(raw)) for key, raw in sorted(items)]

    def raw(self, key: str) -> bytes | None:
        with self._lock:
            try:
                return self.store.get_file(key).read()
            except KeyError:
                return None

    def start(self) -> "Mailbox":
        self.smtp.start()
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.smtp.stop()
        self.http.shutdown()
        self.http.server_close()

    __enter__ = start

    def __exit__(self, *exc) -> None:
        self.stop()


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's name
        raw = envelope.original_content or envelope.content
        if not isinstance(raw, bytes):
            raw = raw.encode()
        self.box.keep(raw)
        return "250 Message accepted for delivery"


def _page(box: Mailbox) -> type[BaseHTTPRequestHandler]:
    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's naming
            path, _, query = self.path.partition("?")
            path = unquote(path)
            if path == "/":
                self._send(200, "text/html; charset=utf-8", self._index().encode())
            elif path == "/api/messages":
                to = (parse_qs(query).get("to") or [None])[0]  # ?to=ADDRESS: that recipient's only
                body = json.dumps(
                    [summary(k, m) for k, m in box.messages(to) if to is None or to.lower() in (m["To"] or "").lower()],
                    default=str,
                )
                self._send(200, "application/json", body.encode())
            elif path.startswith("/messages/"):
                key, fmt = path.removeprefix("/messages/"), ""
                if key.endswith((".txt", ".eml")):
                    key, fmt = key[:-4], key[-3:]
                raw = box.raw(key)
                if raw is None:
                    self._send(404, "text/plain", b"no such message")
                elif fmt == "eml":
                    self._send(200, "message/rfc822", raw)
                else:
                    message = _parse(raw)
                    part = message.get_body(("html", "plain")) if fmt != "txt" else message.get_body(("plain",))
                    ctype = f"{part.get_content_type()}; charset=utf-8"
                    self._send(200, ctype, part.get_content().encode())
            else:
                self._send(404, "text/plain", b"not found")

        def _index(self) -> str:
            rows = "".join(
                f"<tr><td>{html.escape(str(m['Date']))}</td><td>{html.escape(str(m['To']))}</td>"
                f"<td><a href='/messages/{k}'>{html.escape(str(m['Subject']))}</a></td>"
                f"<td><a href='/messages/{k}.txt'>text</a> <a href='/messages/{k}.eml'>raw</a></td>"
                f"<td>{html.escape(', '.join(filter(None, (p.get_filename() for p in m.iter_attachments()))))}</td></tr>"
                for k, m in reversed(box.messages())
            )
            return (
                "<!doctype html><meta charset='utf-8'><title>Billstream mailbox</title>"
                "<body style='font-family:sans-serif'><h1>Billstream mailbox</h1>"
                f"<p>SMTP on {box.host}:{box.smtp_port}. Newest first.</p>"
                "<table cellpadding='6'><tr><th>Date</th><th>To</th><th>Subject</th><th></th>"
                f"<th>Attachments</th></tr>{rows}</table></body>"
            )

        def _send(self, status: int, ctype: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    return Page


# -- command line ------------------------------------------------------------------------------


def _running() -> int | None:
    try:
        pid = int(PID_FILE.read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def serve() -> None:
    box = Mailbox().start()
    print(f"mailbox: SMTP {HOST}:{SMTP_PORT}, messages at {box.url} (kept in {MAIL_DIR})", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    box.stop()


def start() -> None:
    if pid := _running():
        print(f"mailbox already running (pid {pid})")
        return
    PID_FILE.parent.mkdir(parents=True, exist_ok=True)
    LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(LOG_FILE, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "deploy.local.mailbox", "serve"],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    PID_FILE.write_text(str(proc.pid))
    import socket

    for _ in range(100):  # ready when the SMTP port answers
        try:
            socket.create_connection((HOST, SMTP_PORT), timeout=0.2).close()
            print(f"mailbox ready: SMTP {HOST}:{SMTP_PORT}, page http://{HOST}:{HTTP_PORT}/")
            return
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    sys.exit(f"mailbox did not start; see {LOG_FILE}")


def stop() -> None:
    if pid := _running():
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if _running() is None:
                break
            time.sleep(0.1)
        print("mailbox stopped")
    PID_FILE.unlink(missing_ok=True)


def status() -> None:
    pid = _running()
    print(f"mailbox running (pid {pid})" if pid else "mailbox stopped")


if __name__ == "__main__":
    commands = {"serve": serve, "start": start, "stop": stop, "status": status}
    command = sys.argv[1] if len(sys.argv) > 1 else "serve"
    if command not in commands:
        sys.exit(f"usage: python -m deploy.local.mailbox [{'|'.join(commands)}]")
    commands[command]()
