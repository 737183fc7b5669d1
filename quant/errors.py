"""The exception tree, split by what the caller must do.

::

    QuantbeatError                 base of everything quantbeat raises on purpose
    ├── TransientError             may succeed if tried again later: retry with backoff
    │   ├── ServiceUnavailable     a database, broker or provider could not be reached
    │   └── RateLimited            the provider asked us to slow down (carries ``retry_after``)
    ├── PermanentError             will fail the same way every time: fail fast, dead-letter
    │   ├── ValidationError        bad input: names the bad value and where it came from
    │   └── NotFound               a referenced row or instrument does not exist
    └── ConfigError                the operator must act (missing or contradictory settings)

Workers retry only :class:`TransientError` (exponential backoff with jitter, bounded); a
:class:`PermanentError` fails at once and is recorded. The CLI maps each family to one line on
stderr and an exit code (see ``quantbeat.cli.main``).
"""

from __future__ import annotations


class QuantbeatError(Exception):
    """Base class of every error quantbeat raises deliberately."""


class TransientError(QuantbeatError):
    """A failure that may pass if the same call is made again later.

    ``retry_after`` (seconds), when known, is the earliest sensible retry delay, for example
    from an HTTP ``Retry-After`` header; the retry policy never retries sooner than that.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailable(TransientError):
    """A dependency (database, broker, data provider) could not be reached or timed out."""


class RateLimited(TransientError):
    """The remote side throttled us (HTTP 429, an empty answer from a throttling provider)."""


class PermanentError(QuantbeatError):
    """A failure that will repeat on every attempt; retrying is pointless."""


class ValidationError(PermanentError):
    """Input that cannot be accepted.

    ``field`` names the offending value's place (an argument, a CSV column, a setting) and
    ``value`` the value itself, so the message can say exactly what was wrong and where.
    """

    def __init__(self, message: str, *, field: str | None = None, value: object = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class NotFound(PermanentError):
    """A referenced entity (instrument, run, row) does not exist."""


class ConfigError(QuantbeatError):
    """Settings are missing or contradict each other; an operator has to fix them."""
