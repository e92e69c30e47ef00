"""Structured logs are one JSON object a line; the terminal's text lines keep the same fields."""

from __future__ import annotations

import json
import logging

from ioc.core.logs import JsonFormatter, TextFormatter, configure


def test_json_formatter_keeps_extra_fields_and_vietnamese() -> None:
    record = logging.LogRecord("ioc.access", logging.INFO, __file__, 1, "yêu cầu %s", ("GET",), None)
    record.path = "/api/v1/alarms"
    record.status = 200
    doc = json.loads(JsonFormatter().format(record))
    assert doc["message"] == "yêu cầu GET"
    assert doc["level"] == "info" and doc["logger"] == "ioc.access"
    assert doc["path"] == "/api/v1/alarms" and doc["status"] == 200
    assert doc["time"].endswith("+00:00")


def test_json_formatter_includes_the_exception() -> None:
    try:
        raise ValueError("hỏng")
    except ValueError:
        import sys

        record = logging.LogRecord("ioc", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    doc = json.loads(JsonFormatter().format(record))
    assert "ValueError: hỏng" in doc["exc"]


def test_text_formatter_shows_the_extra_fields_before_a_traceback() -> None:
    record = logging.LogRecord("ioc.access", logging.INFO, __file__, 1, "request", (), None)
    record.method = "GET"
    record.status = 404
    assert TextFormatter().format(record) == "INFO ioc.access: request method=GET status=404"
    try:
        raise ValueError("hỏng")
    except ValueError:
        import sys

        failed = logging.LogRecord("ioc", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    failed.job = "kpi.snapshot"
    first, rest = TextFormatter().format(failed).split("\n", 1)
    assert first == "ERROR ioc: failed job=kpi.snapshot"
    assert rest.startswith("Traceback") and "ValueError: hỏng" in rest


def test_records_skip_the_names_no_formatter_shows() -> None:
    saved = logging.logProcesses, logging.logThreads, logging.logMultiprocessing
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure(json_logs=False)
        record = logging.getLogger("ioc").makeRecord("ioc", logging.INFO, __file__, 1, "x", (), None)
        assert record.processName is None and record.threadName is None and record.process is None
    finally:
        logging.logProcesses, logging.logThreads, logging.logMultiprocessing = saved
        root.handlers[:] = handlers
        root.setLevel(level)
