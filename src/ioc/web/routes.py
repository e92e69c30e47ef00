"""The web shell: public home, login/logout, the operators' dashboard, language switch, API docs.

Pages are server-rendered Jinja2 templates; every text goes through the translation
catalogue (:mod:`ioc.core.i18n`), Vietnamese by default. No page carries inline JavaScript:
configuration is passed as ``<script type="application/json">`` data and read by static
scripts, so the app's CSP ``script-src 'self'`` holds everywhere, the API docs included.
Every front-end asset is served from ``/static`` (vendored from npm, see
``static/vendor/VENDORED.md``); nothing comes from a CDN.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, FileSystemLoader, PrefixLoader, pass_context
from jinja2.runtime import Context
from starlette.types import Scope

from ioc.core import audit
from ioc.core.auth import (
    Principal,
    authenticate_password,
    check_csrf,
    csrf_token,
    end_web_session,
    login_throttle_check,
    start_web_session,
    web_principal,
)
from ioc.core.db import DbSession
from ioc.core.i18n import (
    LANG_COOKIE,
    LANG_QUERY,
    LANGUAGES,
    Catalogue,
    negotiate_language,
    normalize_language,
)
from ioc.core.problems import Problem
from ioc.core.registry import Registry
from ioc.web import layers
from ioc.web.texts import build_catalogue

WEB_DIR = Path(__file__).resolve().parent
STATIC_DIR = WEB_DIR / "static"
TEMPLATES_DIR = WEB_DIR / "templates"

#: Where the dashboard map reads the six wards (a GeoJSON FeatureCollection).
WARDS_GEOJSON_URL = "/api/v1/admin-units/wards.geojson"
#: The core's alarms, the SSE event stream and the KPI module's public list, as the pages read them.
ALARMS_URL = "/api/v1/alarms"
EVENTS_URL = "/api/v1/events/stream"
KPIS_URL = "/api/v1/kpis"
LAYERS_URL = "/api/v1/map/layers"
#: The time zone in which pages show times.
TIME_ZONE = "Asia/Ho_Chi_Minh"
#: The Vinh Smart app's colours (manifest and ``theme-color``).
THEME_COLOUR = "#0b2e4f"
BACKGROUND_COLOUR = "#f5f7fa"
#: What the service worker stores at install for the offline shell: our CSS and scripts, the
#: Vietnamese and Latin font files, the icons (the home page and the offline page are added).
SHELL_ASSETS = (
    "app.css",
    "pwa.js",
    "home.js",
    "favicon.svg",
    "icons/icon-192.png",
    "vendor/be-vietnam-pro/be-vietnam-pro.css",
)
SHELL_FONTS = tuple(
    f"vendor/be-vietnam-pro/files/be-vietnam-pro-{subset}-{weight}-normal.woff2"
    for subset in ("vietnamese", "latin")
    for weight in (400, 600, 700)
)
SHELL_PAGES = ("/", "/offline")
#: Where a logged-in user lands when no (safe) ``next`` was given.
DEFAULT_AFTER_LOGIN = "/dashboard"

#: Vendored files change only with a new pinned version; their URLs carry a content hash.
VENDOR_CACHE_CONTROL = "public, max-age=31536000, immutable"
#: Our own assets are revalidated (ETag / Last-Modified) on every use.
OWN_ASSET_CACHE_CONTROL = "no-cache"
#: Pages may hold a user's name or a CSRF token: never stored by caches.
PAGE_CACHE_CONTROL = "no-store"

LANG_COOKIE_MAX_AGE = 365 * 24 * 3600
MAX_USERNAME = 64
MAX_PASSWORD = 1024
MAX_NEXT = 2048

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=TEMPLATES_DIR)


# --------------------------------------------------------------------------- helpers


class CachingStaticFiles(StaticFiles):
    """Static files with long-lived caching for ``vendor/`` and revalidation for the rest."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        relative = Path(full_path).resolve().relative_to(STATIC_DIR).as_posix()
        vendored = relative.startswith("vendor/")
        response.headers["Cache-Control"] = VENDOR_CACHE_CONTROL if vendored else OWN_ASSET_CACHE_CONTROL
        return response


