"""Errors as users see them: one line (README: bad input gives one line naming the problem and the fix)."""

from __future__ import annotations

LIMIT = 400  # characters; longer messages end in "..."


def one_line(exc: BaseException, *, with_type: bool = False, limit: int = LIMIT) -> str:
    """The exception's message on one line (whitespace runs collapsed), cut at `limit` characters;
    `with_type` prefixes the exception's class name, for messages that would be ambiguous without it."""
    text = " ".join((f"{type(exc).__name__}: {exc}" if with_type else str(exc)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class StoreError(Exception):
    """A problem with the store or a query, worded as one line that says what to do."""
