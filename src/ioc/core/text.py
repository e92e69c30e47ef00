"""Vietnamese text folding for accent-insensitive search.

Citizens and operators type place names with or without diacritics, and with whatever
Unicode form their keyboard produces (Telex/VNI input methods emit precomposed NFC text,
copy-paste from PDFs often gives decomposed NFD). Folding both the query and the searched
text to the same plain form makes "Nui Quyet", "núi quyết" and "NÚI QUYẾT" all find
"Núi Quyết".
"""

from __future__ import annotations

import unicodedata

# "đ" is a letter of its own, not "d" plus a combining mark, so NFD leaves it alone and it
# has to be mapped explicitly.
_LETTER_MAP = str.maketrans({"đ": "d", "Đ": "d"})
_ASCII_LETTERS = str.maketrans({"đ": "d", "Đ": "D"})


def fold(s: str) -> str:
    """Fold ``s`` for search: no diacritics, ``đ``→``d``, lower case, single spaces.

    >>> fold("  Phường   Núi Quyết ")
    'phuong nui quyet'
    >>> fold("ĐẠI HUỆ")
    'dai hue'
    """
    # casefold() before decomposing: case folding can itself produce combining marks
    # ("İ" → "i" + dot above), which the next step must still see and drop.
    decomposed = unicodedata.normalize("NFD", s.translate(_LETTER_MAP).casefold())
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    # split() with no argument splits on every Unicode space (incl. NBSP from web forms).
    return " ".join(stripped.split())


def matches(query: str, text: str) -> bool:
    """Whether ``query`` occurs in ``text`` once both are folded.

    An empty or blank query matches everything, so an empty search box lists all items.
    """
    folded_query = fold(query)
    if not folded_query:
        return True
    return folded_query in fold(text)


def strip_accents(s: str) -> str:
    """``s`` without Vietnamese diacritics, keeping case and spacing: "Đông Vĩnh" → "Dong Vinh".

    For ASCII renderings meant to be read (English names, file names), where :func:`fold`
    would lose the capitals.
    """
    decomposed = unicodedata.normalize("NFD", s.translate(_ASCII_LETTERS))
    return unicodedata.normalize("NFC", "".join(ch for ch in decomposed if not unicodedata.combining(ch)))
