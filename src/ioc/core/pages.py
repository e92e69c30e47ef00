"""Server-rendered pages for modules, in the web shell's layout, without importing the web package.

The web shell installs its renderer on ``app.state.render_page`` when it mounts; a module
registers its template folder with ``registry.add_templates(prefix, dir)`` and renders
``"<prefix>/<name>.html"`` (which may ``{% extends "base.html" %}``) through :func:`render_page`.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from ioc.core.auth import Principal


def render_page(request: Request, template: str, *, principal: Principal | None = None, **context: Any) -> HTMLResponse:
    """Render ``template`` with the shell's context (language, ``t``, user, CSRF token, map settings)."""
    renderer = getattr(request.app.state, "render_page", None)
    if renderer is None:
        raise RuntimeError("the web shell is not mounted on this app")
    response: HTMLResponse = renderer(request, template, principal=principal, **context)
    return response
