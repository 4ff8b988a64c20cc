"""Signed links (PDF downloads, pay links in e-mails) through itsdangerous over a key list, so a
secret can be rotated while links already handed out keep working.

A setting holds the keys comma-separated, newest first: the newest signs, every listed key
verifies. To rotate, put the new key in front and drop the old one once its links have expired.
"""

import re

from itsdangerous import BadSignature, SignatureExpired, Signer, TimestampSigner

# What a signature or token can be made of. Checked first: base64 decoding skips other characters,
# so "é" + a good signature would otherwise pass, and anything odd is simply not ours.
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{1,200}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,20}\.[A-Za-z0-9_-]{1,200}")


def _keys(secrets: str) -> list[str]:
    keys = [k.strip() for k in secrets.split(",") if k.strip()]
    if not keys:
        raise ValueError("no signing key configured")
    return keys[::-1]  # itsdangerous signs with the last key and tries them all


def sign(secrets: str, purpose: str, message: str) -> str:
    """A signature of `message` for one purpose (the salt: a PDF signature is no pay-link one)."""
    return Signer(_keys(secrets), salt=purpose).get_signature(message).decode()


def verify(secrets: str, purpose: str, message: str, signature: str) -> bool:
    if not _SIGNATURE.fullmatch(signature):
        return False
    return Signer(_keys(secrets), salt=purpose).verify_signature(message, signature)


def sign_timed(secrets: str, purpose: str, message: str) -> str:
    """`<timestamp>.<signature>`: the token itself says when it was made, so it can expire."""
    signed = TimestampSigner(_keys(secrets), salt=purpose).sign(message).decode()
    return signed[len(message) + 1 :]


def check_timed(secrets: str, purpose: str, message: str, token: str, max_age_s: int) -> str | None:
    """None when valid; otherwise why not: "expired" or "invalid"."""
    if not _TOKEN.fullmatch(token):
        return "invalid"
    try:
        TimestampSigner(_keys(secrets), salt=purpose).unsign(f"{message}.{token}", max_age=max_age_s)
    except SignatureExpired:
        return "expired"
    except BadSignature:
        return "invalid"
    return None
