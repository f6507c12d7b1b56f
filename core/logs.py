"""How every service logs: plain lines on a terminal, or JSON lines for a log collector.

    configure(config, "admin")   # once, at a service's start

CHAMICORE_LOG_FORMAT=json gives one JSON object a line (`ts`, `level`,
`service`, `logger`, `msg`, `request_id`, `trace_id`, `span_id` while a span
is current, and `exc` with a traceback), never a line break inside one: a
collector reads each line as one record.  The request and trace ids come from
context variables that the admin API sets for the request being handled, and
the trace and span ids from the current span when tracing is on
(core/tracing.py); the boot path sets none per request (its requests are not
logged one by one, and its speed is the product).
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from contextvars import ContextVar
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from core import tracing
from core.bounded import bound_log_records

if TYPE_CHECKING:
    from core.config import Config

# Set by the admin API for the request a task is handling (admin_api/requestid.py).
REQUEST_ID: ContextVar[str | None] = ContextVar("chamicore_request_id", default=None)
TRACE_ID: ContextVar[str | None] = ContextVar("chamicore_trace_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
HANDLER_NAME = "chamicore"  # the one handler configure() owns on the root logger


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class TextFormatter(logging.Formatter):
    """The classic line, with ` [req=<id>]` while a request is being handled."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        line = super().formatMessage(record)
        request_id = REQUEST_ID.get()
        return f"{line} [req={request_id}]" if request_id else line


class JsonFormatter(logging.Formatter):
    """One JSON object a line; json.dumps escapes every line break (and non-ASCII) inside a value."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        entry: dict[str, Any] = {
            "ts": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": REQUEST_ID.get(),
            "trace_id": TRACE_ID.get(),
        }
        span = tracing.ids()  # the current span's, when tracing is on
        if span is not None:
            entry["trace_id"], entry["span_id"] = span
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def formatter(log_format: str, service: str) -> logging.Formatter:
    """The formatter for CHAMICORE_LOG_FORMAT (also named by granian's logging configuration)."""
    return JsonFormatter(service) if LogFormat(log_format) is LogFormat.JSON else TextFormatter()


def configure(config: Config, service: str) -> None:
    """Route this process's logs to stderr in the configured format and level (idempotent).

    Replaces only the handler it installed before, so a test's capture
    handler (pytest's caplog) stays."""
    bound_log_records()  # values from outside are clipped before any handler sees them
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(formatter(config.log_format, service))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.log_level.upper())


def granian_logging(config: Config, service: str) -> dict[str, Any]:
    """granian's dictConfig: its own lines (start, workers, stop) in the same format, to stderr too."""
    handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": HANDLER_NAME}
    return {
        "formatters": {HANDLER_NAME: {"()": formatter, "log_format": config.log_format, "service": service}},
        "handlers": {"console": dict(handler), "access": dict(handler)},
        "loggers": {
            "_granian": {"handlers": ["console"], "level": config.log_level.upper(), "propagate": False},
            "granian.access": {"handlers": ["access"], "level": config.log_level.upper(), "propagate": False},
        },
    }
