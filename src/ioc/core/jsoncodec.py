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
from typing import Any

import orjson

#: Every byte that is an ASCII digit as ``0``, every other one as ``.``: a text so translated holds
#: a run of 19 zeros where it holds a run of digits that may be an integer beyond 64 bits (2**63
#: has 19). One C pass (``bytes.translate``), several times cheaper than a regular expression's
#: search, which had been most of the decoding of a small document.
_DIGITS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x2E for b in range(256))
_LONG_RUN = b"0" * 19


def _long_digits(raw: bytes) -> bool:
    return _LONG_RUN in raw.translate(_DIGITS)


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
    raw = bytes(text) if isinstance(text, bytes | bytearray | memoryview) else text
    probe = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    return json.loads(raw) if _long_digits(probe) else orjson.loads(raw)
