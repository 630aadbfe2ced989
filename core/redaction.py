"""The one scrubber: every text that leaves the process (logs, stderr, `archiver status`) or
enters the database (errors, problems, reasons, snapshot `raw`) goes through `scrub`, so a
token Meta quotes back in an error never lands anywhere in clear. One mask, `[REDACTED]`.

What it masks: known secret values passed in; the value of every token-bearing parameter
(`access_token=`, `input_token=`, `client_secret=`, `fb_exchange_token=` ...); `"...token":
"..."` pairs in JSON and reprs; bearer headers; signature headers (`sha256=<hex>`); app tokens
(`{app-id}|{app-secret}`, https://developers.facebook.com/docs/facebook-login/guides/access-tokens#apptokens);
and bare Meta tokens by their prefixes: Facebook Login `EAA...`, Instagram Login `IGAA...` (and
the older `IGQ...`), Threads `TH...` (https://developers.facebook.com/docs/instagram-platform/reference/access_token,
https://developers.facebook.com/docs/threads/get-started/get-access-tokens-and-permissions).
`models.accounts.mask_token` is not a scrubber: it shows our own tokens' first and last
characters in `archiver accounts list`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

MASK = "[REDACTED]"

_PARAMS = (
    r"(?:access|input|fb_exchange|refresh|verify|client)_token|client_secret|appsecret_proof"
    r"|hub\.verify_token|code_verifier"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Query strings and form bodies, plain or percent-encoded once (`%3Faccess_token%3D...`)
    # (a mask already there is left alone: scrubbing twice changes nothing).
    (
        re.compile(rf"(?i)({_PARAMS})(=|%3D)(?!{re.escape(MASK)})[^&\s\"'<>\\;,()]+"),
        rf"\1\2{MASK}",
    ),
    # JSON and reprs, escaped or not: "access_token": "...", 'ig_token': '...', \"x\": \"..\"
    (
        re.compile(
            r"(?i)((?:\w*(?:token|secret|password)|x-hub-signature(?:-256)?)\\?[\"']?\s*[:=]\s*)"
            r"(\\?[\"'])[^\"'\\]*\2"
        ),
        rf"\1\2{MASK}\2",
    ),
    # Signature headers: sha256=<hex>, sha1=<hex>
    (re.compile(r"(?i)\b(sha(?:256|1))=[0-9a-f]{8,}"), rf"\1={MASK}"),
    (re.compile(r"(?i)\b(bearer|oauth)\s+[A-Za-z0-9._~+/-]{8,}=*"), rf"\1 {MASK}"),
    # App tokens: {app-id}|{app-secret} (or |{client-token}).
    (re.compile(r"\b\d{6,}\|[A-Za-z0-9_-]{16,}"), MASK),
    # Bare Meta tokens: long and mixed-case, unlike constants such as THREADS_APP_SECRET.
    (re.compile(r"\b(?:EAA|IGQ|IGAA|TH)(?=[A-Za-z0-9_-]*[a-z])[A-Za-z0-9_-]{20,}"), MASK),
)
# A log record's own attributes; any other is an `extra` field, scrubbed like the message.
RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# Keys whose string values are secrets wherever they appear in a JSON-like value.
_SECRET_KEY = re.compile(
    r"(?i)(?:^|[_.-])(?:token|secret|password|proof)$|^x-hub-signature(?:-256)?$|^authorization$"
)


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with the `secrets` given and anything shaped like a token or signature masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def scrub_optional(text: str | None, secrets: Iterable[str | None] = ()) -> str | None:
    """`scrub` for a nullable column or field: None stays None."""
    return None if text is None else scrub(text, secrets)


def scrub_json(value: Any, secrets: Iterable[str | None] = ()) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings, numbers) with every string
    scrubbed and the string under a secret-named key (`access_token`, `client_secret`, ...)
    masked whole. Iterative, so a deeply nested body cannot exhaust the stack."""
    known = tuple(s for s in secrets if s)
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, bool]] = [(value, root, 0, False)]
    while stack:
        item, parent, key, secret = stack.pop()
        copy: Any = item
        if isinstance(item, dict):
            copy = dict.fromkeys(item)  # keeps the key order; values filled in below
            stack += [(v, copy, k, isinstance(k, str) and bool(_SECRET_KEY.search(k)))
                      for k, v in item.items()]  # fmt: skip
        elif isinstance(item, list | tuple):
            copy = [None] * len(item)
            stack += [(v, copy, i, secret) for i, v in enumerate(item)]
        elif isinstance(item, str):
            copy = MASK if secret else scrub(item, known)
        parent[key] = copy
    return root[0]


class RedactingFilter(logging.Filter):
    """Scrubs the message, its args, string `extra` fields and the traceback of a record.

    The message is rendered once here (args merged in) so a token passed as a lazy `%s`
    argument is caught too; the record is then passed on with no args left to merge.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # bad %-args: still mask what there is
            message = f"{record.msg} {record.args}"
        record.msg = scrub(message, self.secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info, self.secrets)
        extras = {key: value for key, value in vars(record).items() if key not in RECORD_ATTRS}
        for key, value in scrub_json(extras, self.secrets).items():
            setattr(record, key, value)
        return True
