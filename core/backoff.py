"""Exponential backoff with jitter: one formula for every retry loop.

Jitter spreads the retries of many processes (every boot-path worker after a
PostgreSQL restart, say) so they do not arrive together.
"""

from __future__ import annotations

import random

MAX_EXPONENT = 16


def delay(attempt: int, base: float, cap: float, jitter: tuple[float, float] = (0.5, 1.0)) -> float:
    """Seconds to wait before retry number `attempt` (0 for the first)."""
    return min(cap, base * 2 ** min(attempt, MAX_EXPONENT)) * random.uniform(*jitter)


class Backoff:
    """The attempts of one retry loop: `next()` gives the next delay, `reset()` after a success."""

    def __init__(self, base: float, cap: float, jitter: tuple[float, float] = (0.5, 1.0)) -> None:
        self.base, self.cap, self.jitter = base, cap, jitter
        self.attempt = 0

    def next(self) -> float:
        seconds = delay(self.attempt, self.base, self.cap, self.jitter)
        self.attempt = min(self.attempt + 1, MAX_EXPONENT)
        return seconds

    def reset(self) -> None:
        self.attempt = 0
