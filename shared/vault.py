"""Secrets at rest (payments' provider credentials and saved-method tokens, webhook endpoint
secrets): Fernet (AES-128-CBC + HMAC) with MultiFernet, so keys can be rotated: the first key
encrypts, every key decrypts."""

import json
from typing import Any, cast

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class Vault:
    def __init__(self, keys: str) -> None:
        parts = [k.strip() for k in keys.split(",") if k.strip()]
        if not parts:
            raise ValueError("at least one credentials key is needed")
        self._fernet = MultiFernet([Fernet(k.encode()) for k in parts])

    def encrypt(self, value: dict[str, Any] | str) -> bytes:
        return self._fernet.encrypt(json.dumps(value).encode())

    def decrypt(self, token: bytes) -> dict[str, Any] | str:
        try:
            value: dict[str, Any] | str = json.loads(self._fernet.decrypt(bytes(token)))
            return value
        except InvalidToken as exc:
            raise ValueError("secret cannot be decrypted with the configured keys") from exc

    def encrypt_text(self, value: str) -> str:
        """For a text column: the Fernet token as ASCII."""
        return self.encrypt(value).decode()

    def decrypt_text(self, token: str) -> str:
        return cast(str, self.decrypt(token.encode()))  # what encrypt_text stored: a str

    def rotate(self, token: bytes) -> bytes:
        """Re-encrypt under the newest key."""
        return self._fernet.rotate(bytes(token))
