"""Structured logs are one JSON object a line."""

from __future__ import annotations

import json
import logging

from ioc.core.logs import JsonFormatter


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
