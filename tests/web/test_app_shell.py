"""Vinh Smart as an installable app, the map layers that modules declare, and the no-CDN rule.

In-process (TestClient) on both databases; the browser-driven checks are in test_browser.py
and test_e2e.py.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import cast
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from ioc.core import alarms as core_alarms
from ioc.core.alarms import AlarmCreate, Severity
from ioc.core.auth import User
from ioc.core.db import Database
from ioc.core.i18n import LANGUAGES
from ioc.core.registry import MapLayer, Registry
from ioc.web import icons
from ioc.web.layers import ALARMS_LAYER, alarm_position
from ioc.web.routes import SHELL_PAGES, STATIC_DIR
from ioc.web.texts import build_catalogue, web_messages

PASSWORD = "test-password-123"
MakeUser = Callable[..., User]
#: The citizen home page with everything it references must stay under this (mobile data).
HOME_BUDGET_BYTES = 500_000
LOCAL_HOSTS = {"127.0.0.1", "localhost", "testserver", "[::1]"}
#: src=, href= or url( followed by an absolute or scheme-relative URL.
EXTERNAL_REF = re.compile(
    r"""(?:\bsrc\s*=\s*|\bhref\s*=\s*|\burl\(\s*)\\?["'`]?\s*((?:https?:)?//[^/"'`\s)\\]+)""", re.I
)
#: Vendored files that name an outside address without loading it, and why that is harmless.
VENDOR_LINKS_ALLOWED = {
    # The link in Leaflet's attribution control: a hyperlink, nothing is fetched from it; the
    # dashboard replaces it with plain text (map.attributionControl.setPrefix).
    ("vendor/leaflet/leaflet.js", "https://leafletjs.com"),
}
LINK_RELS = {"stylesheet", "icon", "manifest", "apple-touch-icon"}
TEXT_SUFFIXES = {".js", ".css", ".html", ".svg", ".json", ".webmanifest", ".txt"}


def _login(client: TestClient, username: str) -> None:
    page = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    r = client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": token.group(1), "next": "/"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


def _external(text: str) -> list[str]:
    found = []
    for match in EXTERNAL_REF.finditer(text):
        host = urlsplit(match.group(1) if "//" in match.group(1)[:8] else "//" + match.group(1)).hostname or ""
        if host not in LOCAL_HOSTS and f"[{host}]" not in LOCAL_HOSTS:
            found.append(match.group(1))
    return found


# --------------------------------------------------------------------------- no CDN


def test_external_reference_pattern_catches_what_it_must() -> None:
    assert _external('<script src="https://cdn.example.com/x.js">') == ["https://cdn.example.com"]
    assert _external("<link href='//fonts.example.org/css'>") == ["//fonts.example.org"]
    assert _external("a { background: url(https://img.example.net/a.png) }") == ["https://img.example.net"]
    assert _external('img.src = "http://evil.example/x"') == ["http://evil.example"]  # a script setting src
    assert _external('src="/static/app.js" href="http://127.0.0.1:8000/x"') == []


def test_rendered_pages_load_nothing_from_outside(client: TestClient, make_user: MakeUser) -> None:
    user = make_user("operator")
    _login(client, user.username)
    pages = (
        "/",
        "/?lang=en",
        "/offline",
        "/dashboard",
        "/docs",
        "/bao-cao",
        "/theo-doi",
        "/ban-do-phan-anh",
        "/workspace",
        "/kpi",
        "/manifest.webmanifest",
        "/sw.js",
    )
    for path in pages:
        r = client.get(path)
        assert r.status_code == 200, path
        assert _external(r.text) == [], path


def _static_files(registry: Registry) -> list[tuple[str, Path]]:
    roots = [("", STATIC_DIR)] + [(mount, Path(d)) for mount, d in registry.static_dirs.items()]
    return [
        (f"{prefix}:{path.relative_to(root).as_posix()}", path)
        for prefix, root in roots
        for path in root.rglob("*")
        if path.is_file() and path.suffix in TEXT_SUFFIXES
    ]


def test_static_files_load_nothing_from_outside(client: TestClient) -> None:
    registry: Registry = client.app.state.registry  # type: ignore[attr-defined]
    files = _static_files(registry)
    assert len(files) > 20 and any(name.startswith("/assets/reports:") for name, _ in files)
    offenders = []
    for name, path in files:
        relative = name.split(":", 1)[1]
        for url in _external(path.read_text(encoding="utf-8", errors="replace")):
            if (relative, url) not in VENDOR_LINKS_ALLOWED:
                offenders.append(f"{name}: {url}")
    assert offenders == []


def test_the_tile_url_is_the_only_outside_address_and_empty_by_default(client: TestClient, make_user: MakeUser) -> None:
    settings = client.app.state.settings  # type: ignore[attr-defined]
    assert settings.map.tile_url == ""
    _login(client, make_user("operator").username)
    config = re.search(r'id="ioc-config">(.*?)</script>', client.get("/dashboard").text, re.S)
    assert config and json.loads(config.group(1))["map"]["tileUrl"] == ""


# --------------------------------------------------------------------------- installable app


def test_manifest_makes_the_app_installable(client: TestClient) -> None:
    r = client.get("/manifest.webmanifest")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/manifest+json")
    manifest = r.json()
    assert manifest["name"] == "Vinh Smart" and manifest["short_name"] == "Vinh Smart"
    assert manifest["start_url"] == "/" and manifest["scope"] == "/"
    assert manifest["display"] == "standalone"
    assert manifest["lang"] == "vi"
    assert client.get("/manifest.webmanifest?lang=en").json()["lang"] == "en"
    sizes = {}
    for icon in manifest["icons"]:
        data = client.get(icon["src"])
        assert data.status_code == 200, icon
        if icon["type"] == "image/png":
            image = Image.open(io.BytesIO(data.content))
            assert image.format == "PNG"
            assert f"{image.width}x{image.height}" == icon["sizes"]
            sizes[icon["sizes"], icon["purpose"]] = image
    assert {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")} <= set(sizes)
    # The favicon's design: the brand's dark blue, white lettering.
    icon = sizes["512x512", "any"].convert("RGBA")

    def pixel(x: int, y: int) -> tuple[int, ...]:
        return cast(tuple[int, ...], icon.getpixel((x, y)))

    assert pixel(60, 256)[:3] == (0x0B, 0x2E, 0x4F)
    assert pixel(0, 0)[3] == 0  # rounded corner
    assert any(pixel(x, 256)[:3] == (255, 255, 255) for x in range(150, 360))
    page = client.get("/").text
    assert '<link rel="manifest" href="/manifest.webmanifest">' in page
    assert '<meta name="theme-color"' in page


def test_committed_icons_are_what_the_generator_draws() -> None:
    for name, size, maskable in icons.ICONS:
        committed = Image.open(icons.ICONS_DIR / name).convert("RGBA")
        drawn = icons.draw_icon(size, maskable=maskable)
        assert committed.size == drawn.size == (size, size)
        pixels = zip(committed.get_flattened_data(), drawn.get_flattened_data(), strict=True)
        same = sum(a == b for a, b in pixels)
        assert same / (size * size) > 0.98, name


def test_service_worker_is_served_from_the_root_with_its_shell(client: TestClient) -> None:
    r = client.get("/sw.js")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.headers["cache-control"] == "no-cache"
    source = r.text
    version = re.search(r'var SHELL_CACHE = "ioc-shell-([0-9a-f]{12})";', source)
    assert version, "the cache name carries the version"
    precache = json.loads(re.search(r"var PRECACHE = (\[.*?\]);", source, re.S).group(1))  # type: ignore[union-attr]
    pages = json.loads(re.search(r"var PAGES = (\[.*?\]);", source, re.S).group(1))  # type: ignore[union-attr]
    assert pages == list(SHELL_PAGES) == ["/", "/offline"]
    assert any(u.startswith("/static/app.css?v=") for u in precache)
    assert any("be-vietnam-pro-vietnamese-400-normal.woff2" in u for u in precache)
    for url in precache + pages:
        assert client.get(url).status_code == 200, url
    # Network first for pages, cache first for versioned static files.
    assert 'request.mode === "navigate"' in source and 'searchParams.has("v")' in source
    # A changed asset changes the worker, so browsers install the new shell.
    assert source == client.get("/sw.js").text


def test_offline_page(client: TestClient) -> None:
    r = client.get("/offline")
    assert r.status_code == 200
    assert "Bạn đang ngoại tuyến" in r.text
    assert "You are offline" in client.get("/offline?lang=en").text


def test_every_page_registers_the_service_worker(client: TestClient) -> None:
    for path in ("/", "/login", "/offline", "/bao-cao"):
        assert "/static/pwa.js?v=" in client.get(path).text, path


def _assets(html: str) -> list[str]:
    class Collect(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.urls: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            a = dict(attrs)
            if tag == "script" and a.get("src"):
                self.urls.append(a["src"] or "")
            if tag == "link" and a.get("href") and a.get("rel") in LINK_RELS:
                self.urls.append(a["href"] or "")
            if tag == "img" and a.get("src"):
                self.urls.append(a["src"] or "")

    parser = Collect()
    parser.feed(html)
    return parser.urls


def test_citizen_home_with_every_asset_is_under_500_kb(client: TestClient) -> None:
    home = client.get("/")
    total = len(home.content)
    queue = [urljoin("/", url) for url in _assets(home.text)]
    seen: set[str] = set()
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        r = client.get(url)
        assert r.status_code == 200, url
        total += len(r.content)
        if url.split("?")[0].endswith(".css"):
            for ref in re.findall(r"url\(\s*['\"]?([^'\")]+)", r.text):
                if not ref.startswith("data:"):
                    queue.append(urljoin(url, ref))
        if url.startswith("/manifest.webmanifest"):
            queue += [icon["src"] for icon in r.json()["icons"]]
    # What home.js fetches: the public KPIs (and public air/flood layers when a module has them).
    total += len(client.get("/api/v1/kpis").content)
    assert any(u.endswith(".woff2") for u in seen), "the fonts are counted"
    assert total < HOME_BUDGET_BYTES, f"{total:,} bytes"


# --------------------------------------------------------------------------- map layers


def test_registry_map_layers_are_data_ordered_and_unique() -> None:
    registry = Registry()
    registry.add_map_layer(MapLayer("b", "x", "/b.geojson", order=50))
    registry.add_map_layer(MapLayer("a", "x", "/a.geojson", kind="air", order=10, public=True, topics=("air.*",)))
    assert [layer.id for layer in registry.map_layers] == ["a", "b"]
    with pytest.raises(ValueError, match="registered twice"):
        registry.add_map_layer(MapLayer("a", "y", "/other.geojson"))


def test_layers_list_public_to_anyone_and_all_to_staff(client: TestClient, make_user: MakeUser) -> None:
    anonymous = client.get("/api/v1/map/layers")
    assert anonymous.status_code == 200
    public = {layer["id"]: layer for layer in anonymous.json()}
    assert "reports" in public and "alarms" not in public
    assert public["reports"] == {
        "id": "reports",
        "title": "Phản ánh hiện trường",
        "url": "/api/v1/reports/public.geojson",
        "kind": "reports",
        "order": 30,
        "public": True,
        "topics": ["report.*"],
    }
    _login(client, make_user("viewer").username)
    staff = client.get("/api/v1/map/layers?lang=en").json()
    ids = [layer["id"] for layer in staff]
    assert ids == sorted(ids, key=lambda i: next(layer["order"] for layer in staff if layer["id"] == i))
    alarms_layer = next(layer for layer in staff if layer["id"] == "alarms")
    assert alarms_layer["title"] == "Alarms" and alarms_layer["topics"] == ["alarm.*"]
    assert alarms_layer["url"] == ALARMS_LAYER.url


def _raise(db: Database, **fields: object) -> int:
    values: dict[str, object] = {"type": "test.level", "severity": Severity.MAJOR, "title": "Mực nước vượt báo động 2"}
    values.update(fields)
    with db.session() as s:
        alarm, _ = core_alarms.raise_alarm(s, AlarmCreate.model_validate(values), module="test")
        s.commit()
        return alarm.id


def test_alarms_layer_places_open_alarms_in_the_callers_remit(
    client: TestClient, make_user: MakeUser, db: Database
) -> None:
    at_point = _raise(db, source="gauge:a", ward_code="16681", details={"lat": 18.67, "lon": 105.69})
    in_ward = _raise(db, source="gauge:b", ward_code="16732", severity=Severity.CRITICAL)
    geo_location = _raise(
        db, source="gauge:c", ward_code="16681", details={"location": {"type": "Point", "coordinates": [105.7, 18.68]}}
    )
    nowhere = _raise(db, source="gauge:d")
    cleared = _raise(db, source="gauge:e", ward_code="16681")
    with db.session() as s:
        core_alarms.clear_condition(s, "gauge:e", "test.level")
        s.commit()

    assert client.get("/api/v1/map/alarms.geojson").status_code == 401
    _login(client, make_user("operator").username)
    r = client.get("/api/v1/map/alarms.geojson")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    features = {f["id"]: f for f in r.json()["features"]}
    assert set(features) == {at_point, in_ward, geo_location}  # nowhere: no place; cleared: not open
    assert nowhere not in features and cleared not in features
    assert features[at_point]["geometry"] == {"type": "Point", "coordinates": [105.69, 18.67]}
    assert features[geo_location]["geometry"]["coordinates"] == [105.7, 18.68]
    props = features[in_ward]["properties"]
    assert props["label"] == "Mực nước vượt báo động 2"
    assert props["colour"] == "#b3261e" and props["severity"] == "CRITICAL"
    assert props["status"] == "ACTIVE_UNACK" and props["ward"] == "16732" and props["time"].endswith("Z")
    # The ward's point lies inside Cửa Lò.
    lon, lat = features[in_ward]["geometry"]["coordinates"]
    assert client.get(f"/api/v1/admin-units/locate?lat={lat}&lon={lon}").json()["ward"]["code"] == "16732"


def test_ward_officer_sees_only_alarms_of_the_ward_on_the_map(
    client: TestClient, db: Database, make_user: MakeUser
) -> None:
    mine = _raise(db, source="gauge:mine", ward_code="16681")
    _raise(db, source="gauge:other", ward_code="16690")
    _login(client, make_user("ward_officer", agency_id="ubnd-thanh-vinh").username)
    features = client.get("/api/v1/map/alarms.geojson").json()["features"]
    assert [f["id"] for f in features] == [mine]


def test_alarm_position_rules() -> None:
    wards = {"16681": (105.68, 18.68)}
    assert alarm_position({"lat": "18.7", "lon": 105.7}, None, wards) == (105.7, 18.7)
    assert alarm_position({"lat": 95, "lon": 105.7}, "16681", wards) == (105.68, 18.68)  # out of range
    assert alarm_position({"lat": float("nan"), "lon": 1}, None, wards) is None
    assert alarm_position({"lat": True, "lon": 1}, None, wards) is None
    assert alarm_position({}, "99999", wards) is None


def test_dashboard_config_lists_layers_and_live_sources(client: TestClient, make_user: MakeUser) -> None:
    _login(client, make_user("operator").username)
    page = client.get("/dashboard").text
    config = json.loads(re.search(r'id="ioc-config">(.*?)</script>', page, re.S).group(1))  # type: ignore[union-attr]
    assert [layer["id"] for layer in config["layers"]] == [
        "air-stations",
        "flood-gauges",
        "reports",
        "devices",
        "alarms",
    ]
    assert config["alarmsUrl"] == "/api/v1/alarms"
    assert config["eventsUrl"] == "/api/v1/events/stream"
    assert config["kpisUrl"] == "/api/v1/kpis"
    assert config["canAct"] is True
    assert config["i18n"]["dashboard.ack"] == "Xác nhận"
    assert config["i18n"]["kpi.status.on_track"] == "Đúng tiến độ"
    assert '<meta name="csrf-token" content="' in page
    for label in ('for="filter-ward"', 'for="filter-time"', 'data-layer-id="reports"', 'data-layer-id="alarms"'):
        assert label in page
    for script in ("map-clusters.js", "event-stream.js", "dashboard.js"):
        assert f"/static/{script}?v=" in page


def test_viewer_dashboard_has_no_alarm_actions(client: TestClient, make_user: MakeUser) -> None:
    _login(client, make_user("viewer").username)
    page = client.get("/dashboard").text
    config = json.loads(re.search(r'id="ioc-config">(.*?)</script>', page, re.S).group(1))  # type: ignore[union-attr]
    assert config["canAct"] is False and config["alarmsUrl"] == "/api/v1/alarms"


def test_reports_layer_follows_the_layer_contract(client: TestClient) -> None:
    code = client.get("/api/v1/reports/categories").json()[0]["code"]
    created = client.post(
        "/api/v1/reports",
        json={"category": code, "description": "Ổ gà lớn giữa đường", "lat": 18.6733, "lon": 105.6924, "public": True},
    )
    assert created.status_code == 201, created.text
    collection = client.get("/api/v1/reports/public.geojson").json()
    assert collection["type"] == "FeatureCollection" and collection["features"]
    props = collection["features"][0]["properties"]
    assert props["label"].startswith("#") and re.fullmatch(r"#[0-9a-f]{6}", props["colour"])
    assert props["status"] == "for_triage" and props["ward"] and props["time"]


# --------------------------------------------------------------------------- texts


def test_web_messages_exist_in_both_languages() -> None:
    messages = web_messages()
    assert set(messages["vi"]) == set(messages["en"])
    catalogue = build_catalogue(None)
    for lang in LANGUAGES:
        assert set(messages["vi"]) <= catalogue.keys(lang)
    assert catalogue.translate("dashboard.ack", "en") == "Acknowledge"


def test_home_config_for_live_cards(client: TestClient) -> None:
    page = client.get("/").text
    config = json.loads(re.search(r'id="ioc-config">(.*?)</script>', page, re.S).group(1))  # type: ignore[union-attr]
    assert config["kpisUrl"] == "/api/v1/kpis"
    # Only public layers of the kinds the cards summarise (air stations, flood gauges).
    assert all(layer["public"] and layer["kind"] in {"air", "flood"} for layer in config["layers"])
    assert "/static/home.js?v=" in page
    kpis = httpx.Response(200, content=client.get("/api/v1/kpis").content).json()
    assert all(k["public"] for k in kpis), "anonymous callers get public KPIs only"
