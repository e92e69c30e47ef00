"""The web shell's own messages (``ioc/web/locales/{vi,en}.json``) merged into the app's catalogue.

The core's messages stay in :mod:`ioc.core.i18n`; the pages of the dashboard and of the Vinh
Smart app add theirs here, under their own keys (``dashboard.``, ``home.``, ``pwa.``, ...).
"""

from __future__ import annotations

from functools import cache

from ioc.core.i18n import LANGUAGES, Catalogue, load_locale_file
from ioc.core.registry import Registry
from ioc.web import LOCALES_DIR


@cache
def web_messages() -> dict[str, dict[str, str]]:
    """The web shell's messages per language."""
    return {lang: load_locale_file(LOCALES_DIR / f"{lang}.json") for lang in LANGUAGES}


def build_catalogue(registry: Registry | None) -> Catalogue:
    """Core messages, the modules' translations and the web shell's own messages."""
    catalogue = Catalogue.from_registry(registry)
    for lang, messages in web_messages().items():
        catalogue.add(lang, messages)
    return catalogue
