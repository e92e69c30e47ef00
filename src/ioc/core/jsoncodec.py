"""The JSON codec of stored documents and API answers: orjson, with the standard library where
orjson would change a value.

orjson encodes and decodes several times faster than :mod:`json`, which matters where thousands
of attribute documents pass per request. It differs in two places, both kept as :mod:`json` has
them: it refuses integers beyond 64 bits when encoding (:func:`dumps` then falls back), and it
decodes them as floats (:func:`loads` leaves texts with a run of 19 or more digits to
:mod:`json`, which keeps them exact). Its output is compact UTF-8, as our answers already were.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

#: A run of digits that may be an integer beyond 64 bits (2**63 has 19 digits).
_LONG_DIGITS = re.compile(r"[0-9]{19}")
_LONG_DIGITS_BYTES = re.compile(rb"[0-9]{19}")


def dumps_bytes(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON."""
    try:
        return orjson.dumps(value)
    except TypeError:  # an integer beyond 64 bits, or a key that is not a string
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def dumps(value: Any) -> str:
    """``value`` as compact JSON text."""
    return dumps_bytes(value).decode()


def loads(text: str | bytes) -> Any:
    """The value of a JSON text, integers of any size kept exact."""
    if isinstance(text, bytes | bytearray | memoryview):
        raw = bytes(text)
        return json.loads(raw) if _LONG_DIGITS_BYTES.search(raw) else orjson.loads(raw)
    return json.loads(text) if _LONG_DIGITS.search(text) else orjson.loads(text)
