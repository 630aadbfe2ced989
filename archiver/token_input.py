"""Where an access token comes from when a command takes one: not only the command line.

A token given as `--ig-token T` can be read by every user of the machine (`ps`,
/proc/<pid>/cmdline) and stays in the shell history. So each token can come instead from
standard input (`--ig-token -`: one line, or a prompt that does not echo on a terminal), from
a file (`--ig-token-file PATH`: its one line) or from the environment (`ARCHIVER_IG_TOKEN`,
also read from `.env`), exactly one source per token. With both tokens on standard input,
the Instagram token is the first line and the Threads token the second.

No message here ever repeats a token: only where it came from.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from core.errors import ConfigError

if TYPE_CHECKING:
    from core.config import Settings

STDIN = "-"
MAX_FILE_CHARS = 16 * 1024  # tokens are a few hundred characters; /dev/zero must not hang us


@dataclass(frozen=True)
class TokenSource:
    """One token's three sources: `--<flag>-token`, `--<flag>-token-file`, ARCHIVER_<FLAG>_TOKEN
    (the Settings field `archiver_<flag>_token`)."""

    flag: str
    label: str

    @property
    def option(self) -> str:
        return f"--{self.flag}-token"

    @property
    def file_option(self) -> str:
        return f"--{self.flag}-token-file"

    @property
    def env(self) -> str:
        return f"ARCHIVER_{self.flag.upper()}_TOKEN"


IG = TokenSource("ig", "Instagram")
THREADS = TokenSource("threads", "Threads")


def add_token_options(parser: argparse.ArgumentParser, source: TokenSource) -> None:
    """`--<flag>-token` and `--<flag>-token-file`, one or the other, with a --help that warns."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        source.option,
        metavar="TOKEN",
        help=f"the {source.label} token, or `-` to read it from standard input. A token given "
        f"here is visible to other users of this machine (ps) and kept in your shell history: "
        f"prefer `-`, {source.file_option} or {source.env}",
    )
    group.add_argument(
        source.file_option,
        type=Path,
        metavar="PATH",
        help=f"read the {source.label} token from this file (one line; keep it chmod 600)",
    )


def given(args: argparse.Namespace, source: TokenSource) -> bool:
    """Whether the command line names a source for this token (the environment aside)."""
    return _value(args, source) is not None or _file(args, source) is not None


def supplied(args: argparse.Namespace, source: TokenSource, settings: Settings) -> bool:
    """Whether any source holds this token: the command line or ARCHIVER_<FLAG>_TOKEN."""
    return given(args, source) or bool(_env(source, settings))


def read_token(
    args: argparse.Namespace,
    source: TokenSource,
    settings: Settings,
    stdin: TextIO | None = None,
) -> str:
    """The token from its one source; ConfigError (exit 2) for none, two, or a bad value."""
    value, path = _value(args, source), _file(args, source)
    env = _env(source, settings)
    named = [name for name, on in ((source.option, value), (source.file_option, path),
                                   (source.env, env)) if on]  # fmt: skip
    if len(named) > 1:
        msg = f"the {source.label} token is given by both {named[0]} and {named[1]}: give one"
        raise _usage(args, msg)
    if value == STDIN:
        return _from_stdin(source, stdin or sys.stdin)
    if value is not None:
        return _checked(value, source, f"{source.option}")
    if path is not None:
        return _from_file(path, source)
    if env:
        return _checked(env, source, source.env)
    msg = (
        f"the {source.label} token is missing: give {source.option} - (standard input), "
        f"{source.file_option} PATH, or set {source.env}"
    )
    raise _usage(args, msg)


def _env(source: TokenSource, settings: Settings) -> str:
    secret = getattr(settings, f"archiver_{source.flag}_token", None)
    return secret.get_secret_value() if secret is not None else ""


def _usage(args: argparse.Namespace, message: str) -> ConfigError:
    """A usage mistake, exit 2 like argparse's own, pointing at the command's --help."""
    parser: argparse.ArgumentParser | None = getattr(args, "parser", None)
    hint = f" (see `{parser.prog} --help`)" if parser is not None else ""
    return ConfigError(message + hint)


def _value(args: argparse.Namespace, source: TokenSource) -> str | None:
    found: str | None = getattr(args, f"{source.flag}_token", None)
    return found


def _file(args: argparse.Namespace, source: TokenSource) -> Path | None:
    found: Path | None = getattr(args, f"{source.flag}_token_file", None)
    return found


def _from_stdin(source: TokenSource, stdin: TextIO) -> str:
    """One line of standard input; on a terminal, a prompt that does not echo."""
    if stdin.isatty():
        line = getpass.getpass(f"{source.label} token: ")
    else:
        line = stdin.readline()
        if not line:
            msg = f"standard input ended before the {source.label} token ({source.option} -)"
            raise ConfigError(msg)
    return _checked(_one_newline_off(line), source, "standard input")


def _from_file(path: Path, source: TokenSource) -> str:
    where = f"{source.file_option} {path}"
    try:
        with path.open(encoding="utf-8") as file:
            text = file.read(MAX_FILE_CHARS + 1)
        mode = path.stat().st_mode
    except OSError as exc:
        msg = f"cannot read {where}: {exc.strerror or exc.__class__.__name__}"
        raise ConfigError(msg) from None
    except UnicodeDecodeError:
        msg = f"{where} is not UTF-8 text"
        raise ConfigError(msg) from None
    if len(text) > MAX_FILE_CHARS:
        msg = f"{where} is too large to hold a token ({MAX_FILE_CHARS} characters at most)"
        raise ConfigError(msg)
    if mode & 0o004:
        print(f"warning: {path} can be read by every user of this machine; chmod 600 it",
              file=sys.stderr)  # fmt: skip
    return _checked(_one_newline_off(text), source, where)


def _one_newline_off(text: str) -> str:
    """Strip the one line ending that `echo` and editors add; nothing else."""
    for ending in ("\r\n", "\n"):
        if text.endswith(ending):
            return text[: -len(ending)]
    return text


def _checked(token: str, source: TokenSource, where: str) -> str:
    """The token, unless it is empty or holds whitespace (never part of a Meta token)."""
    if not token:
        msg = f"the {source.label} token from {where} is empty"
        raise ConfigError(msg)
    if any(char.isspace() for char in token):
        msg = (
            f"the {source.label} token from {where} contains spaces or more than one line: "
            "give the token alone"
        )
        raise ConfigError(msg)
    return token
