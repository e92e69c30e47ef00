"""Vietnamese accent folding for search."""

from __future__ import annotations

import unicodedata

import pytest

from ioc.core.text import fold, matches, strip_accents


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        ("Núi Quyết", "nui quyet"),
        ("Nui Quyet", "nui quyet"),
        ("NÚI QUYẾT", "nui quyet"),
        ("Phường Đông Vĩnh", "phuong dong vinh"),
        ("ĐẠI HUỆ", "dai hue"),
        ("đường Lê Lợi", "duong le loi"),
        ("Nghi Thuỷ", "nghi thuy"),
        ("Nghi Thủy", "nghi thuy"),
        ("Ưu tiên Ơn", "uu tien on"),
        ("  Cửa \t Lò\n ", "cua lo"),
        ("Cửa\u00a0Lò", "cua lo"),  # no-break space from a web form
        ("", ""),
        ("16681", "16681"),
    ],
)
def test_fold(raw: str, folded: str) -> None:
    assert fold(raw) == folded


def test_fold_is_the_same_for_nfc_and_nfd_input() -> None:
    # Input methods give precomposed text, PDFs and macOS file names often decomposed.
    text = "Trường Vinh, Hưng Lộc, Nghi Ân, Đặng Thai Mai"
    assert fold(unicodedata.normalize("NFD", text)) == fold(unicodedata.normalize("NFC", text))
    assert fold(text) == "truong vinh, hung loc, nghi an, dang thai mai"


def test_fold_output_is_plain_ascii_for_every_vietnamese_letter() -> None:
    letters = "aăâbcdđeêghiklmnoôơpqrstuưvxy"
    tones = ["", "\u0300", "\u0301", "\u0303", "\u0309", "\u0323"]
    text = " ".join(unicodedata.normalize("NFC", ch + t) for ch in letters + letters.upper() for t in tones)
    assert fold(text).isascii()


def test_fold_drops_marks_produced_by_case_folding() -> None:
    assert fold("İnan") == "inan"


@pytest.mark.parametrize(
    ("query", "text", "expected"),
    [
        ("Nui Quyet", "Núi Quyết", True),
        ("nui quyet", "Khu du lịch Núi Quyết, Vinh", True),
        ("QUYET", "Núi Quyết", True),
        ("dong  vinh", "Phường Đông Vĩnh", True),
        ("Đông Vĩnh", "phuong dong vinh", True),
        ("vinh", "Phường Cửa Lò", False),
        ("nui quyet", "Núi Hồng", False),
        ("", "anything", True),
        ("   ", "anything", True),
    ],
)
def test_matches(query: str, text: str, expected: bool) -> None:
    assert matches(query, text) is expected


def test_strip_accents_keeps_case_and_spacing() -> None:
    assert strip_accents("Phường Đông Vĩnh") == "Phuong Dong Vinh"
    assert strip_accents("ĐẠI  huệ") == "DAI  hue"
