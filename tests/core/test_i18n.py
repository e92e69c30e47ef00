"""The translation catalogue: complete in both languages, Vietnamese first, safe fallbacks."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest
from starlette.requests import Request

from ioc.core import i18n
from ioc.core.i18n import (
    DEFAULT_LANGUAGE,
    LANGUAGES,
    Catalogue,
    catalogue,
    negotiate_language,
    normalize_language,
    translate,
)
from ioc.core.registry import Registry

PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _request(query: str = "", cookie: str | None = None, accept_language: str | None = None) -> Request:
    headers: list[tuple[bytes, bytes]] = []
    if cookie is not None:
        headers.append((b"cookie", f"ioc_lang={cookie}".encode()))
    if accept_language is not None:
        headers.append((b"accept-language", accept_language.encode()))
    scope = {"type": "http", "method": "GET", "path": "/", "query_string": query.encode(), "headers": headers}
    return Request(scope)


def test_languages_vietnamese_first() -> None:
    assert LANGUAGES == ("vi", "en")
    assert DEFAULT_LANGUAGE == "vi"


def test_vi_and_en_have_exactly_the_same_keys() -> None:
    vi = json.loads((i18n.LOCALES_DIR / "vi.json").read_text(encoding="utf-8"))
    en = json.loads((i18n.LOCALES_DIR / "en.json").read_text(encoding="utf-8"))
    assert set(vi) - set(en) == set(), "keys missing in en.json"
    assert set(en) - set(vi) == set(), "keys missing in vi.json"
    assert Catalogue.core().missing() == {"vi": [], "en": []}


def test_placeholders_agree_between_languages() -> None:
    vi = catalogue("vi")
    en = catalogue("en")
    for key, text in vi.items():
        assert set(PLACEHOLDER.findall(text)) == set(PLACEHOLDER.findall(en[key])), key


def test_no_empty_messages_and_vietnamese_is_nfc() -> None:
    for lang in LANGUAGES:
        for key, text in catalogue(lang).items():
            assert text.strip(), f"{lang}:{key} is empty"
            # Precomposed (NFC) text renders and searches consistently.
            assert unicodedata.normalize("NFC", text) == text, f"{lang}:{key} is not NFC"


def test_catalogue_files_have_no_duplicate_keys() -> None:
    for lang in LANGUAGES:
        pairs = json.loads(
            (i18n.LOCALES_DIR / f"{lang}.json").read_text(encoding="utf-8"), object_pairs_hook=lambda p: p
        )
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), f"duplicate keys in {lang}.json"


def test_translate_in_each_language() -> None:
    assert translate("app.tagline", "vi") == "Trung tâm điều hành đô thị thông minh"
    assert translate("app.tagline", "en") == "Smart City Operations Center"
    assert translate("auth.login", "vi") == "Đăng nhập"


def test_translate_fills_parameters_and_keeps_unknown_ones() -> None:
    assert translate("map.loaded", "vi", count=6) == "Đã tải 6 phường."
    assert translate("map.loaded", "en") == "{count} wards loaded."


def test_translate_falls_back_to_vietnamese_then_to_the_key() -> None:
    cat = Catalogue({"vi": {"only.vi": "Chỉ có tiếng Việt"}, "en": {}})
    assert cat.translate("only.vi", "en") == "Chỉ có tiếng Việt"
    assert cat.translate("nowhere", "en") == "nowhere"
    assert translate("no.such.key", "en") == "no.such.key"
    # An unknown language is treated as the default one.
    assert translate("auth.logout", "fr") == "Đăng xuất"


def test_malformed_message_does_not_raise() -> None:
    cat = Catalogue({"vi": {"bad": "Giá trị {oops"}})
    assert cat.translate("bad", "vi", x=1) == "Giá trị {oops"


def test_catalogue_returns_a_copy() -> None:
    messages = catalogue("vi")
    messages["app.name"] = "changed"
    assert translate("app.name", "vi") == "Vinh IOC"


@pytest.mark.parametrize(
    ("code", "expected"),
    [("vi", "vi"), ("EN", "en"), ("en-US", "en"), ("en_GB", "en"), ("fr", None), ("", None), (None, None)],
)
def test_normalize_language(code: str | None, expected: str | None) -> None:
    assert normalize_language(code) == expected


def test_negotiate_query_then_cookie_then_vietnamese() -> None:
    assert negotiate_language(_request()) == "vi"
    assert negotiate_language(_request("lang=en")) == "en"
    assert negotiate_language(_request(cookie="en")) == "en"
    assert negotiate_language(_request("lang=vi", cookie="en")) == "vi"
    assert negotiate_language(_request("lang=xx", cookie="en")) == "en"
    assert negotiate_language(_request(cookie="xx")) == "vi"


def test_accept_language_alone_does_not_switch_to_english() -> None:
    assert negotiate_language(_request(accept_language="en-US,en;q=0.9")) == "vi"


def test_registry_translations_are_merged() -> None:
    registry = Registry()
    registry.add_translations("vi", {"reports.title": "Phản ánh hiện trường"})
    registry.add_translations("en", {"reports.title": "Citizen reports"})
    cat = Catalogue.from_registry(registry)
    assert cat.translate("reports.title", "vi") == "Phản ánh hiện trường"
    assert cat.translate("reports.title", "en") == "Citizen reports"
    assert cat.translate("app.name", "en") == "Vinh IOC"
    assert "reports.title" in cat
    assert cat.subset("en", "reports.") == {"reports.title": "Citizen reports"}
    # The core catalogue is untouched by an app's additions.
    assert translate("reports.title", "vi") == "reports.title"


def test_registry_may_not_reword_a_core_message() -> None:
    registry = Registry()
    registry.add_translations("vi", {"app.name": "Tên khác"})
    with pytest.raises(ValueError, match="already defined"):
        Catalogue.from_registry(registry)


def test_incomplete_module_translations_are_reported() -> None:
    registry = Registry()
    registry.add_translations("vi", {"lighting.title": "Chiếu sáng công cộng"})
    cat = Catalogue.from_registry(registry)
    assert cat.missing() == {"vi": [], "en": ["lighting.title"]}
    assert cat.translate("lighting.title", "en") == "Chiếu sáng công cộng"


def test_unsupported_language_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        Catalogue({"fr": {"a": "b"}})
    cat = Catalogue.core()
    with pytest.raises(ValueError, match="unsupported"):
        cat.add("de", {"a": "b"})


def test_malformed_locale_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "vi.json"
    bad.write_text('{"a": 1}', encoding="utf-8")
    with pytest.raises(ValueError, match="flat JSON object"):
        i18n.load_locale_file(bad)
