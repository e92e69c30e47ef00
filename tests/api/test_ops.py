"""Operations endpoints: liveness, readiness, OpenAPI, security headers."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from ioc.app import create_app
from ioc.settings import Settings


def test_healthz_and_readyz(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["migrations"]["ok"] is True


def test_readyz_is_503_on_an_unmigrated_database(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}", var_dir=tmp_path))
    with TestClient(app) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["migrations"]["ok"] is False


def test_readyz_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    app = create_app(Settings(database_url="postgresql+psycopg://nobody@127.0.0.1:1/none", var_dir=tmp_path))
    client = TestClient(app)  # no lifespan: the bus would try to reach the database
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"].startswith("error")


def test_openapi_and_security_headers(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/api/v1/alarms" in spec["paths"] and "/api/v1/admin-units/locate" in spec["paths"]
    headers = client.get("/healthz").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"


def test_unknown_route_is_a_problem_document(client: TestClient) -> None:
    r = client.get("/api/v1/khong-co")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 404


def test_a_browser_gets_an_html_error_page_and_an_api_client_a_problem(client: TestClient) -> None:
    page = client.get("/khong-co-trang-nay", headers={"accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert 'lang="vi"' in page.text
    api = client.get("/api/v1/khong-co", headers={"accept": "text/html"})
    assert api.status_code == 404
    assert api.headers["content-type"].startswith("application/problem+json")


def test_an_unexpected_error_is_a_500_problem_without_internals(app: FastAPI) -> None:
    @app.get("/api/v1/hong")
    def broken() -> None:
        raise ZeroDivisionError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/api/v1/hong")
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "secret" not in r.text and r.json()["code"] == "internal-error"
