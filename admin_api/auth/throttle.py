"""Failed token requests, counted per client and per source address, so guessing is refused early.

Every refused request to /auth/v1/token may have cost ~50 ms of scrypt.  After
CHAMICORE_TOKEN_FAILURES_PER_CLIENT failures for one client_id, or
CHAMICORE_TOKEN_FAILURES_PER_ADDRESS from one source address, within the last
CHAMICORE_TOKEN_FAILURE_WINDOW_S seconds, that client or address is answered
429 with Retry-After, before its body is looked at or any secret is hashed,
until its oldest counted failure leaves the window.

The counts are kept in memory, per admin process: with N workers or replicas
a guesser gets up to N times the limit, and a restart forgets them.  That
still bounds what guessing costs, which is the point; the audit keeps every
refusal that was looked at.  The answers that are 429 are not audited (a flood
of them would fill the audit); the refusal that starts a hold says so.
"""

from __future__ import annotations

import collections
import logging
import math
import time
from collections.abc import Callable

from core.bounded import clip
from core.config import Config
from core.problems import ProblemError

log = logging.getLogger("chamicore.admin.auth")
MAX_KEYS = 10_000  # clients or addresses remembered at once; the least recently failing are forgotten first


class FailureWindow:
    """Failure times per key, over a sliding window, for at most `max_keys` keys."""

    def __init__(self, limit: int, window_s: float, max_keys: int = MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self.clock = clock
        self._failures: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()

    def retry_after(self, key: str) -> int:
        """Whole seconds until `key` may be tried again; 0 when it may be now."""
        times = self._failures.get(key)
        if times is None:
            return 0
        now = self.clock()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0
        if len(times) < self.limit:
            return 0
        return max(1, math.ceil(times[0] + self.window_s - now))

    def failed(self, key: str) -> bool:
        """Count one failure of `key`; True when this one uses up its allowance."""
        times = self._failures.pop(key, None) or collections.deque(maxlen=self.limit)
        times.append(self.clock())
        self._failures[key] = times  # the most recently failing last
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)
        return self.retry_after(key) > 0


class TokenThrottle:
    """The two windows the token endpoint consults: one per client_id, one per source address."""

    def __init__(self, config: Config) -> None:
        window = config.token_failure_window_s
        self.clients = FailureWindow(config.token_failures_per_client, window)
        self.addresses = FailureWindow(config.token_failures_per_address, window)

    def check(self, address: str, client_id: str | None = None) -> None:
        """429 (with Retry-After) while the address, or the client when given, is held."""
        wait = self.addresses.retry_after(address)
        what = "from this address"
        if client_id is not None and (client_wait := self.clients.retry_after(clip(client_id))) > wait:
            wait, what = client_wait, "for this client_id"
        if wait:
            raise ProblemError(429, f"too many failed token requests {what}; retry in {wait} s",
                               type="urn:chamicore:problem:too-many-failed-token-requests",
                               headers={"Retry-After": str(wait)})

    def failed(self, address: str, client_id: str | None) -> list[str]:
        """Count a refused request; the names of the holds it starts ("client", "address")."""
        held = []
        if client_id is not None and self.clients.failed(clip(client_id)):
            held.append("client")
        if self.addresses.failed(address):
            held.append("address")
        if held:
            log.warning("token requests held for %.0f s after too many failures: %s (client_id %s, address %s)",
                        self.clients.window_s, " and ".join(held), clip(client_id), clip(address))
        return held
