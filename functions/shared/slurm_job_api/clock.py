"""Wall-clock time as the API and the records show it (UTC, ISO 8601, to the millisecond)."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """2026-11-25T02:01:15.123Z: sortable as text, which the owner index relies on."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
