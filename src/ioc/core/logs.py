"""Structured JSON logs, one object a line, for the service and its access log."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a call added to its record (``extra=``)."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """Format a record as JSON with time (UTC), level, logger, message and any extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``LEVEL logger: message key=value …``: one line a record for a terminal, with its extra
    fields (an access-log line says which request it was)."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        if not extras:
            return line
        head, sep, tail = line.partition("\n")  # a traceback stays below the fields
        fields = " ".join(f"{k}={v}" for k, v in extras.items())
        return f"{head} {fields}{sep}{tail}"


def _lean_records() -> None:
    """Records without the process, thread and task names, which no formatter here shows and
    each record would otherwise look up (a fifth of the cost of an access-log line)."""
    logging.logProcesses = False
    logging.logThreads = False
    logging.logMultiprocessing = False


def configure(json_logs: bool = True, level: str = "INFO") -> None:
    """Send the root, ``ioc`` and uvicorn loggers to stderr, as JSON unless told otherwise."""
    _lean_records()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_logs else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # Alembic narrates every step at INFO; `ioc migrate` prints its own progress.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def uvicorn_log_config(json_logs: bool) -> dict[str, Any]:
    """A logging config for uvicorn's own loggers, in the same JSON format."""
    _lean_records()
    fmt = {"()": "ioc.core.logs.JsonFormatter" if json_logs else "ioc.core.logs.TextFormatter"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": fmt},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["default"], "level": "INFO"},
        "loggers": {
            "uvicorn": {"level": "INFO"},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"level": "WARNING"},  # ioc.access logs each request, with timing
        },
    }
