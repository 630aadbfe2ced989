"""`archiver accounts new-key` and `archiver accounts rotate-key`: tokens encrypted at rest.

With TOKEN_ENCRYPTION_KEY set, tokens are written encrypted (core.crypto). Rotating: put the
new key first and the old one after it (`TOKEN_ENCRYPTION_KEY=<new>,<old>`), run
`rotate-key`, which re-encrypts every stored token under the new key (plaintext ones too),
then drop the old key.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from archiver.commands import add_command, open_database
from core.errors import ConfigError
from models.tables import table_of

if TYPE_CHECKING:
    from archiver.commands import SubParsers
    from core.config import Settings


def register(inner: SubParsers) -> None:
    """Adds `new-key` and `rotate-key` to the `accounts` subcommands."""
    new = add_command(
        inner,
        "new-key",
        help_text="print a new key for TOKEN_ENCRYPTION_KEY",
        description="Print a new Fernet key. Set it as TOKEN_ENCRYPTION_KEY to store tokens "
        "encrypted; keep it safe: without it the stored tokens cannot be read.",
    )
    new.set_defaults(handler=run_new_key, needs_settings=False)
    rotate = add_command(
        inner,
        "rotate-key",
        help_text="re-encrypt every stored token under the first TOKEN_ENCRYPTION_KEY",
        description="Re-encrypt every stored token under the first key of "
        "TOKEN_ENCRYPTION_KEY (set it to `<new>,<old>` while rotating); plaintext tokens "
        "stored before encryption was turned on are encrypted too.",
    )
    rotate.set_defaults(handler=run_rotate)


def run_new_key(_args: argparse.Namespace, _settings: Settings | None) -> int:
    from core.crypto import new_key

    print(new_key())
    return 0


def run_rotate(_args: argparse.Namespace, settings: Settings) -> int:
    import sqlalchemy as sa

    from core.crypto import TokenCipher
    from models.accounts import Account

    key = settings.token_key
    if key is None:
        msg = "TOKEN_ENCRYPTION_KEY is not set: nothing to encrypt with (see `accounts new-key`)"
        raise ConfigError(msg)
    cipher = TokenCipher(key)
    table = table_of(Account)
    raw = sa.select(table.c.id, sa.type_coerce(table.c.ig_token, sa.Text),
                    sa.type_coerce(table.c.threads_token, sa.Text))  # fmt: skip
    engine = open_database(settings)
    try:
        with engine.begin() as conn:
            rows = conn.execute(raw).all()
            for account_id, ig_token, threads_token in rows:
                values = {"ig_token": cipher.rotate(ig_token)}
                if threads_token is not None:
                    values["threads_token"] = cipher.rotate(threads_token)
                update = sa.update(table).where(table.c.id == account_id)
                conn.execute(update.values({k: sa.literal(v, sa.Text) for k, v in values.items()}))
    finally:
        engine.dispose()
    print(f"re-encrypted the tokens of {len(rows)} account(s) under the first key")
    return 0
