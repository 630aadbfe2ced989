"""`archiver accounts new-key` and `archiver accounts rotate-key`: tokens encrypted at rest.

With TOKEN_ENCRYPTION_KEY set, tokens are written encrypted (core.crypto). Rotating: put the
new key first and the old one after it (`TOKEN_ENCRYPTION_KEY=<new>,<old>`), run
`rotate-key`, which re-encrypts every stored token under the new key (plaintext ones too),
then drop the old key. A worker (or `archiver run`) refuses to start while some stored token
does not decrypt with its key, and encrypts those still in plaintext when it starts with one
(store.token_keys).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from archiver.commands import add_command, open_database
from core.errors import ConfigError

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
    from store.token_keys import reencrypt

    key = settings.token_key
    if key is None:
        msg = "TOKEN_ENCRYPTION_KEY is not set: nothing to encrypt with (see `accounts new-key`)"
        raise ConfigError(msg)
    engine = open_database(settings)
    try:
        changed = reencrypt(engine, key)
    finally:
        engine.dispose()
    print(f"re-encrypted {changed} stored token(s) under the first key")
    return 0
