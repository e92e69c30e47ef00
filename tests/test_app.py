"""The app factory loads modules through ``setup(ctx)`` and serves what they registered."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import ioc.modules
from ioc.app import SERVING_GC_THRESHOLDS, BodyLimit, available_modules, create_app
from ioc.core.auth import Role
from ioc.settings import Settings

SAMPLE_MODULE = '''
"""A module written only for this test."""
from fastapi import APIRouter
from ioc.core.registry import KpiMeasure, ModuleContext, Panel

router = APIRouter()

@router.get("/api/v1/sample/ping")
def ping() -> dict[str, str]:
    return {"pong": "xin chào"}

def setup(ctx: ModuleContext) -> None:
    ctx.registry.add_router(router)
    ctx.registry.add_permission("sample:write", "Ghi mẫu", roles=("operator",))
    ctx.registry.add_panel(Panel(id="sample", title_key="sample.title", url="/api/v1/sample/ping"))
    ctx.registry.add_measure(KpiMeasure(name="sample.count", fn=lambda s, a, b, w: 42.0, unit="cái"))
    ctx.registry.add_translations("vi", {"sample.title": "Mẫu"})
    ctx.registry.allow_body("/api/v1/sample/upload", 5_000_000)
    ctx.extra["seen_settings_env"] = ctx.settings.env
'''


@pytest.fixture
def sample_module(tmp_path: Path) -> Iterator[str]:
    package = tmp_path / "modules_extra" / "sample_mod"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(SAMPLE_MODULE)
    (tmp_path / "modules_extra" / "broken_mod").mkdir()
    (tmp_path / "modules_extra" / "broken_mod" / "__init__.py").write_text('"""No setup here."""\n')
    ioc.modules.__path__.append(str(tmp_path / "modules_extra"))
    yield "sample_mod"
    ioc.modules.__path__.remove(str(tmp_path / "modules_extra"))
    for name in ("ioc.modules.sample_mod", "ioc.modules.broken_mod"):
        sys.modules.pop(name, None)


def test_a_module_registers_routes_permissions_panels_and_measures(sample_module: str, settings: Settings) -> None:
    assert sample_module in available_modules()
    app = create_app(settings.model_copy(update={"modules": [sample_module]}))
    registry = app.state.registry
    assert registry.modules == [sample_module]
    assert registry.panels[0].id == "sample"
    assert registry.measures["sample.count"].fn(None, date(2025, 1, 1), date(2025, 12, 31), None) == 42.0
    assert registry.translations["vi"]["sample.title"] == "Mẫu"
    assert "sample:write" in app.state.policy.permissions
    assert "sample:write" in app.state.policy.grants[Role.OPERATOR]
    assert "sample:write" not in app.state.policy.grants[Role.VIEWER]
    with TestClient(app) as client:
        assert client.get("/api/v1/sample/ping").json() == {"pong": "xin chào"}
    body_limit = app.middleware_stack
    while body_limit is not None and not isinstance(body_limit, BodyLimit):
        body_limit = getattr(body_limit, "app", None)
    assert body_limit is not None and body_limit.limit_for("/api/v1/sample/upload/x") == 5_000_000


def test_a_module_without_setup_is_refused(sample_module: str, settings: Settings) -> None:
    with pytest.raises(RuntimeError, match="setup"):
        create_app(settings.model_copy(update={"modules": ["broken_mod"]}))


def test_an_unknown_module_name_is_refused(settings: Settings) -> None:
    with pytest.raises(ModuleNotFoundError):
        create_app(settings.model_copy(update={"modules": ["khong_co"]}))


def test_oversized_bodies_get_413_before_the_app_reads_them(client: TestClient) -> None:
    big = b"x" * (1_048_576 + 1)
    r = client.post("/api/v1/auth/token", content=big, headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
    assert r.headers["content-type"].startswith("application/problem+json")


def test_chunked_oversized_bodies_are_cut_off(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"y" * 65_536

    r = client.post(
        "/api/v1/auth/token", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 413


def test_a_module_renders_its_own_page_in_the_shell_layout(
    sample_module: str, settings: Settings, tmp_path: Path
) -> None:
    templates = tmp_path / "sample_templates"
    templates.mkdir()
    (templates / "page.html").write_text(
        '{% extends "base.html" %}{% block content %}<p id="mau">Trang mẫu {{ word }}</p>{% endblock %}'
    )
    module_file = tmp_path / "modules_extra" / "sample_mod" / "__init__.py"
    module_file.write_text(
        module_file.read_text()
        + f"""
from pathlib import Path
from fastapi import Request
from ioc.core.pages import render_page

@router.get("/mau")
def page(request: Request):
    return render_page(request, "sample/page.html", word="xin chào")

_setup = setup
def setup(ctx):
    _setup(ctx)
    ctx.registry.add_templates("sample", Path({str(templates)!r}))
"""
    )
    app = create_app(settings.model_copy(update={"modules": [sample_module]}))
    with TestClient(app) as client:
        page = client.get("/mau")
    assert page.status_code == 200
    assert '<p id="mau">Trang mẫu xin chào</p>' in page.text
    assert 'lang="vi"' in page.text


def test_a_module_static_folder_under_static_is_served(sample_module: str, settings: Settings, tmp_path: Path) -> None:
    static = tmp_path / "sample_static"
    static.mkdir()
    (static / "mau.js").write_text("console.log('mẫu');")
    module_file = tmp_path / "modules_extra" / "sample_mod" / "__init__.py"
    module_file.write_text(
        module_file.read_text()
        + f"""
from pathlib import Path
_setup = setup
def setup(ctx):
    _setup(ctx)
    ctx.registry.add_static("/static/sample", Path({str(static)!r}))
"""
    )
    app = create_app(settings.model_copy(update={"modules": [sample_module]}))
    with TestClient(app) as client:
        assert client.get("/static/sample/mau.js").status_code == 200
        assert client.get("/static/app.css").status_code == 200


def test_a_serving_process_freezes_its_heap_once_started(settings: Settings) -> None:
    """Modules, routes and caches are kept out of the collector's full passes (``freeze_heap``)."""
    gc.unfreeze()
    thresholds = gc.get_threshold()
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() == 0  # the default (tests, tools): nothing frozen
        assert gc.get_threshold() == thresholds
    try:
        with TestClient(create_app(settings, freeze_heap=True)) as client:
            assert client.get("/healthz").status_code == 200
            assert gc.get_freeze_count() > 10_000
            assert gc.get_threshold() == SERVING_GC_THRESHOLDS  # young collections every 10,000 allocations
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
