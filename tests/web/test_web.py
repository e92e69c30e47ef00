"""The web shell: pages, language, login/logout/CSRF, open redirects, vendored assets, API docs."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from ioc.app import create_app
from ioc.core.audit import AuditEntry
from ioc.core.auth import Role, User
from ioc.core.db import Database
from ioc.core.i18n import LANGUAGES
from ioc.core.registry import Panel
from ioc.settings import MapSettings, Settings
from ioc.web.routes import STATIC_DIR, TEMPLATES_DIR, safe_next, static_url
from ioc.web.texts import build_catalogue

PASSWORD = "test-password-123"  # the password make_user gives by default
VENDOR_DIR = STATIC_DIR / "vendor"
MakeUser = Callable[..., User]
LoginFn = Callable[..., httpx.Response]

# --------------------------------------------------------------------------- helpers


class _Tags(HTMLParser):
    """Collects script tags (attributes and whether they have inline code) and asset URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.assets: list[str] = []
        self._in_script: dict[str, str | None] | None = None
        self.inline_code: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self.scripts.append(attributes)
            self._in_script = attributes
            if attributes.get("src"):
                self.assets.append(attributes["src"] or "")
        if tag == "link" and attributes.get("href"):
            self.assets.append(attributes["href"] or "")
        if tag == "img" and attributes.get("src"):
            self.assets.append(attributes["src"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = None

    def handle_data(self, data: str) -> None:
        if self._in_script is not None and data.strip() and self._in_script.get("type") != "application/json":
            self.inline_code.append(data)


def _tags(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def _config(html: str) -> dict[str, object]:
    match = re.search(r'<script type="application/json" id="ioc-config">(.*?)</script>', html, re.S)
    assert match, "no ioc-config block"
    data: dict[str, object] = json.loads(match.group(1))
    return data


def _login(client: TestClient, username: str, password: str = PASSWORD, next_url: str = "/dashboard") -> httpx.Response:
    token = _csrf(client.get("/login").text)
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token, "next": next_url},
        follow_redirects=False,
    )


@pytest.fixture
def login(client: TestClient) -> LoginFn:
    def do(username: str, password: str = PASSWORD, next_url: str = "/dashboard") -> httpx.Response:
        return _login(client, username, password, next_url)

    return do


# --------------------------------------------------------------------------- catalogue <-> templates


def test_every_key_used_in_templates_is_in_the_catalogue() -> None:
    catalogue = build_catalogue(None)
    used: set[str] = set()
    for template in TEMPLATES_DIR.glob("*.html"):
        text = template.read_text(encoding="utf-8")
        used |= set(re.findall(r"""\bt\(\s*["']([a-z0-9_.]+)["']\s*[,)]""", text))
        used |= set(re.findall(r"""empty_state\(\s*["']([a-z0-9_.]+)["']""", text))
    # Keys built in the templates from a value.
    used |= {f"lang.name.{code}" for code in LANGUAGES}
    used |= {f"role.{role.value}" for role in Role}
    for lang in LANGUAGES:
        missing = sorted(key for key in used if key not in catalogue.keys(lang))
        assert missing == [], f"{lang}: {missing}"


# --------------------------------------------------------------------------- pages & language


def test_home_is_vietnamese_by_default(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-language"] == "vi"
    assert '<html lang="vi">' in r.text
    assert "Vinh IOC" in r.text
    assert "Trung tâm điều hành đô thị thông minh" in r.text
    links = client.app.state.registry.home_links  # type: ignore[attr-defined]
    if "air" in links:  # the environment module leads to its page
        assert f'href="{links["air"]}"' in r.text
    else:
        assert "Chưa có dữ liệu quan trắc." in r.text  # an empty state, not a made-up number
    assert 'class="skip-link" href="#main"' in r.text
    assert 'id="main"' in r.text
    # Anonymous visitors of the public page get no session cookie.
    assert "ioc_session" not in r.headers.get("set-cookie", "")


def test_home_in_english_with_query(client: TestClient) -> None:
    r = client.get("/?lang=en")
    assert r.status_code == 200
    assert r.headers["content-language"] == "en"
    assert '<html lang="en">' in r.text
    assert "Smart City Operations Center" in r.text
    assert "No monitoring data yet." in r.text or "See air quality" in r.text


def test_accept_language_alone_keeps_vietnamese(client: TestClient) -> None:
    r = client.get("/", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert '<html lang="vi">' in r.text


def test_language_switch_sets_cookie_and_goes_back(client: TestClient) -> None:
    r = client.get("/lang/en", params={"next": "/login?next=%2Fdashboard"}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Fdashboard"
    assert "ioc_lang=en" in r.headers["set-cookie"]
    assert '<html lang="en">' in client.get("/").text
    # ?lang= wins over the cookie for one request.
    assert '<html lang="vi">' in client.get("/?lang=vi").text
    client.get("/lang/vi", follow_redirects=False)
    assert '<html lang="vi">' in client.get("/").text


def test_language_switch_refuses_unknown_language_and_foreign_next(client: TestClient) -> None:
    assert client.get("/lang/fr", follow_redirects=False).status_code == 404
    r = client.get("/lang/en", params={"next": "https://evil.example/"}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/"


def test_language_links_keep_the_current_page(client: TestClient) -> None:
    html = client.get("/?lang=en").text
    assert 'href="/lang/vi?next=/"' in html


def test_pages_have_no_inline_script(client: TestClient, make_user: MakeUser, login: LoginFn) -> None:
    user = make_user("operator")
    login(user.username)
    for path in ("/", "/login", "/dashboard", "/docs", "/docs/oauth2-redirect", "/?lang=en"):
        r = client.get(path)
        assert r.status_code == 200, path
        tags = _tags(r.text)
        assert tags.inline_code == [], f"{path} has inline JavaScript (breaks CSP script-src 'self')"
        for script in tags.scripts:
            assert script.get("src") or script.get("type") == "application/json", (path, script)


def test_static_assets_referenced_by_pages_exist(client: TestClient, make_user: MakeUser, login: LoginFn) -> None:
    user = make_user("viewer")
    login(user.username)
    seen: set[str] = set()
    for path in ("/", "/login", "/dashboard", "/docs", "/docs/oauth2-redirect"):
        for asset in _tags(client.get(path).text).assets:
            assert asset.startswith("/static/") or asset == "/manifest.webmanifest", (path, asset)
            seen.add(asset)
    for asset in seen:
        assert client.get(asset).status_code == 200, asset
    assert any("be-vietnam-pro.css" in a for a in seen)


def test_static_url_carries_a_content_hash() -> None:
    assert re.fullmatch(r"/static/app\.css\?v=[0-9a-f]{12}", static_url("app.css"))
    assert static_url("missing.css") == "/static/missing.css"


def test_static_cache_headers(client: TestClient) -> None:
    vendored = client.get("/static/vendor/leaflet/leaflet.js")
    assert vendored.status_code == 200
    assert "immutable" in vendored.headers["cache-control"]
    assert "max-age=31536000" in vendored.headers["cache-control"]
    own = client.get("/static/app.css")
    assert own.status_code == 200
    assert own.headers["cache-control"] == "no-cache"
    assert client.get("/static/vendor/../../routes.py").status_code == 404


def test_pages_are_not_cached(client: TestClient) -> None:
    assert client.get("/").headers["cache-control"] == "no-store"
    assert client.get("/login").headers["cache-control"] == "no-store"


# --------------------------------------------------------------------------- no CDN, licences


_URL = re.compile(r"https?://[^\s\"'<>)]+")
# XML namespace names are identifiers, not addresses anything is loaded from.
_NAMESPACES = ("http://www.w3.org/",)


def _own_web_files() -> list[Path]:
    files = [p for p in TEMPLATES_DIR.rglob("*") if p.is_file()]
    files += [p for p in STATIC_DIR.rglob("*") if p.is_file() and VENDOR_DIR not in p.parents]
    return files


def test_no_template_or_own_static_file_references_an_external_url() -> None:
    offenders: list[str] = []
    for path in _own_web_files():
        if path.suffix in {".png", ".woff2", ".ico"}:
            continue
        for url in _URL.findall(path.read_text(encoding="utf-8")):
            if not url.startswith(_NAMESPACES):
                offenders.append(f"{path.name}: {url}")
    assert offenders == []


def test_rendered_pages_reference_no_external_url(client: TestClient, make_user: MakeUser, login: LoginFn) -> None:
    user = make_user("operator")
    login(user.username)
    for path in ("/", "/login", "/dashboard", "/docs"):
        assert _URL.findall(client.get(path).text) == [], path


def test_every_vendored_package_has_a_licence() -> None:
    packages = [p for p in VENDOR_DIR.iterdir() if p.is_dir()]
    assert {p.name for p in packages} >= {"leaflet", "be-vietnam-pro", "swagger-ui"}
    vendored_md = (VENDOR_DIR / "VENDORED.md").read_text(encoding="utf-8")
    for package in packages:
        licence = package / "LICENSE"
        assert licence.is_file(), f"{package.name} has no LICENSE"
        assert licence.stat().st_size > 100, f"{package.name}/LICENSE is too short to be a licence"
        assert f"`{package.name}/`" in vendored_md, f"{package.name} is not listed in VENDORED.md"
    # Every vendored file is listed, so nothing arrives unrecorded.
    for path in VENDOR_DIR.rglob("*"):
        if path.is_file() and path.name != "VENDORED.md":
            assert f"`{path.relative_to(VENDOR_DIR).as_posix()}`" in vendored_md, path


def test_vendored_font_covers_vietnamese_latin_and_latin_ext() -> None:
    css = (VENDOR_DIR / "be-vietnam-pro" / "be-vietnam-pro.css").read_text(encoding="utf-8")
    faces = re.findall(r"@font-face\s*\{(.*?)\}", css, re.S)
    assert len(faces) == 9
    for subset in ("vietnamese", "latin-ext", "latin"):
        for weight in (400, 600, 700):
            name = f"be-vietnam-pro-{subset}-{weight}-normal.woff2"
            assert (VENDOR_DIR / "be-vietnam-pro" / "files" / name).is_file()
            assert f"./files/{name}" in css
    # The Vietnamese subset covers the precomposed letters (U+1EA0-1EF9: ạ … ỹ) and đ/Đ.
    assert "U+1EA0-1EF9" in css
    assert "U+0110-0111" in css
    assert all("unicode-range" in face for face in faces)


def test_vendor_script_pins_versions() -> None:
    script = (Path(__file__).resolve().parents[2] / "scripts" / "vendor.sh").read_text(encoding="utf-8")
    for var in ("LEAFLET_VERSION", "FONT_VERSION", "SWAGGER_VERSION"):
        assert re.search(rf'^{var}="\d+\.\d+\.\d+"$', script, re.M), var
    assert script.count('_INTEGRITY="sha512-') == 3


# --------------------------------------------------------------------------- API docs


def test_docs_page_uses_only_vendored_assets(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200
    tags = _tags(r.text)
    assert tags.assets, "no assets on /docs"
    assert all(asset.startswith("/static/") for asset in tags.assets), tags.assets
    assert any(a.startswith("/static/vendor/swagger-ui/swagger-ui-bundle.js") for a in tags.assets)
    assert any(a.startswith("/static/vendor/swagger-ui/swagger-ui.css") for a in tags.assets)
    match = re.search(r'id="swagger-config">(.*?)</script>', r.text, re.S)
    assert match
    config = json.loads(match.group(1))
    assert config["url"] == "/openapi.json"
    assert client.get("/openapi.json").status_code == 200
    redirect = client.get("/docs/oauth2-redirect")
    assert redirect.status_code == 200
    assert all(a.startswith("/static/") for a in _tags(redirect.text).assets)


def test_web_routes_are_not_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/", "/login", "/logout", "/dashboard", "/docs", "/lang/{code}"):
        assert path not in paths


# --------------------------------------------------------------------------- login, logout, dashboard


def test_dashboard_redirects_to_login_when_logged_out(client: TestClient) -> None:
    r = client.get("/dashboard", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Fdashboard"


def test_login_form_has_csrf_field_labels_and_next(client: TestClient) -> None:
    r = client.get("/login", params={"next": "/dashboard"})
    assert r.status_code == 200
    assert _csrf(r.text)
    assert '<label for="username">Tên đăng nhập</label>' in r.text
    assert '<label for="password">Mật khẩu</label>' in r.text
    assert 'name="next" value="/dashboard"' in r.text
    assert 'autocomplete="current-password"' in r.text


def test_login_with_wrong_password_is_401_without_session(
    client: TestClient, make_user: MakeUser, login: LoginFn, db: Database
) -> None:
    user = make_user("operator")
    r = login(user.username, "not-the-password")
    assert r.status_code == 401
    assert "Tên đăng nhập hoặc mật khẩu không đúng." in r.text
    assert 'role="alert"' in r.text
    assert client.get("/dashboard", follow_redirects=False).status_code == 303
    with db.session() as s:
        actions = [e.action for e in s.scalars(select(AuditEntry).where(AuditEntry.object_type == "user"))]
    assert "login_failed" in actions
    assert "login" not in actions


def test_login_unknown_user_is_401(client: TestClient, login: LoginFn) -> None:
    r = login("nobody-here", "whatever-password")
    assert r.status_code == 401


def test_login_error_in_english(client: TestClient, make_user: MakeUser) -> None:
    user = make_user("operator")
    client.get("/lang/en", follow_redirects=False)
    token = _csrf(client.get("/login").text)
    r = client.post("/login", data={"username": user.username, "password": "nope-nope-nope", "csrf_token": token})
    assert r.status_code == 401
    assert "Wrong username or password." in r.text


def test_login_without_csrf_is_403(client: TestClient, make_user: MakeUser) -> None:
    user = make_user("operator")
    client.get("/login")
    r = client.post("/login", data={"username": user.username, "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 403
    r = client.post(
        "/login",
        data={"username": user.username, "password": PASSWORD, "csrf_token": "forged"},
        follow_redirects=False,
    )
    assert r.status_code == 403
    assert client.get("/dashboard", follow_redirects=False).status_code == 303


def test_login_success_then_dashboard_shows_the_map(
    client: TestClient, make_user: MakeUser, login: LoginFn, db: Database
) -> None:
    user = make_user("operator")
    r = login(user.username)
    assert r.status_code == 303
    assert r.headers["location"] == "/dashboard"
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert 'id="map"' in page.text
    assert user.username in page.text
    assert "Điều hành viên" in page.text  # the role, in Vietnamese
    config = _config(page.text)
    assert config["wardsUrl"] == "/api/v1/admin-units/wards.geojson"
    assert config["lang"] == "vi"
    assert config["map"] == {
        "tileUrl": "",
        "tileAttribution": "",
        "centerLat": 18.6796,
        "centerLon": 105.6813,
        "zoom": 12,
    }
    i18n = config["i18n"]
    assert isinstance(i18n, dict)
    assert i18n["map.load_error"].startswith("Không tải được")
    assert "/static/vendor/leaflet/leaflet.js" in page.text
    assert "/static/dashboard.js" in page.text
    # The wards the map asks for are there.
    wards = client.get(str(config["wardsUrl"]))
    assert wards.status_code == 200
    assert len(wards.json()["features"]) == 6
    with db.session() as s:
        assert s.scalar(select(AuditEntry.id).where(AuditEntry.action == "login")) is not None


def test_login_page_when_logged_in_goes_on(client: TestClient, make_user: MakeUser, login: LoginFn) -> None:
    user = make_user("viewer")
    login(user.username)
    r = client.get("/login", params={"next": "/"}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/"


@pytest.mark.parametrize(
    "evil",
    [
        "https://evil.example",
        "http://evil.example/dashboard",
        "//evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "javascript:alert(1)",
        "https:/evil.example",
        "dashboard",
    ],
)
def test_open_redirect_is_refused(make_user: MakeUser, login: LoginFn, evil: str) -> None:
    user = make_user("operator")
    r = login(user.username, next_url=evil)
    assert r.status_code == 303
    assert r.headers["location"] == "/dashboard"


def test_local_next_is_followed(make_user: MakeUser, login: LoginFn) -> None:
    user = make_user("operator")
    r = login(user.username, next_url="/?lang=en")
    assert r.headers["location"] == "/?lang=en"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "/d"),
        ("", "/d"),
        ("/", "/"),
        ("/dashboard?x=1#y", "/dashboard?x=1#y"),
        ("//evil", "/d"),
        ("/\\evil", "/d"),
        ("https://evil", "/d"),
        ("/ok path", "/d"),
        ("/" + "a" * 3000, "/d"),
    ],
)
def test_safe_next(value: str | None, expected: str) -> None:
    assert safe_next(value, "/d") == expected


def test_logout_needs_csrf_and_ends_the_session(client: TestClient, make_user: MakeUser, login: LoginFn) -> None:
    user = make_user("operator")
    login(user.username)
    page = client.get("/dashboard")
    token = _csrf(page.text)
    refused = client.post("/logout", data={}, follow_redirects=False)
    assert refused.status_code == 403
    assert client.get("/dashboard", follow_redirects=False).status_code == 200
    r = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/"
    assert client.get("/dashboard", follow_redirects=False).status_code == 303


def test_session_is_renewed_at_login(client: TestClient, make_user: MakeUser) -> None:
    user = make_user("operator")
    before = _csrf(client.get("/login").text)
    client.post("/login", data={"username": user.username, "password": PASSWORD, "csrf_token": before})
    after = _csrf(client.get("/dashboard").text)
    assert after != before  # no session fixation: a fresh CSRF token after login


def test_dashboard_in_english(client: TestClient, make_user: MakeUser, login: LoginFn) -> None:
    user = make_user("admin")
    login(user.username)
    page = client.get("/dashboard?lang=en")
    assert '<html lang="en">' in page.text
    assert "Log out" in page.text
    assert "Administrator" in page.text
    assert _config(page.text)["lang"] == "en"


def test_dashboard_shows_registered_panels(app_factory: Callable[..., TestClient], make_user: MakeUser) -> None:
    client = app_factory()
    registry = client.app.state.registry  # type: ignore[attr-defined]
    registry.add_panel(Panel("demo-panel", "dashboard.alarms", "/api/v1/demo-fragment"))
    user = make_user("operator")
    _login(client, user.username)
    page = client.get("/dashboard")
    assert 'data-panel-url="/api/v1/demo-fragment"' in page.text
    assert "Cảnh báo đang mở" in page.text


def test_tile_layer_only_when_configured(app_factory: Callable[..., TestClient], make_user: MakeUser) -> None:
    tiles = MapSettings(tile_url="/tiles/{z}/{x}/{y}.png", tile_attribution="© Vinh")
    client = app_factory(map=tiles)
    user = make_user("operator")
    _login(client, user.username)
    config = _config(client.get("/dashboard").text)
    assert config["map"] == {
        "tileUrl": "/tiles/{z}/{x}/{y}.png",
        "tileAttribution": "© Vinh",
        "centerLat": 18.6796,
        "centerLon": 105.6813,
        "zoom": 12,
    }


def test_login_throttle_answers_429_page(app_factory: Callable[..., TestClient], make_user: MakeUser) -> None:
    client = app_factory(login_attempts_per_minute=2)
    user = make_user("operator")
    statuses = []
    for _ in range(3):
        token = _csrf(client.get("/login").text)
        r = client.post("/login", data={"username": user.username, "password": "wrong-wrong-1", "csrf_token": token})
        statuses.append(r.status_code)
    assert statuses == [401, 401, 429]
    assert "Retry-After" in r.headers
    assert "quá nhiều lần" in r.text


@pytest.fixture
def app_factory(settings: Settings, db: Database) -> Iterator[Callable[..., TestClient]]:
    """A client on an app built with some settings changed."""
    clients: list[TestClient] = []

    def make(**changes: object) -> TestClient:
        client = TestClient(create_app(settings.model_copy(update=changes)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def test_home_cards_lead_to_the_modules_that_serve_them(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert 'href="/bao-cao"' in page.text and "Gửi phản ánh" in page.text
    assert 'href="/theo-doi"' in page.text and 'href="/kpi"' in page.text
    for url in ("/bao-cao", "/theo-doi", "/kpi"):
        assert client.get(url).status_code == 200, url
    english = client.get("/?lang=en")
    assert "Report a problem" in english.text
