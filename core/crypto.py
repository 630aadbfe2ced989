"""Access tokens encrypted at rest with Fernet (the `cryptography` package) when
TOKEN_ENCRYPTION_KEY is set.

The key is given to an engine (`models.db.create_db_engine(url, token_key=...)`), which keeps
its cipher on its dialect; the `TokenText` column type finds it there, so every read and
write through that engine encrypts and decrypts without any module-level state. Stored
values look like `fernet:<token>`; a value without the prefix is a plaintext token from
before encryption was turned on and is read as it is (`archiver accounts rotate-key`
encrypts those too).

Several comma-separated keys may be given: the first encrypts, all decrypt, which is how a key
is rotated (new key first, old key after it, then `archiver accounts rotate-key`).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.engine import Dialect

from core.errors import ConfigError

PREFIX = "fernet:"
_ATTRIBUTE = "archiver_token_cipher"


class TokenCipher:
    """Encrypts with the first key, decrypts with any; never shows a key in its repr."""

    def __init__(self, keys: str) -> None:
        parts = [part.strip() for part in keys.split(",") if part.strip()]
        if not parts:
            msg = "TOKEN_ENCRYPTION_KEY is empty"
            raise ConfigError(msg)
        try:
            self._fernet = MultiFernet([Fernet(part.encode()) for part in parts])
        except ValueError:
            msg = (
                "TOKEN_ENCRYPTION_KEY must be Fernet keys (32 url-safe base64 bytes), comma-"
                "separated; make one with `archiver accounts new-key`"
            )
            raise ConfigError(msg) from None

    def __repr__(self) -> str:
        return "TokenCipher(***)"

    def encrypt(self, token: str) -> str:
        return PREFIX + self._fernet.encrypt(token.encode()).decode()

    def decrypt(self, stored: str) -> str:
        if not stored.startswith(PREFIX):
            return stored  # stored before encryption was turned on
        try:
            return self._fernet.decrypt(stored[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            msg = "a stored token does not decrypt with TOKEN_ENCRYPTION_KEY (wrong or rotated key)"
            raise ConfigError(msg) from None

    def rotate(self, stored: str) -> str:
        """Re-encrypt with the first key (plaintext values get encrypted)."""
        if not stored.startswith(PREFIX):
            return self.encrypt(stored)
        return PREFIX + self._fernet.rotate(stored[len(PREFIX) :].encode()).decode()


def new_key() -> str:
    return Fernet.generate_key().decode()


def attach_cipher(dialect: Dialect, cipher: TokenCipher | None) -> None:
    setattr(dialect, _ATTRIBUTE, cipher)


def cipher_of(dialect: Dialect) -> TokenCipher | None:
    found: TokenCipher | None = getattr(dialect, _ATTRIBUTE, None)
    return found


class TokenText(sa.TypeDecorator[str]):
    """A token column: encrypted on the way in and decrypted on the way out when the engine
    has a cipher; an encrypted value read without one is an error, never a garbled token."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        cipher = cipher_of(dialect)
        if value is None or cipher is None or value.startswith(PREFIX):
            return value
        return cipher.encrypt(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        cipher = cipher_of(dialect)
        if cipher is not None:
            return cipher.decrypt(str(value))
        if str(value).startswith(PREFIX):
            msg = "tokens are encrypted in this database: set TOKEN_ENCRYPTION_KEY"
            raise ConfigError(msg)
        return str(value)
