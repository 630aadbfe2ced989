"""Access tokens: issuing, expiring, ageing and refreshing them (the World's token half).

Meta's rules: long-lived tokens last 60 days; a refresh needs a token at least 24 h old and
unexpired and gives one lasting 60 days from the refresh
(https://developers.facebook.com/documentation/instagram-platform/reference/refresh_access_token,
https://developers.facebook.com/docs/threads/get-started/long-lived-tokens/)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from metasim.core import WorldCore
from metasim.entities import REFRESHED_EXPIRES_IN, Token
from models.errors import ConflictError, NotFoundError

UNSET: Any = object()  # "not given", where None means something (a token that never expires)
_TOKEN_PREFIX = {"facebook": "EAAG", "instagram": "IGAA", "threads": "THAA"}


class TokenBook(WorldCore):
    """Token methods of the World; tokens live in `self.tokens` (value -> Token)."""

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
        with self.lock:
            if value is not None and value in self.tokens:
                token = self.tokens[value]
                if token.kind != kind:
                    msg = f"token exists already for a {token.kind} login"
                    raise ConflictError(msg)
                token.owners.add(owner)
                return token
            issued = issued_at or self.now()
            if expires_at is UNSET:
                expires_at = issued + timedelta(seconds=self.config.token_lifetime_seconds)
            value = value or _TOKEN_PREFIX.get(kind, "EAAG") + secrets.token_urlsafe(30)
            token = Token(value, next(self._serials), kind, {owner}, issued, expires_at)
            self.tokens[value] = token
            return token

    def token(self, value: str) -> Token | None:
        with self.lock:
            return self.tokens.get(value)

    def _token_of(self, token: str | None, account: str | None, threads_user: str | None) -> Token:
        if token is None and account is not None:
            token = self.account(account).token
        if token is None and threads_user is not None:
            token = self.threads_user(threads_user).token
        found = self.tokens.get(token or "")
        if found is None:
            msg = "no such token"
            raise NotFoundError(msg)
        return found

    def expire_token(
        self,
        token: str | None = None,
        *,
        account: str | None = None,
        threads_user: str | None = None,
    ) -> Token:
        """Make a token (given, or an account's / Threads user's current one) expire now."""
        with self.lock:
            found = self._token_of(token, account, threads_user)
            found.expires_at = self.now() - timedelta(seconds=1)
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
        with self.lock:
            found = self._token_of(token, account, threads_user)
            found.issued_at = self.now() - timedelta(seconds=seconds)
            return found

    def refresh_token(self, old: Token) -> Token:
        """Issue the refreshed token (60 days from now) and make it the owners' current one.

        The old token keeps working until its own expiry [UNCERTAIN: Meta does not say].
        """
        with self.lock:
            now = self.now()
            new = self.issue_token(
                old.kind,
                next(iter(old.owners)),
                issued_at=now,
                expires_at=now + timedelta(seconds=REFRESHED_EXPIRES_IN),
            )
            new.owners = set(old.owners)
            for owner in old.owners:
                holder = self.accounts.get(owner) or self.threads_users.get(owner)
                if holder is not None:
                    holder.token = new.value
            return new
