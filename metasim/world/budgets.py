"""The World's throttling half: budgets per account and per app, blocks and denials on demand.

Budgets are rolling windows in which every call counts, refused ones included (see
metasim.world.limits): an account over its BUC budget answers 80002 and the app over its budget
answers code 4, each with `estimated_time_to_regain_access` in (simulated) minutes. A block
set on demand refuses every call of the app (code 4) or of one account (80002) for a while;
each call during it extends it, as Meta warns
(https://developers.facebook.com/docs/graph-api/overview/rate-limiting).
"""

from __future__ import annotations

from metasim.world.denials import Denial, Denials
from metasim.world.limits import Block, Charge, Limiter
from metasim.world.state import WorldState

PLATFORMS = ("instagram", "threads")


def app_key(platform: str) -> str:
    """The Meta app (Instagram, both hosts) and the Threads app have separate budgets."""
    if platform not in PLATFORMS:
        msg = f"platform must be one of {', '.join(PLATFORMS)}, not {platform!r}"
        raise ValueError(msg)
    return f"app:{platform}"


class Budgets:
    """The World's budgets, blocks and permission denials (all under the world's lock)."""

    def __init__(self, state: WorldState) -> None:
        self.state = state
        self.reset()

    def reset(self) -> None:
        """Forget every usage figure, block and denial."""
        self.limiter = Limiter()
        self.denials = Denials()

    def charge(self, ig_user_id: str) -> Charge:
        """Count one call against an account's budget (BUC, type instagram)."""
        with self.state.lock:
            budget = self.state.accounts[ig_user_id].calls_allowed(self.state.config.default_budget)
            return self.limiter.charge(
                ig_user_id,
                budget,
                self.state.clock(),
                self.window(),
                self.state.config.minute_seconds,
            )

    def charge_app(self, platform: str) -> Charge:
        """Count one call against the app's budget (Meta app and Threads app apart)."""
        with self.state.lock:
            return self.limiter.charge(
                app_key(platform),
                self.state.config.app_budget,
                self.state.clock(),
                self.app_window(),
                self.state.config.minute_seconds,
            )

    def peek(self, key: str, budget: int) -> Charge:
        """Any key's usage now (e.g. "app:instagram"), without counting a call."""
        window = self.app_window() if key.startswith("app:") else self.window()
        with self.state.lock:
            return self.limiter.peek(
                key, budget, self.state.clock(), window, self.state.config.minute_seconds
            )

    def usage(self, ig_user_id: str) -> Charge:
        """An account's usage now, without counting a call."""
        with self.state.lock:
            account = self.state.accounts.get(ig_user_id)
            default = self.state.config.default_budget
            return self.peek(ig_user_id, account.calls_allowed(default) if account else default)

    def window(self) -> float:
        """The length of an account's rolling window in seconds."""
        return self.state.config.window_minutes * self.state.config.minute_seconds

    def app_window(self) -> float:
        """The length of the app's rolling window in seconds."""
        return self.state.config.app_window_minutes * self.state.config.minute_seconds

    def set_budget(
        self, ig_user_id: str, calls: int | None = None, *, impressions: int | None = None
    ) -> None:
        """Calls per window for one account, or its impressions (budget 4800 * impressions);
        neither: the world's default_budget."""
        with self.state.lock:
            account = self.state.account(ig_user_id)
            account.budget, account.impressions = calls, impressions

    def block(
        self,
        seconds: float,
        *,
        account: str | None = None,
        platform: str = "instagram",
        extend_seconds: float | None = None,
    ) -> Block:
        """Refuse calls for `seconds`: the whole app of `platform` (code 4), or one IG
        account (80002). Each call during the block pushes its end to at least
        `extend_seconds` (default: `seconds`) after that call."""
        key = app_key(platform) if account is None else self.state.account(account).ig_user_id
        extend = seconds if extend_seconds is None else extend_seconds
        with self.state.lock:
            return self.limiter.block(key, self.state.clock(), seconds, extend)

    def blocks(self) -> dict[str, dict[str, float]]:
        """The blocks in force, by key ("app:instagram", or an IG account id)."""
        with self.state.lock:
            now = self.state.clock()
            return {k: b.to_dict(now) for k, b in self.limiter.blocks.items() if b.until > now}

    def clear_blocks(self) -> None:
        with self.state.lock:
            self.limiter.blocks.clear()

    def deny(
        self,
        account: str,
        *,
        code: int = 10,
        kind: str | None = None,
        permission: str | None = None,
        message: str | None = None,
    ) -> Denial:
        """Answer the calls of `account` (an IG account or Threads user; of route `kind`, or
        all) with a permission error, `code` 10 or 200-299, worded by `message` or naming
        `permission`, until allow()."""
        denial = Denial(str(account), code, kind, permission, message)
        with self.state.lock:
            if self.state.lookup(denial.account) is None:
                self.state.account(denial.account)  # raises NotFound
            return self.denials.add(denial)

    def allow(self, account: str, kind: str | None = None) -> int:
        """Grant again what deny() took (one route kind, or all); how many denials went."""
        with self.state.lock:
            return self.denials.remove(str(account), kind)

    def denial(self, account: str | None, kind: str) -> Denial | None:
        with self.state.lock:
            return self.denials.find(account, kind)
