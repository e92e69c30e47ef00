"""The web front end: server-rendered pages of the operators' dashboard and of the citizens'
Vinh Smart app, their static assets (vendored from npm, never from a CDN) and the API docs.

:func:`ioc.web.routes.mount_web` attaches all of it to the app; every text goes through the
translation catalogue of :mod:`ioc.core.i18n` (Vietnamese first, English second).
"""

from __future__ import annotations

from pathlib import Path

#: The web shell's own messages (``vi.json``, ``en.json``).
LOCALES_DIR = Path(__file__).resolve().parent / "locales"
