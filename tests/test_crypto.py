"""Tokens encrypted at rest (TOKEN_ENCRYPTION_KEY): the cipher, the column type, settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from core.config import load_settings
from core.crypto import PREFIX, TokenCipher, new_key
from core.errors import ConfigError
from models.accounts import Account
from models.db import create_db_engine
from tests.test_cli import archiver, env_for

TOKEN = "IGQVJ-a-real-looking-token-0123456789"


def raw_tokens(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(sa.text("SELECT ig_token FROM account"))]


def test_cipher_round_trip_hides_the_token_and_its_key() -> None:
    """Encrypted values carry the prefix, not the token; the repr shows no key."""
    key = new_key()
    cipher = TokenCipher(key)
    stored = cipher.encrypt(TOKEN)
    assert stored.startswith(PREFIX)
    assert TOKEN not in stored
    assert cipher.decrypt(stored) == TOKEN
    assert key not in repr(cipher)


def test_a_wrong_key_is_a_clear_error() -> None:
    """A value encrypted under another key never decrypts to garbage."""
    stored = TokenCipher(new_key()).encrypt(TOKEN)
    with pytest.raises(ConfigError, match="does not decrypt"):
        TokenCipher(new_key()).decrypt(stored)


def test_rotation_reencrypts_under_the_first_key() -> None:
    """With `new,old` both decrypt; rotate() leaves a value only the new key needs."""
    old, new = new_key(), new_key()
    stored = TokenCipher(old).encrypt(TOKEN)
    rotated = TokenCipher(f"{new},{old}").rotate(stored)
    assert TokenCipher(new).decrypt(rotated) == TOKEN
    assert TokenCipher(new).decrypt(TokenCipher(new).rotate("plain-token")) == "plain-token"


def test_settings_refuse_a_malformed_key() -> None:
    """TOKEN_ENCRYPTION_KEY is checked at start with a message that says what to do."""
    with pytest.raises(ConfigError, match="TOKEN_ENCRYPTION_KEY"):
        load_settings(_env_file=None, token_encryption_key="not-a-fernet-key")
    assert load_settings(_env_file=None, token_encryption_key=new_key()).token_key


def test_an_engine_with_a_key_stores_tokens_encrypted(database_url: str) -> None:
    """Through a keyed engine the column holds ciphertext; reads give the token back, and
    an engine without the key refuses to read it."""
    key = new_key()
    keyed = create_db_engine(database_url, token_key=key)
    plain = create_db_engine(database_url)
    try:
        with Session(keyed) as session:
            session.add(Account(name="shop", ig_user_id="1784", ig_token=TOKEN))
            session.commit()
        assert all(value.startswith(PREFIX) and TOKEN not in value for value in raw_tokens(plain))
        with Session(keyed) as session:
            assert session.exec(select(Account)).one().ig_token == TOKEN
        with Session(plain) as session, pytest.raises(ConfigError, match="set TOKEN_ENCRYPTION"):
            session.exec(select(Account)).one()
    finally:
        keyed.dispose()
        plain.dispose()


def test_plaintext_tokens_from_before_encryption_still_read(database_url: str) -> None:
    """Turning encryption on does not lock out the tokens stored before it."""
    plain = create_db_engine(database_url)
    keyed = create_db_engine(database_url, token_key=new_key())
    try:
        with Session(plain) as session:
            session.add(Account(name="shop", ig_user_id="1784", ig_token=TOKEN))
            session.commit()
        with Session(keyed) as session:
            assert session.exec(select(Account)).one().ig_token == TOKEN
    finally:
        keyed.dispose()
        plain.dispose()


def test_new_key_and_rotate_key_commands(database_url: str, tmp_path: Path) -> None:
    """new-key prints a usable key; rotate-key encrypts plaintext tokens, then moves them to
    a new key so that the old one can be dropped; no command prints a token."""
    plain_env = env_for(database_url)
    added = archiver("accounts", "add", "--name", "shop", "--ig-user-id", "1784",
                     "--ig-token", TOKEN, "--no-check", env=plain_env, cwd=tmp_path)  # fmt: skip
    assert added.returncode == 0, added.stderr
    old = archiver("accounts", "new-key", env={"PATH": plain_env["PATH"]}, cwd=tmp_path)
    new = archiver("accounts", "new-key", env={"PATH": plain_env["PATH"]}, cwd=tmp_path)
    old_key, new_key_ = old.stdout.strip(), new.stdout.strip()
    first = archiver("accounts", "rotate-key", env=plain_env | {"TOKEN_ENCRYPTION_KEY": old_key},
                     cwd=tmp_path)  # fmt: skip
    assert first.returncode == 0, first.stderr
    engine = create_db_engine(database_url)
    try:
        (stored,) = raw_tokens(engine)
        assert stored.startswith(PREFIX)
        assert TokenCipher(old_key).decrypt(stored) == TOKEN
        both = plain_env | {"TOKEN_ENCRYPTION_KEY": f"{new_key_},{old_key}"}
        assert archiver("accounts", "rotate-key", env=both, cwd=tmp_path).returncode == 0
        (rotated,) = raw_tokens(engine)
        assert TokenCipher(new_key_).decrypt(rotated) == TOKEN
    finally:
        engine.dispose()
    listed = archiver("accounts", "list", env=plain_env | {"TOKEN_ENCRYPTION_KEY": new_key_},
                      cwd=tmp_path)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    unkeyed = archiver("accounts", "list", env=plain_env, cwd=tmp_path)
    assert unkeyed.returncode == 2
    assert "set TOKEN_ENCRYPTION_KEY" in unkeyed.stderr
    for result in (added, first, listed, unkeyed):
        assert TOKEN not in result.stdout + result.stderr
