"""No key, no worker: `archiver worker` and `archiver run` refuse to start when the stored
tokens do not decrypt with TOKEN_ENCRYPTION_KEY, and encrypt the plaintext ones when they
start with a key (store.token_keys); `status` counts the tokens left in plaintext."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.crypto import PREFIX, TokenCipher, new_key
from core.errors import ConfigError
from models.accounts import Account
from models.db import create_db_engine
from store.token_keys import census, encrypt_plaintext, plaintext_count, require_readable
from tests.servers import PrivateRedis, wait_until
from tests.test_cli import IG_TOKEN, THREADS_TOKEN, archiver, env_for, start, stop
from tests.test_status import Status, status_runner

KEY = new_key()


def add(database_url: str, name: str, *, key: str | None, threads: bool = False) -> None:
    """An account whose tokens are written through an engine with `key` (None: plaintext)."""
    engine = create_db_engine(database_url, token_key=key)
    try:
        with Session(engine) as session:
            session.add(
                Account(
                    name=name,
                    ig_user_id=f"ig-{name}",
                    ig_token=IG_TOKEN,
                    threads_user_id=f"th-{name}" if threads else None,
                    threads_token=THREADS_TOKEN if threads else None,
                )
            )
            session.commit()
    finally:
        engine.dispose()


def raw_tokens(engine: Engine) -> list[str]:
    stmt = "SELECT ig_token FROM account UNION ALL SELECT threads_token FROM account"
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(sa.text(stmt)) if row[0] is not None]


@pytest.fixture
def plain(database_url: str) -> Iterator[Engine]:
    """An engine without a key, which reads the stored values as they are."""
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


def test_census_counts_and_finds_what_a_key_cannot_read(database_url: str, plain: Engine) -> None:
    """Plaintext and encrypted tokens are counted; with a key, the accounts whose tokens it
    cannot decrypt are named."""
    add(database_url, "old", key=None, threads=True)
    add(database_url, "new", key=KEY)
    found = census(plain, KEY)
    assert (found.plaintext, found.encrypted, found.unreadable) == (2, 1, [])
    assert census(plain, new_key()).unreadable == [2]
    assert plaintext_count(plain) == 2


@pytest.mark.parametrize(
    ("key", "message"),
    [(None, "encrypted but TOKEN_ENCRYPTION_KEY is not set"), (new_key(), "do not decrypt")],
    ids=["no key", "wrong key"],
)
def test_unreadable_tokens_are_a_config_error(
    database_url: str, plain: Engine, key: str | None, message: str
) -> None:
    """No key for encrypted tokens, or a key that cannot decrypt them: ConfigError (exit 2)."""
    add(database_url, "shop", key=KEY)
    with pytest.raises(ConfigError, match=message) as exc:
        require_readable(plain, key)
    assert exc.value.exit_code == 2
    assert require_readable(plain, f"{new_key()},{KEY}").encrypted == 1  # rotating: both read


def test_plaintext_tokens_are_encrypted_once(database_url: str, plain: Engine) -> None:
    """encrypt_plaintext encrypts every plaintext token under the key, reports how many, and
    changes nothing when run again."""
    add(database_url, "old", key=None, threads=True)
    add(database_url, "new", key=KEY)
    before = set(raw_tokens(plain))
    assert encrypt_plaintext(plain, KEY) == 2
    after = raw_tokens(plain)
    assert all(value.startswith(PREFIX) for value in after)
    assert sorted(TokenCipher(KEY).decrypt(v) for v in after) == sorted(
        [IG_TOKEN, IG_TOKEN, THREADS_TOKEN]
    )
    assert len(before & set(after)) == 1  # the one encrypted before was left as it was
    assert encrypt_plaintext(plain, KEY) == 0
    assert plaintext_count(plain) == 0


@pytest.mark.parametrize(
    ("key", "message"),
    [(None, "encrypted but TOKEN_ENCRYPTION_KEY is not set"), (new_key(), "do not decrypt")],
    ids=["no key", "wrong key"],
)
def test_worker_refuses_to_start_without_a_key_that_reads_the_tokens(
    sqlite_url: str, redis_url: str, tmp_path: Path, key: str | None, message: str
) -> None:
    """`archiver worker` exits at once with status 2 and one line saying why."""
    add(sqlite_url, "shop", key=KEY)
    env = env_for(sqlite_url, redis_url) | ({"TOKEN_ENCRYPTION_KEY": key} if key else {})
    result = archiver("worker", env=env, cwd=tmp_path, timeout=30)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("archiver: error: ")
    assert message in result.stderr


def test_run_refuses_to_start_without_the_key(sqlite_url: str, tmp_path: Path) -> None:
    """`archiver run` checks the key too, before it starts anything (no embedded Redis)."""
    add(sqlite_url, "shop", key=KEY)
    result = archiver("run", env=env_for(sqlite_url), cwd=tmp_path, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "TOKEN_ENCRYPTION_KEY is not set" in result.stderr
    assert "embedded Redis" not in result.stdout


def test_worker_with_the_key_encrypts_plaintext_tokens_and_runs(
    sqlite_url: str, tmp_path: Path
) -> None:
    """With the right key the worker starts, logs how many plaintext tokens it encrypted and
    runs until SIGTERM; the database then holds no plaintext token."""
    add(sqlite_url, "old", key=None, threads=True)
    add(sqlite_url, "new", key=KEY)
    stderr = tmp_path / "stderr.txt"
    with PrivateRedis() as redis_server:
        env = env_for(sqlite_url, redis_server.url, TOKEN_ENCRYPTION_KEY=KEY)
        proc = start(["worker"], env, tmp_path)
        try:
            wait_until(
                lambda: "Starting worker" in stderr.read_text() or proc.poll() is not None,
                timeout=30,
            )
            assert proc.poll() is None, stderr.read_text()
        finally:
            status = stop(proc)
    assert status == 0, stderr.read_text()
    assert "encrypted 2 plaintext token(s)" in stderr.read_text()
    engine = create_db_engine(sqlite_url)
    try:
        assert plaintext_count(engine) == 0
    finally:
        engine.dispose()


@pytest.fixture
def status(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Iterator[Status]:
    yield from status_runner(monkeypatch, tmp_path, capsys)


def test_status_counts_the_plaintext_tokens(status: Status, sqlite_url: str) -> None:
    """Text and --json say how many tokens are stored in plaintext and what encrypts them."""
    add(sqlite_url, "old", key=None, threads=True)
    code, out, err = status(DATABASE_URL=sqlite_url)
    assert code == 0, err
    assert "tokens      2 stored in plaintext: set TOKEN_ENCRYPTION_KEY" in out
    code, out, err = status("--json", DATABASE_URL=sqlite_url)
    assert code == 0, err
    assert json.loads(out)["tokens"] == {"plaintext": 2, "key_set": False}
    code, out, err = status(DATABASE_URL=sqlite_url, TOKEN_ENCRYPTION_KEY=KEY)
    assert "tokens      2 stored in plaintext: a worker encrypts them" in out
    for text in (out, err):
        assert IG_TOKEN not in text
        assert THREADS_TOKEN not in text
