"""The one JSON parser for signed webhook bodies: strict, so nothing the archive cannot store
gets past it.

Python's `json` is lenient where PostgreSQL is not: it reads `NaN`, `Infinity` and `1e400`
(jsonb refuses them), `\\u0000` (text and jsonb refuse it), lone surrogates such as `\\ud800`
(not Unicode; they cannot even be encoded as UTF-8), bytes in UTF-16 or with encoded
surrogates, and it recurses once per nesting level. Each of these is refused here with a
one-line reason, so a hostile or broken body ends `unparseable` instead of `failed`.
JSON itself is RFC 8259 (https://www.rfc-editor.org/rfc/rfc8259): UTF-8, finite numbers.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 64  # Meta's envelopes nest about 6 levels; a change value rarely more than 3
_SHOWN = 24  # characters of an offending literal quoted in the reason


class MalformedJSON(ValueError):
    """The body is not strict JSON; the message is one line and quotes no more than a few
    characters of the body."""


def loads(body: bytes) -> Any:
    """The document in `body`, or MalformedJSON saying why not."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"is not UTF-8 (byte {exc.start}: {exc.reason})"
        raise MalformedJSON(msg) from None
    try:
        doc = json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except RecursionError:
        msg = f"nests deeper than {MAX_DEPTH} levels"
        raise MalformedJSON(msg) from None
    except json.JSONDecodeError as exc:
        msg = f"is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        raise MalformedJSON(msg) from None
    _check_tree(doc)
    return doc


def _shown(literal: str) -> str:
    return literal if len(literal) <= _SHOWN else f"{literal[:_SHOWN]}... ({len(literal)} chars)"


def _constant(literal: str) -> Any:
    msg = f"holds {literal}, which JSON does not allow"
    raise MalformedJSON(msg)


def _float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        msg = f"holds the number {_shown(literal)}, beyond the range of a float"
        raise MalformedJSON(msg)
    return value


def _int(literal: str) -> int:
    try:
        value = int(literal)
        float(value)  # metric values are floats; an integer no float can hold is no count
    except (ValueError, OverflowError):  # ValueError: past Python's 4300-digit limit
        msg = f"holds the integer {_shown(literal)}, beyond the range of a float"
        raise MalformedJSON(msg) from None
    return value


def _check_tree(doc: Any) -> None:
    """Depth and every string (keys too), without recursion: a deep body cannot blow the
    stack here either."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list) and depth > MAX_DEPTH:
            msg = f"nests deeper than {MAX_DEPTH} levels"
            raise MalformedJSON(msg)
        if isinstance(node, dict):
            for key, value in node.items():
                _check_text(key)
                stack.append((value, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, str):
            _check_text(node)


def _check_text(text: str) -> None:
    if "\x00" in text:
        msg = "holds a NUL character (\\u0000), which the archive cannot store"
        raise MalformedJSON(msg)
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        msg = f"holds a lone surrogate (\\u{ord(text[exc.start]):04x}), which is not Unicode"
        raise MalformedJSON(msg) from None
