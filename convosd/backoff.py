"""Restart delays: exponential with a cap and jitter, reset after a stable run. Pure.

Delay for attempt n (1-based) = min(cap, initial * factor**(n-1)) * (1 ± jitter). A child that
stayed up at least ``stable_after_s`` starts again from attempt 1, so a crash a day never
grows the delay, while a crash loop settles at the cap and costs one spawn a minute.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    initial_s: float = 0.5
    factor: float = 2.0
    cap_s: float = 60.0
    jitter: float = 0.2
    stable_after_s: float = 30.0

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.factor < 1 or self.cap_s < self.initial_s:
            raise ValueError("backoff needs initial > 0, factor >= 1 and cap >= initial")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")

    def base_delay(self, attempt: int) -> float:
        """The delay before ``attempt`` (1-based), without jitter."""
        if attempt < 1:
            raise ValueError("attempt is 1-based")
        # Bound the exponent so huge attempt counts cannot overflow a float.
        exponent = min(attempt - 1, 64)
        return float(min(self.cap_s, self.initial_s * self.factor**exponent))

    def delay(self, attempt: int, rng: random.Random) -> float:
        spread = self.jitter * (2 * rng.random() - 1)
        return self.base_delay(attempt) * (1 + spread)


@dataclass
class Backoff:
    """Counts attempts for one child. ``rng`` is injectable for deterministic tests."""

    policy: BackoffPolicy = field(default_factory=BackoffPolicy)
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def on_exit(self, uptime_s: float) -> float:
        """The child exited after ``uptime_s`` seconds up: the delay before the next start."""
        if uptime_s >= self.policy.stable_after_s:
            self.attempt = 0
        self.attempt += 1
        return self.policy.delay(self.attempt, self.rng)

    def reset(self) -> None:
        self.attempt = 0
