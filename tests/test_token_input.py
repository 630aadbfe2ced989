"""Tokens from standard input, a file or the environment (archiver.token_input): never only
from the command line, exactly one source each, and never echoed."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from archiver.cli import build_parser
from archiver.token_input import IG, MAX_FILE_CHARS, THREADS, read_token
from core.config import Settings, load_settings
from core.errors import ConfigError
from models.db import create_db_engine
from tests.test_cli import IG_TOKEN, IG_USER, THREADS_TOKEN, archiver, env_for

ADD = ["accounts", "add", "--no-check", "--name", "brand", "--ig-user-id", IG_USER]


def stored_tokens(database_url: str) -> list[tuple[str, str | None]]:
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as conn:
            found = conn.execute(sa.text("SELECT ig_token, threads_token FROM account"))
            return [(row[0], row[1]) for row in found]
    finally:
        engine.dispose()


def parse(*args: str) -> argparse.Namespace:
    return build_parser().parse_args(list(args))


def no_env() -> Settings:
    return load_settings(_env_file=None)


def test_both_tokens_from_standard_input_in_order(sqlite_url: str, tmp_path: Path) -> None:
    """`-` for both: the first line is the Instagram token, the second the Threads token;
    neither is in argv, stdout or stderr."""
    args = [*ADD, "--ig-token", "-", "--threads-user-id", "7001", "--threads-token", "-",
            "--no-backfill"]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "archiver", *args],
        input=f"{IG_TOKEN}\n{THREADS_TOKEN}\n",
        env=env_for(sqlite_url),
        cwd=tmp_path,
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert stored_tokens(sqlite_url) == [(IG_TOKEN, THREADS_TOKEN)]
    for token in (IG_TOKEN, THREADS_TOKEN):
        assert token not in " ".join(args) + result.stdout + result.stderr


def test_token_from_the_environment(sqlite_url: str, tmp_path: Path) -> None:
    """ARCHIVER_IG_TOKEN stands in for --ig-token, for automation."""
    env = env_for(sqlite_url, ARCHIVER_IG_TOKEN=IG_TOKEN)
    result = archiver(*ADD, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert stored_tokens(sqlite_url) == [(IG_TOKEN, None)]
    assert IG_TOKEN not in result.stdout + result.stderr


def test_two_sources_for_one_token_is_exit_2(sqlite_url: str, tmp_path: Path) -> None:
    """--ig-token with ARCHIVER_IG_TOKEN set is refused in one line that repeats no token."""
    env = env_for(sqlite_url, ARCHIVER_IG_TOKEN=IG_TOKEN)
    result = archiver(*ADD, "--ig-token", THREADS_TOKEN, env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "--ig-token and ARCHIVER_IG_TOKEN" in result.stderr
    assert IG_TOKEN not in result.stderr
    assert THREADS_TOKEN not in result.stderr
    assert stored_tokens(sqlite_url) == []


def test_option_and_file_together_are_a_usage_error() -> None:
    """argparse refuses --ig-token with --ig-token-file (exit 2) before anything is read."""
    with pytest.raises(SystemExit) as exc:
        parse(*ADD, "--ig-token", IG_TOKEN, "--ig-token-file", "/dev/null")
    assert exc.value.code == 2


def test_token_file_loses_one_trailing_newline(tmp_path: Path) -> None:
    """A file holding the token and the newline an editor adds gives exactly the token."""
    path = tmp_path / "ig.token"
    path.write_text(f"{IG_TOKEN}\r\n")
    path.chmod(0o600)
    assert read_token(parse(*ADD, "--ig-token-file", str(path)), IG, no_env()) == IG_TOKEN


def test_a_world_readable_token_file_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A token file every user can read still works, with a warning that names only the file."""
    path = tmp_path / "ig.token"
    path.write_text(IG_TOKEN)
    path.chmod(0o644)
    assert read_token(parse(*ADD, "--ig-token-file", str(path)), IG, no_env()) == IG_TOKEN
    err = capsys.readouterr().err
    assert "chmod 600" in err
    assert IG_TOKEN not in err


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read --ig-token-file"),
        ("", "is empty"),
        ("\n", "is empty"),
        (f"{IG_TOKEN}\n{IG_TOKEN}\n", "more than one line"),
        (f" {IG_TOKEN}", "contains spaces"),
        ("x" * (MAX_FILE_CHARS + 1), "too large"),
    ],
)
def test_bad_token_files_are_clear_errors(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    """Missing, empty, several lines, spaces, huge: each a ConfigError without the content."""
    path = tmp_path / "ig.token"
    if content is not None:
        path.write_text(content)
        path.chmod(0o600)
    with pytest.raises(ConfigError, match=problem) as exc:
        read_token(parse(*ADD, "--ig-token-file", str(path)), IG, no_env())
    assert exc.value.exit_code == 2
    assert IG_TOKEN not in str(exc.value)


def test_standard_input_that_ends_early_is_an_error() -> None:
    """`-` with nothing on standard input says so, instead of storing an empty token."""
    args = parse(*ADD, "--ig-token", "-")
    with pytest.raises(ConfigError, match="standard input ended"):
        read_token(args, IG, no_env(), io.StringIO(""))


def test_no_source_names_all_three() -> None:
    """Without any source the error lists the option, the file option and the variable."""
    with pytest.raises(ConfigError, match=r"--ig-token - .*--ig-token-file PATH.*ARCHIVER_IG"):
        read_token(parse(*ADD), IG, no_env())


def test_environment_token_and_stdin_for_threads_link(tmp_path: Path) -> None:
    """`accounts threads` takes the same sources: ARCHIVER_THREADS_TOKEN, or `-`."""
    base = ("accounts", "threads", "--name", "brand", "--lookup")
    with_env = load_settings(_env_file=None, archiver_threads_token=THREADS_TOKEN)
    assert read_token(parse(*base), THREADS, with_env) == THREADS_TOKEN
    stdin = io.StringIO(f"{THREADS_TOKEN}\n")
    assert read_token(parse(*base, "--threads-token", "-"), THREADS, no_env(), stdin) == (
        THREADS_TOKEN
    )


@pytest.mark.parametrize(
    "args",
    [
        [*ADD, "--ig-token", "-", "--threads-token", "-"],  # no --threads-user-id
        ["accounts", "threads", "--name", "b", "--unlink", "--threads-token-file", "/x"],
    ],
)
def test_a_threads_token_where_none_is_taken_is_exit_2(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A Threads token without --threads-user-id, or with --unlink, is a usage error."""
    from archiver.cli import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert "Threads token" in capsys.readouterr().err
