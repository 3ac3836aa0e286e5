"""The store's clock: naive UTC datetimes, and one switch for tests and the demo to move time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

_source: Callable[[], datetime] | None = None


def now() -> datetime:
    if _source is not None:
        return _source()
    return datetime.now(UTC).replace(tzinfo=None)


def set_clock(source: Callable[[], datetime] | None) -> None:
    """Replace the clock (None restores the real one). Returned datetimes must be naive UTC."""
    global _source
    _source = source


def naive_utc(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        return dt
    if dt.tzinfo is UTC:  # what the connectors produce: no conversion needed
        return dt.replace(tzinfo=None)
    return dt.astimezone(UTC).replace(tzinfo=None)