@cache
def _digest(path: str, mtime_ns: int) -> str:
    return hashlib.sha256((STATIC_DIR / path).read_bytes()).hexdigest()[:12]


def static_url(path: str) -> str:
    """The URL of a static asset, with a content hash so a changed file is fetched anew."""
    path = path.lstrip("/")
    try:
        version = _digest(path, (STATIC_DIR / path).stat().st_mtime_ns)
    except OSError:
        return f"/static/{path}"
    return f"/static/{path}?v={version}"


def safe_next(value: str | None, default: str = "/") -> str:
    """``value`` if it is a path on this site, else ``default`` (prevents open redirects).

    Refused: absolute URLs (``https://evil.example``), scheme-relative ones (``//evil``),
    backslashes and control characters or spaces (browsers turn ``/\\evil`` or
    ``/\\t/evil`` into ``//evil``), and anything that does not start with ``/``.
    """
    if not value or len(value) > MAX_NEXT:
        return default
    if "\\" in value or any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in value):
        return default
    if not value.startswith("/") or value.startswith("//"):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def current_path(request: Request) -> str:
    """This page's path and query, without ``lang`` (used as ``next`` of links on the page)."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k != LANG_QUERY]
    path = request.url.path
    return f"{path}?{urlencode(query)}" if query else path


def get_catalogue(request: Request) -> Catalogue:
    """The app's catalogue (core messages + what modules registered), built once per app."""
    state = request.app.state
    catalogue = getattr(state, "catalogue", None)
    if not isinstance(catalogue, Catalogue):
        catalogue = build_catalogue(getattr(state, "registry", None))
        state.catalogue = catalogue
    return catalogue


def translator(request: Request) -> Callable[..., str]:
    """``t(key, **params)`` in the language of ``request``."""
    catalogue = get_catalogue(request)
    lang = negotiate_language(request)

    def t(key: str, **params: object) -> str:
        return catalogue.translate(key, lang, **params)

    return t


@pass_context
def _t_filter(context: Context, key: str, **params: object) -> str:
    """Jinja filter form of ``t``: ``{{ "nav.home" | t }}``."""
    t: Callable[..., str] = context["t"]
    return t(key, **params)


templates.env.filters["t"] = _t_filter
templates.env.globals["static_url"] = static_url
templates.env.globals["languages"] = LANGUAGES


