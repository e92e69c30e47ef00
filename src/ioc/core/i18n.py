"""The translation catalogue: every user-facing text of the UI, in Vietnamese and English.

Vietnamese is the default language and the reference: a key missing in English falls back
to Vietnamese, and a key missing everywhere falls back to the key itself (visible, so a
forgotten entry is noticed rather than hidden).

The core's messages live in ``ioc/core/locales/{vi,en}.json`` (flat ``{"key": "text"}``
objects; ``{name}`` placeholders are filled from keyword arguments). Modules add their own
through :meth:`ioc.core.registry.Registry.add_translations`; :meth:`Catalogue.from_registry`
merges both. The app factory keeps one :class:`Catalogue` per app; the module-level
:func:`translate` and :func:`catalogue` use the core messages only.

The language of a request is chosen by :func:`negotiate_language`: ``?lang=`` first, then
the ``ioc_lang`` cookie set by the language switch, then Vietnamese. ``Accept-Language`` is
deliberately not consulted: the product is Vietnamese first, and a page whose language does
not depend on browser headers is predictable for staff and cacheable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

    from ioc.core.registry import Registry

#: The UI languages, the default first.
LANGUAGES: Final = ("vi", "en")
#: The language used when nothing else is asked for.
DEFAULT_LANGUAGE: Final = "vi"
#: The cookie set by the language switch (``GET /lang/{code}``).
LANG_COOKIE: Final = "ioc_lang"
#: The query parameter that chooses the language for one request.
LANG_QUERY: Final = "lang"

LOCALES_DIR: Final = Path(__file__).with_name("locales")


class _KeepMissing(dict[str, object]):
    """Format mapping that leaves unknown ``{placeholders}`` as they are instead of failing."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _format(message: str, params: Mapping[str, object]) -> str:
    if not params:
        return message
    try:
        return message.format_map(_KeepMissing(params))
    except (ValueError, IndexError, AttributeError):
        # A malformed message (stray brace) must not break a page: show it unformatted.
        return message


def normalize_language(code: str | None) -> str | None:
    """``code`` as one of :data:`LANGUAGES` (``"EN"``, ``"en-US"`` → ``"en"``), or None."""
    if not code:
        return None
    primary = code.strip().lower().replace("_", "-").split("-", 1)[0]
    return primary if primary in LANGUAGES else None


def load_locale_file(path: Path) -> dict[str, str]:
    """Read one flat ``{"key": "text"}`` JSON catalogue file; raises ValueError if malformed."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError(f"{path}: expected a flat JSON object of strings")
    return dict(data)


class Catalogue:
    """Messages per language, with Vietnamese as the fallback of every other language."""

    def __init__(self, messages: Mapping[str, Mapping[str, str]]) -> None:
        unknown = sorted(set(messages) - set(LANGUAGES))
        if unknown:
            raise ValueError(f"unsupported language(s) in catalogue: {', '.join(unknown)}")
        self._messages: dict[str, dict[str, str]] = {lang: dict(messages.get(lang, {})) for lang in LANGUAGES}

    @classmethod
    def core(cls) -> Catalogue:
        """The catalogue of the core's own files (``ioc/core/locales``)."""
        return cls(_core_messages())

    @classmethod
    def from_registry(cls, registry: Registry | None) -> Catalogue:
        """The core's messages plus the translations that modules registered."""
        catalogue = cls.core()
        if registry is not None:
            for lang, messages in registry.translations.items():
                catalogue.add(lang, messages)
        return catalogue

    def add(self, lang: str, messages: Mapping[str, str]) -> None:
        """Merge ``messages`` into ``lang``.

        A key that already exists with a *different* text is refused (ValueError): modules
        namespace their keys (``reports.title``) and may not silently reword the core's.
        """
        if lang not in LANGUAGES:
            raise ValueError(f"unsupported language {lang!r}; expected one of {LANGUAGES}")
        target = self._messages[lang]
        for key, text in messages.items():
            if key in target and target[key] != text:
                raise ValueError(f"translation {lang}:{key!r} is already defined with another text")
            target[key] = text

    def translate(self, key: str, lang: str, **params: object) -> str:
        """The text of ``key`` in ``lang`` (else Vietnamese, else the key), with ``params`` filled in."""
        language = normalize_language(lang) or DEFAULT_LANGUAGE
        message = self._messages[language].get(key)
        if message is None:
            message = self._messages[DEFAULT_LANGUAGE].get(key, key)
        return _format(message, params)

    def messages(self, lang: str) -> dict[str, str]:
        """Every message of ``lang`` with Vietnamese filling the gaps (a copy)."""
        language = normalize_language(lang) or DEFAULT_LANGUAGE
        merged = dict(self._messages[DEFAULT_LANGUAGE])
        merged.update(self._messages[language])
        return merged

    def subset(self, lang: str, prefix: str) -> dict[str, str]:
        """The messages of ``lang`` whose key starts with ``prefix`` (e.g. for a page's script)."""
        return {k: v for k, v in self.messages(lang).items() if k.startswith(prefix)}

    def keys(self, lang: str) -> frozenset[str]:
        """The keys defined in ``lang`` itself (without fallback)."""
        return frozenset(self._messages[lang])

    def missing(self) -> dict[str, list[str]]:
        """For each language, the keys that another language has and it lacks (empty when complete)."""
        every = set().union(*(self._messages[lang] for lang in LANGUAGES))
        return {lang: sorted(every - set(self._messages[lang])) for lang in LANGUAGES}

    def __contains__(self, key: object) -> bool:
        return any(key in self._messages[lang] for lang in LANGUAGES)


@cache
def _core_messages() -> dict[str, dict[str, str]]:
    return {lang: load_locale_file(LOCALES_DIR / f"{lang}.json") for lang in LANGUAGES}


@cache
def _core_catalogue() -> Catalogue:
    return Catalogue.core()


def translate(key: str, lang: str, **params: object) -> str:
    """Translate a core key into ``lang``; falls back to Vietnamese, then to the key itself.

    >>> translate("app.name", "vi")
    'Vinh IOC'
    >>> translate("no.such.key", "en")
    'no.such.key'
    """
    return _core_catalogue().translate(key, lang, **params)


def catalogue(lang: str) -> dict[str, str]:
    """Every core message of ``lang`` (Vietnamese filling gaps); a copy the caller may change."""
    return _core_catalogue().messages(lang)


def negotiate_language(request: HTTPConnection) -> str:
    """The UI language of ``request``: ``?lang=``, else the ``ioc_lang`` cookie, else Vietnamese."""
    for candidate in (request.query_params.get(LANG_QUERY), request.cookies.get(LANG_COOKIE)):
        language = normalize_language(candidate)
        if language is not None:
            return language
    return DEFAULT_LANGUAGE
