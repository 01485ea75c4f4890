"""Log format: JSON lines in production, readable text in development; every record carries
the id of the request it was logged for.

The standard library's logging with a small formatter rather than structlog: uvicorn, authlib
and Strawberry all log through the standard library, the filters that keep credentials out of
the log (api/middleware.py) are standard logging filters, and a formatter on the one root
handler puts every library's records in the same shape without a second logging pipeline.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

# Set by the request middleware (api/middleware.py) for the life of one request.
REQUEST_ID: ContextVar[str | None] = ContextVar("coalition_request_id", default=None)

# A caller's X-Request-ID is kept when it looks like an id: it goes into a response header
# and every log line of the request, so no spaces, quotes or control characters, and short.
_SANE_ID = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")

# What every LogRecord has: anything else on a record came in `extra=` and is a field.
_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "request_id", "taskName", "color_message"}
)


def request_id_from(header: bytes | str | None) -> str:
    """The caller's id when it sent a sane one, else a new one."""
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    if header and _SANE_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def _stamp_request_ids() -> None:
    """Every record is created with the current request's id (None outside a request), so
    each handler (the console's, pytest's capture) sees it, whoever logged the record."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "stamps_request_id", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = REQUEST_ID.get()
        return record

    factory.stamps_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


_stamp_request_ids()


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request_id, then the record's
    `extra=` fields (the access log's method, route, status, duration_ms, ...)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        try:
            return orjson.dumps(entry, default=str).decode()
        except (orjson.JSONEncodeError, TypeError):
            # A lone surrogate a client sent, quoted in a message: orjson refuses it.
            return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Development: `time LEVEL logger message [request id]`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = getattr(record, "request_id", None)
        if request_id:
            first, newline, rest = text.partition("\n")
            text = f"{first} [{request_id}]{newline}{rest}"
        return text


def configure_logging(*, production: bool, level: int | str = logging.INFO) -> None:
    """One handler on the root logger (stderr) in the environment's format; uvicorn's own
    loggers are sent to it too, so a production log is JSON from the first line. Safe to
    call again (the handler is replaced, not added)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if production else TextFormatter())
    root = logging.getLogger()
    # An earlier call's (or basicConfig's) handler would print each record a second time.
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
