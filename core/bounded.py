"""Bounds on what outside input may put into logs and the audit.

Clients choose request methods, paths, ids and bodies; BMCs choose what they
answer.  A value from outside is clipped before it goes into a log line or an
audit row, so that one request cannot write a megabyte line, or make the
audit insert fail (a value too large for its index) and go unrecorded.
"""

from __future__ import annotations

import logging
from typing import Any

MAX_VALUE_CHARS = 256  # one value (an id, a path, a reason); every valid id (255 characters at most) fits
MAX_LOG_MESSAGE_CHARS = 2048  # one log message, whatever its arguments


def clip(value: object, limit: int = MAX_VALUE_CHARS) -> str:
    """`value` as text, cut to `limit` characters and saying how much was cut."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...(+{len(text) - limit} characters)"


def bound_log_records() -> None:
    """Clip every log message of this process to MAX_LOG_MESSAGE_CHARS (call it once at start-up; idempotent).

    A safety net under the call sites, which clip the values they know come
    from outside: a message is formatted when its record is made and cut
    there, whichever logger, handler or library it passes through."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "clips_messages", False):
        return

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string stays the handler's to report
            return record
        if len(message) > MAX_LOG_MESSAGE_CHARS:
            record.msg, record.args = clip(message, MAX_LOG_MESSAGE_CHARS), None
        return record

    make_record.clips_messages = True  # type: ignore[attr-defined]  # a marker on the function: a second call sees it
    logging.setLogRecordFactory(make_record)
