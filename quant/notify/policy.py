"""The delivery policy: when a failed delivery is tried again, and when it is given up.

Pure; the dispatcher (:mod:`quantbeat.services.notify`) applies it.
"""

from __future__ import annotations

from dataclasses import dataclass

from quant.errors import ValidationError


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: attempt ``n`` (1-based) that failed transiently waits
    ``base × 2^(n−1)`` seconds, at most ``cap``, and never less than the provider's
    ``retry_after``; after ``max_attempts`` attempts the delivery is failed.

    Raises:
        quant.errors.ValidationError: ``max_attempts`` < 1, ``base`` ≤ 0 or ``cap`` < ``base``.
    """

    max_attempts: int = 8
    base: float = 2.0
    cap: float = 600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValidationError(
                f"max_attempts must be >= 1, got {self.max_attempts}",
                field="max_attempts",
                value=self.max_attempts,
            )
        if not self.base > 0:
            raise ValidationError(f"base must be > 0 s, got {self.base}", field="base")
        if self.cap < self.base:
            raise ValidationError(f"cap must be >= base, got {self.cap}", field="cap")

    def delay(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the ``attempts``-th attempt failed transiently."""
        backoff = min(self.cap, self.base * 2.0 ** max(0, attempts - 1))
        return max(backoff, retry_after or 0.0)

    def exhausted(self, attempts: int) -> bool:
        """Whether ``attempts`` attempts are all a delivery gets."""
        return attempts >= self.max_attempts
