"""A token bucket for sends (over ``sendRatePerS`` → BUSY with retryAfterS). Pure."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    rate_per_s: float
    burst: float | None = None
    tokens: float = field(init=False)
    updated: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.rate_per_s <= 0:
            raise ValueError("rate must be positive")
        self.capacity = self.burst if self.burst is not None else max(1.0, self.rate_per_s)
        self.tokens = self.capacity

    def take(self, now: float) -> float:
        """Take one token: 0.0 on success, else the seconds until one is available."""
        if self.updated is not None:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate_per_s
