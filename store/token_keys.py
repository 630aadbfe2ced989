"""The stored tokens against TOKEN_ENCRYPTION_KEY: can this process read every one of them,
how many are still in plaintext, and bringing them all under the first key.

A worker that cannot decrypt the tokens would start, fail every job with ConfigError and let
the stories expire unseen, so `require_readable` lets it refuse to start instead. Tokens
stored in plaintext before a key was set are encrypted by `encrypt_plaintext` when a keyed
worker starts, and by `archiver accounts rotate-key` (`reencrypt`).

Everything here goes around the TokenText column type (`type_coerce` to Text), so it sees
and writes the stored values as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.crypto import PREFIX, TokenCipher
from core.errors import ConfigError
from models.accounts import Account
from models.tables import table_of

_account = table_of(Account)
COLUMNS = ("ig_token", "threads_token")
SHOWN_IDS = 5  # account ids named in an error, at most


@dataclass
class StoredTokens:
    """The stored tokens by what this process can do with them."""

    plaintext: int = 0
    encrypted: int = 0
    unreadable: list[int] = field(default_factory=list)  # account ids, once each


def _raw(column: str) -> sa.ColumnElement[str]:
    return sa.type_coerce(_account.c[column], sa.Text)


def _stored(conn: Connection) -> list[tuple[int, str, str | None]]:
    stmt = sa.select(_account.c.id, *(_raw(column) for column in COLUMNS))
    return [(int(row[0]), str(row[1]), row[2]) for row in conn.execute(stmt.order_by("id"))]


def census(engine: Engine, key: str | None) -> StoredTokens:
    """Count the tokens in plaintext and encrypted; with a key, find those it cannot read."""
    cipher = TokenCipher(key) if key else None
    found = StoredTokens()
    with engine.connect() as conn:
        rows = _stored(conn)
    for account_id, *values in rows:
        for stored in filter(None, values):
            if not stored.startswith(PREFIX):
                found.plaintext += 1
                continue
            found.encrypted += 1
            unreadable = cipher is not None and not _decrypts(cipher, stored)
            if unreadable and account_id not in found.unreadable:
                found.unreadable.append(account_id)
    return found


def _decrypts(cipher: TokenCipher, stored: str) -> bool:
    try:
        cipher.decrypt(stored)
    except ConfigError:
        return False
    return True


def require_readable(engine: Engine, key: str | None) -> StoredTokens:
    """The census, or ConfigError when some stored token cannot be read with `key`."""
    found = census(engine, key)
    if key is None and found.encrypted:
        msg = (
            f"{found.encrypted} stored token(s) are encrypted but TOKEN_ENCRYPTION_KEY is not "
            "set: set it to the key they were encrypted with"
        )
        raise ConfigError(msg)
    if found.unreadable:
        ids = ", ".join(str(i) for i in found.unreadable[:SHOWN_IDS])
        more = "" if len(found.unreadable) <= SHOWN_IDS else ", ..."
        msg = (
            f"the tokens of {len(found.unreadable)} account(s) (id {ids}{more}) do not decrypt "
            "with TOKEN_ENCRYPTION_KEY: a wrong key, or an old key dropped before `archiver "
            "accounts rotate-key` (give `<new>,<old>` while rotating)"
        )
        raise ConfigError(msg)
    return found


def plaintext_count(engine: Engine) -> int:
    """How many stored tokens are not encrypted; counted in SQL, no token is loaded."""
    counts = [
        sa.select(sa.func.count()).where(
            _raw(column).is_not(None), sa.not_(_raw(column).startswith(PREFIX, autoescape=True))
        )
        for column in COLUMNS
    ]
    with engine.connect() as conn:
        return sum(int(conn.execute(stmt).scalar_one()) for stmt in counts)


def encrypt_plaintext(engine: Engine, key: str) -> int:
    """Encrypt the tokens still in plaintext under the first key; how many. Idempotent."""
    return reencrypt(engine, key, plaintext_only=True)


def reencrypt(engine: Engine, key: str, *, plaintext_only: bool = False) -> int:
    """Write every stored token (or every plaintext one) under the first key; how many were.

    Each row is updated only if it still holds the value read, so a token refreshed by a
    running worker meanwhile is never overwritten with the older one.
    """
    cipher = TokenCipher(key)
    changed = 0
    with engine.begin() as conn:
        for account_id, *values in _stored(conn):
            for column, stored in zip(COLUMNS, values, strict=True):
                if stored is None or (plaintext_only and stored.startswith(PREFIX)):
                    continue
                update = sa.update(_account).where(
                    _account.c.id == account_id, _raw(column) == stored
                )
                new = {column: sa.literal(cipher.rotate(stored), sa.Text)}
                changed += conn.execute(update.values(new)).rowcount
    return changed
