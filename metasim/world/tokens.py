"""Access tokens: issuing, expiring, ageing and refreshing them (the World's token half),
and what GET /debug_token says about one.

Meta's rules: long-lived tokens last 60 days; a refresh needs a token at least 24 h old and
unexpired and gives one lasting 60 days from the refresh
(https://developers.facebook.com/documentation/instagram-platform/reference/refresh_access_token,
https://developers.facebook.com/docs/threads/get-started/long-lived-tokens/).

/debug_token (https://developers.facebook.com/docs/graph-api/reference/debug_token) needs
"an app access token or an app developer's user access token for the app": the app token is
`APP_ID|APP_SECRET`, and a user token passes only when its user was made a developer
(`make_developer`); anything else is Meta's (#100). It reports `expires_at` (0: never, e.g.
a long-lived Page token) and `data_access_expires_at`, 90 days after the user last granted
access (https://developers.facebook.com/docs/facebook-login/auth-vs-data), here 90 days
after the token was issued. A dead input token is still an answer: `is_valid` false.
"""

from __future__ import annotations

import itertools
import secrets
import string
from datetime import datetime, timedelta
from typing import Any, Final

from metasim.world.entities import REFRESHED_EXPIRES_IN, Token
from metasim.world.state import Conflict, NotFound, WorldState

UNSET: Any = object()  # "not given", where None means something (a token that never expires)
# Meta's tokens are long mixed-case alphanumerics after a prefix per login: Facebook `EAA...`,
# Instagram Login `IGAA...`, Threads `TH...` (values of ~150-250 characters are common).
_TOKEN_PREFIX = {"facebook": "EAAG", "instagram": "IGAA", "threads": "THAA"}
_TOKEN_ALPHABET: Final = string.ascii_letters + string.digits
_TOKEN_CHARS: Final = 160
APP_ID: Final = "990000000000001"
APP_SECRET: Final = "metasim-app-secret-0123456789"
APP_NAME: Final = "metasim"
APP: Final = "app"  # the kind of an app access token
DATA_ACCESS: Final = timedelta(days=90)
SCOPES: Final = ("instagram_basic", "instagram_manage_insights", "pages_read_engagement")
UNPARSEABLE: Final = "Invalid OAuth access token - Cannot parse access token"


def app_token() -> str:
    """The simulated app's access token, `{app-id}|{app-secret}` as Meta builds it."""
    return f"{APP_ID}|{APP_SECRET}"


def _new_value(kind: str) -> str:
    body = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(_TOKEN_CHARS))
    return _TOKEN_PREFIX.get(kind, "EAAG") + body


def expired_message(expired_at: datetime, now: datetime) -> str:
    """Meta's words for an expired session (error 190, subcode 463)."""
    stamp = "%A, %d-%b-%y %H:%M:%S UTC"
    return (
        f"Error validating access token: Session has expired on {expired_at.strftime(stamp)}. "
        f"The current time is {now.strftime(stamp)}."
    )


def _stamp(moment: datetime | None) -> int:
    return 0 if moment is None else int(moment.timestamp())


