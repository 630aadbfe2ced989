"""Meta's `X-Hub-Signature-256` as pure code: no I/O, no parsing, raw bytes only.

Meta signs the exact bytes it sends (escaped unicode, lowercase hex), so the HMAC is taken over
the raw request body and never over re-serialised JSON.
https://developers.facebook.com/docs/graph-api/webhooks/getting-started
"""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "sha256="
_HEX_LEN = 64


def sign(body: bytes, secret: str) -> str:
    """The header value Meta would send for `body`: `sha256=<lowercase hex>`."""
    return PREFIX + hmac.digest(secret.encode(), body, hashlib.sha256).hex()


def verify(body: bytes, header: str | None, secret: str) -> bool:
    """True when `header` is a valid SHA-256 signature of `body` keyed with `secret`.

    Hex case is ignored (it is the same number); anything else malformed is simply invalid.
    """
    if not header or len(header) != len(PREFIX) + _HEX_LEN:
        return False
    if header[: len(PREFIX)].lower() != PREFIX:
        return False
    given = header[len(PREFIX) :].lower()
    if not given.isascii():  # compare_digest refuses non-ASCII str; such a header is wrong anyway
        return False
    expected = hmac.digest(secret.encode(), body, hashlib.sha256).hex()
    return hmac.compare_digest(expected, given)