def render(
    request: Request,
    name: str,
    *,
    principal: Principal | None = None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """Render template ``name`` with the shell's context: language, ``t``, user, CSRF, map."""
    lang = negotiate_language(request)
    settings = getattr(request.app.state, "settings", None)
    full: dict[str, Any] = {
        "lang": lang,
        "t": translator(request),
        "user": principal,
        # A callable, so that only pages with a form put a token (and a cookie) in the session.
        "csrf_token": lambda: csrf_token(request),
        "map": settings.map if settings is not None else None,
        "current_path": current_path(request),
        "active_nav": "",
    }
    full.update(context)
    response = templates.TemplateResponse(request, name, full, status_code=status_code, headers=headers)
    response.headers["Content-Language"] = lang
    response.headers["Cache-Control"] = PAGE_CACHE_CONTROL
    return response


def render_error(
    request: Request,
    status_code: int,
    *,
    message_key: str | None = None,
    principal: Principal | None = None,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """An HTML error page (for browsers; APIs answer RFC 7807 problems instead)."""
    t = translator(request)
    title_key = f"error.{status_code}"
    title = t(title_key) if title_key in get_catalogue(request) else t("error.generic")
    message_key = message_key or f"error.{status_code}.message"
    message = t(message_key) if message_key in get_catalogue(request) else ""
    return render(
        request,
        "error.html",
        principal=principal,
        status_code=status_code,
        headers=headers,
        title=title,
        message=message,
    )


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _redirect(url: str) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    response.headers["Cache-Control"] = PAGE_CACHE_CONTROL
    return response


# --------------------------------------------------------------------------- pages


@router.get("/", response_class=HTMLResponse)
def home(request: Request, session: DbSession) -> HTMLResponse:
    """The public Vinh Smart home page."""
    registry: Registry | None = getattr(request.app.state, "registry", None)
    links = registry.home_links if registry is not None else {}
    lang = negotiate_language(request)
    catalogue = get_catalogue(request)
    # Live figures are fetched by home.js from public APIs: air stations and flood gauges from the
    # public map layers of those kinds, the public KPIs from the KPI module (when it is loaded).
    live_layers = [
        layer.model_dump()
        for layer in layers.describe(request, layers.layers_for(registry, None))
        if layer.kind in HOME_LAYER_KINDS
    ]
    page_config = {
        "lang": lang,
        "timeZone": TIME_ZONE,
        "layers": live_layers,
        "kpisUrl": KPIS_URL if _has_module(registry, "kpi") else None,
        "i18n": {key: catalogue.translate(key, lang) for key in HOME_JS_KEYS} | catalogue.subset(lang, "kpi.status."),
    }
    return render(
        request,
        "home.html",
        principal=web_principal(request, session),
        active_nav="home",
        home_links=links,
        page_config=page_config,
    )


#: The kinds of public map layers that the home page summarises (air quality, flood warnings).
HOME_LAYER_KINDS = ("air", "flood")
#: The messages that home.js shows.
HOME_JS_KEYS = ("home.flood.none",)


def _has_module(registry: Registry | None, name: str) -> bool:
    return registry is not None and name in registry.modules


@router.get("/login", response_class=HTMLResponse, response_model=None)
def login_form(request: Request, session: DbSession, next_param: Annotated[str, Query(alias="next")] = "") -> Response:
    """The login form; a user who is already logged in goes straight on."""
    next_url = safe_next(next_param, DEFAULT_AFTER_LOGIN)
    if web_principal(request, session) is not None:
        return _redirect(next_url)
    return render(request, "login.html", next_url=next_url, username="", error=None)


@router.post("/login", response_class=HTMLResponse, response_model=None)
def login_submit(
    request: Request,
    session: DbSession,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf: Annotated[str | None, Form(alias="csrf_token")] = None,
    next_param: Annotated[str, Form(alias="next")] = "",
) -> Response:
    """Check the credentials: 303 to a local ``next`` on success, the form again with 401 otherwise."""
    t = translator(request)
    next_url = safe_next(next_param, DEFAULT_AFTER_LOGIN)
    username = username.strip()[: MAX_USERNAME + 1]
    form: dict[str, Any] = {"next_url": next_url, "username": username[:MAX_USERNAME]}
    try:
        check_csrf(request, csrf)
    except Problem:
        return render(request, "login.html", status_code=403, error=t("login.error.csrf"), **form)
    try:
        login_throttle_check(request, username)
    except Problem as exc:
        retry = (exc.headers or {}).get("Retry-After", "60")
        return render(
            request,
            "login.html",
            status_code=429,
            headers={"Retry-After": retry},
            error=t("login.error.throttled", seconds=retry),
            **form,
        )
    user = None
    if username and password and len(username) <= MAX_USERNAME and len(password) <= MAX_PASSWORD:
        user = authenticate_password(session, username, password)
    if user is None:
        audit.record(session, None, "login_failed", "user", username[:MAX_USERNAME], ip=_client_ip(request))
        return render(request, "login.html", status_code=401, error=t("login.error.invalid"), **form)
    start_web_session(request, user)
    audit.record(session, web_principal(request, session), "login", "user", user.id, ip=_client_ip(request))
    return _redirect(next_url)


@router.post("/logout", response_model=None)
def logout(
    request: Request,
    session: DbSession,
    csrf: Annotated[str | None, Form(alias="csrf_token")] = None,
) -> Response:
    """End the browser session (CSRF-checked) and go home."""
    principal = web_principal(request, session)
    try:
        check_csrf(request, csrf)
    except Problem:
        return render_error(request, 403, message_key="error.csrf.message", principal=principal)
    if principal is not None:
        audit.record(session, principal, "logout", "user", principal.user_id or principal.id)
    end_web_session(request)
    return _redirect("/")


@router.get("/dashboard", response_class=HTMLResponse, response_model=None)
def dashboard(request: Request, session: DbSession) -> Response:
    """The operators' dashboard: the map of the six wards and the modules' panels."""
    principal = web_principal(request, session)
    if principal is None:
        return _redirect("/login?" + urlencode({"next": "/dashboard"}))
    lang = negotiate_language(request)
    settings = request.app.state.settings
    registry = getattr(request.app.state, "registry", None)
    catalogue = get_catalogue(request)
    page_config = {
        "lang": lang,
        "timeZone": TIME_ZONE,
        "wardsUrl": WARDS_GEOJSON_URL,
        "map": {
            "tileUrl": settings.map.tile_url,
            "tileAttribution": settings.map.tile_attribution,
            "centerLat": settings.map.center_lat,
            "centerLon": settings.map.center_lon,
            "zoom": settings.map.zoom,
        },
        "layers": [layer.model_dump() for layer in layers.describe(request, layers.layers_for(registry, principal))],
        "alarmsUrl": ALARMS_URL if principal.has("alarms:read") else None,
        "eventsUrl": EVENTS_URL if principal.has("events:read") else None,
        "kpisUrl": KPIS_URL if _has_module(registry, "kpi") else None,
        "canAct": principal.has("alarms:write"),
        "i18n": catalogue.subset(lang, "map.")
        | catalogue.subset(lang, "dashboard.")
        | catalogue.subset(lang, "kpi.status."),
    }
    return render(
        request,
        "dashboard.html",
        principal=principal,
        active_nav="dashboard",
        page_config=page_config,
        panels=list(registry.panels) if registry is not None else [],
    )


@router.get("/lang/{code}", response_model=None)
def switch_language(request: Request, code: str, next_param: Annotated[str, Query(alias="next")] = "/") -> Response:
    """Remember the UI language in the ``ioc_lang`` cookie and go back to a local ``next``."""
    language = normalize_language(code)
    if language is None or language != code.lower():
        return render_error(request, 404)
    response = _redirect(safe_next(next_param, "/"))
    response.set_cookie(
        LANG_COOKIE,
        language,
        max_age=LANG_COOKIE_MAX_AGE,
        path="/",
        samesite="lax",
        httponly=True,
        secure=request.url.scheme == "https",
    )
    return response


# --------------------------------------------------------------------------- installable app (PWA)


@router.get("/manifest.webmanifest", response_model=None)
def manifest(request: Request) -> Response:
    """The web app manifest of Vinh Smart: name, start page, colours and icons."""
    t = translator(request)
    lang = negotiate_language(request)
    icons = [
        {"src": static_url("icons/icon-192.png"), "sizes": "192x192", "type": "image/png", "purpose": "any"},
        {"src": static_url("icons/icon-512.png"), "sizes": "512x512", "type": "image/png", "purpose": "any"},
        {
            "src": static_url("icons/icon-maskable-512.png"),
            "sizes": "512x512",
            "type": "image/png",
            "purpose": "maskable",
        },
        {"src": static_url("favicon.svg"), "sizes": "any", "type": "image/svg+xml", "purpose": "any"},
    ]
    body = {
        "id": "/",
        "name": t("home.title"),
        "short_name": t("home.title"),
        "description": t("pwa.description"),
        "lang": lang,
        "dir": "ltr",
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "orientation": "any",
        "theme_color": THEME_COLOUR,
        "background_color": BACKGROUND_COLOUR,
        "categories": ["government", "utilities", "weather"],
        "icons": icons,
    }
    return Response(
        json.dumps(body, ensure_ascii=False, indent=1),
        media_type="application/manifest+json",
        headers={"Cache-Control": OWN_ASSET_CACHE_CONTROL},
    )


def shell_precache() -> list[str]:
    """The URLs the service worker stores at install: versioned assets, fonts and the two pages."""
    assets = [static_url(path) for path in SHELL_ASSETS]
    fonts = [f"/static/{path}" for path in SHELL_FONTS if (STATIC_DIR / path).is_file()]
    return [*assets, *fonts]


@router.get("/sw.js", response_model=None)
def service_worker(request: Request) -> Response:
    """The service worker, served from the root so that its scope is the whole site."""
    precache = shell_precache()
    source = templates.get_template("sw.js").render(precache=precache, pages=list(SHELL_PAGES), version="0")
    version = hashlib.sha256(source.encode()).hexdigest()[:12]
    source = source.replace('"ioc-shell-0"', f'"ioc-shell-{version}"', 1)
    return Response(
        source,
        media_type="text/javascript",
        headers={"Cache-Control": OWN_ASSET_CACHE_CONTROL, "Service-Worker-Allowed": "/"},
    )


@router.get("/offline", response_class=HTMLResponse)
def offline(request: Request) -> HTMLResponse:
    """What the app shows for a page it cannot reach while offline (stored by the service worker)."""
    return render(request, "offline.html", principal=None)


# --------------------------------------------------------------------------- API docs


@router.get("/docs", response_class=HTMLResponse)
def api_docs(request: Request) -> HTMLResponse:
    """Swagger UI for the OpenAPI document, from the vendored swagger-ui-dist (no CDN)."""
    config = {
        "url": request.app.openapi_url or "/openapi.json",
        "oauth2RedirectPath": "/docs/oauth2-redirect",
    }
    return render(request, "swagger.html", swagger_config=config)


@router.get("/docs/oauth2-redirect", response_class=HTMLResponse)
def api_docs_oauth2_redirect(request: Request) -> HTMLResponse:
    """Where an OAuth2 login started from Swagger UI comes back."""
    return render(request, "swagger_oauth2_redirect.html")


# --------------------------------------------------------------------------- mounting


def mount_web(app: FastAPI) -> None:
    """Serve ``/static`` (and the modules' static folders), the pages and the API docs on ``app``.

    Builds the app's translation catalogue (core + modules' translations) once, so that a
    conflicting module translation fails at start rather than on a page.
    """
    registry: Registry | None = getattr(app.state, "registry", None)
    if registry is not None and not any(layer.id == layers.ALARMS_LAYER.id for layer in registry.map_layers):
        registry.add_map_layer(layers.ALARMS_LAYER)
    app.state.catalogue = build_catalogue(registry)
    app.state.render_page = render
    if registry is not None and registry.template_dirs:
        # Modules' templates under their own prefix ("reports/queue.html"), able to extend base.html.
        templates.env.loader = ChoiceLoader(
            [
                FileSystemLoader(TEMPLATES_DIR),
                PrefixLoader({prefix: FileSystemLoader(d) for prefix, d in registry.template_dirs.items()}),
            ]
        )
    # Static folders that modules registered (e.g. "/static/reports"), each on its mount; mounted
    # before "/static" and longest first, because the first matching mount serves the request.
    if registry is not None:
        for mount, directory in sorted(registry.static_dirs.items(), key=lambda item: -len(item[0])):
            app.mount(mount, StaticFiles(directory=directory), name=f"static:{mount}")
    app.mount("/static", CachingStaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(layers.router)
    app.include_router(router)