class TokenBook:
    """The World's tokens, in `self.issued` (value -> Token), and the app's developers."""

    def __init__(self, state: WorldState) -> None:
        self.state = state
        self.reset()

    def reset(self) -> None:
        """Forget every token and developer."""
        self.issued: dict[str, Token] = {}
        self.developers: set[str] = set()  # owners whose user tokens may call /debug_token
        self._serials = itertools.count(1)

    def make_developer(self, owner: str) -> None:
        """Give an owner (IG account) a role on the app: its tokens may call /debug_token."""
        with self.state.lock:
            self.developers.add(str(owner))

    def issue_token(
        self,
        kind: str,
        owner: str,
        value: str | None = None,
        *,
        issued_at: datetime | None = None,
        expires_at: datetime | None = UNSET,
    ) -> Token:
        """A token for an owner; an existing token value gains the owner (agency tokens)."""
        with self.state.lock:
            if value is not None and value in self.issued:
                token = self.issued[value]
                if token.kind != kind:
                    msg = f"token exists already for a {token.kind} login"
                    raise Conflict(msg)
                token.owners.add(owner)
                return token
            issued = issued_at or self.state.now()
            if expires_at is UNSET:
                expires_at = issued + timedelta(seconds=self.state.config.token_lifetime_seconds)
            value = value or _new_value(kind)
            token = Token(value, next(self._serials), kind, {owner}, issued, expires_at)
            self.issued[value] = token
            return token

    def token(self, value: str) -> Token | None:
        """The token with this value; the app token exists once it is first used."""
        with self.state.lock:
            found = self.issued.get(value)
            if found is None and value == app_token():
                found = self.issue_token(APP, APP_ID, value, expires_at=None)
            return found

    def may_debug(self, token: Token) -> bool:
        """Whether a token may inspect others: the app's, or a developer's user token."""
        with self.state.lock:
            return token.kind == APP or (
                token.kind == "facebook" and bool(token.owners & self.developers)
            )

    def debug_token_data(self, value: str) -> dict[str, Any]:
        """The `data` of /debug_token for an input token."""
        with self.state.lock:
            found = self.issued.get(value)
            now = self.state.now()
        if found is None or found.kind not in ("facebook", APP):
            return {"error": {"code": 190, "message": UNPARSEABLE}, "is_valid": False,
                    "scopes": []}  # fmt: skip
        data: dict[str, Any] = {"app_id": APP_ID, "application": APP_NAME}
        if found.kind == APP:
            return data | {"type": "APP", "is_valid": True, "scopes": []}
        data |= {
            "type": "USER",
            "data_access_expires_at": _stamp(found.issued_at + DATA_ACCESS),
            "expires_at": _stamp(found.expires_at),
            "is_valid": not found.expired(now),
            "issued_at": _stamp(found.issued_at),
            "scopes": list(SCOPES),
            "user_id": min(found.owners),
        }
        if found.expired(now):
            message = expired_message(found.expires_at or now, now)
            data["error"] = {"code": 190, "subcode": 463, "message": message}
        return data

    def _token_of(self, token: str | None, account: str | None, threads_user: str | None) -> Token:
        if token is None and account is not None:
            token = self.state.account(account).token
        if token is None and threads_user is not None:
            token = self.state.threads_user(threads_user).token
        found = self.issued.get(token or "")
        if found is None:
            msg = "no such token"
            raise NotFound(msg)
        return found

    def older_token(self, current: Token) -> Token:
        """A token its owner held before `current` (issued 60 days before it, expired when it
        was issued, as a refresh leaves it); minted once when the world has none."""
        with self.state.lock:
            owner = min(current.owners)
            older = [
                t
                for t in self.issued.values()
                if t.kind == current.kind and owner in t.owners and t.issued_at < current.issued_at
            ]
            if older:
                return max(older, key=lambda t: t.issued_at)
            issued = current.issued_at - timedelta(days=60)
            return self.issue_token(
                current.kind, owner, issued_at=issued, expires_at=current.issued_at
            )

    def expire_token(
        self,
        token: str | None = None,
        *,
        account: str | None = None,
        threads_user: str | None = None,
    ) -> Token:
        """Make a token (given, or an account's / Threads user's current one) expire now."""
        with self.state.lock:
            found = self._token_of(token, account, threads_user)
            found.expires_at = self.state.now() - timedelta(seconds=1)
            return found

    def age_token(
        self,
        seconds: float,
        token: str | None = None,
        *,
        account: str | None = None,
        threads_user: str | None = None,
    ) -> Token:
        """Pretend a token was issued `seconds` ago (its expiry stays), e.g. to allow refresh."""
        with self.state.lock:
            found = self._token_of(token, account, threads_user)
            found.issued_at = self.state.now() - timedelta(seconds=seconds)
            return found

    def refresh_token(self, old: Token) -> Token:
        """Issue the refreshed token (60 days from now) and make it the owners' current one.

        The old token keeps working until its own expiry [UNCERTAIN: Meta does not say].
        """
        with self.state.lock:
            now = self.state.now()
            new = self.issue_token(
                old.kind,
                next(iter(old.owners)),
                issued_at=now,
                expires_at=now + timedelta(seconds=REFRESHED_EXPIRES_IN),
            )
            new.owners = set(old.owners)
            for owner in old.owners:
                holder = self.state.accounts.get(owner) or self.state.threads_users.get(owner)
                if holder is not None:
                    holder.token = new.value
            return new
