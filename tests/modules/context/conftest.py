"""Fixtures of the NGSI-LD tests: a client with write credentials, helpers for common requests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ioc.core.auth import User

LD = "application/ld+json"
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
BASE = "/ngsi-ld/v1"


class Ngsi:
    """A TestClient with an operator's bearer token on every request."""

    def __init__(self, client: TestClient, headers: dict[str, str]) -> None:
        self.client = client
        self.auth = headers

    def request(self, method: str, path: str, *, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        return self.client.request(method, BASE + path, headers={**self.auth, **(headers or {})}, **kw)

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.request("POST", path, **kw)

    def patch(self, path: str, **kw: Any) -> Any:
        return self.request("PATCH", path, **kw)

    def put(self, path: str, **kw: Any) -> Any:
        return self.request("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)

    def host(self, context: Any, **kw: Any) -> str:
        """Add ``context`` (POST /jsonldContexts): the URL it is served at. The ``Location`` is a
        path, as for every other resource the broker creates (050_01, 053_02)."""
        r = self.post("/jsonldContexts", json={"@context": context}, headers={"Content-Type": LD}, **kw)
        assert r.status_code == 201, r.text
        location = str(r.headers["Location"])
        assert location.startswith(BASE + "/jsonldContexts/"), location
        return str(self.client.base_url.join(location))

    def create(self, entity: dict[str, Any], **kw: Any) -> Any:
        r = self.post("/entities", json=entity, **kw)
        assert r.status_code == 201, r.text
        return r


def link_to(url: str) -> str:
    """A ``Link`` header value naming the @context at ``url``."""
    return f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


@pytest.fixture
def ngsi(client: TestClient, make_user: Callable[..., User], token_headers: Callable[[User], dict[str, str]]) -> Ngsi:
    return Ngsi(client, token_headers(make_user("operator")))


def vehicle(n: int = 1, **attrs: Any) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "id": f"urn:ngsi-ld:Vehicle:{n}",
        "type": "Vehicle",
        "speed": {"type": "Property", "value": 10 * n, "unitCode": "KMH", "observedAt": "2025-01-01T00:00:00Z"},
        "brand": {"type": "Property", "value": f"brand{n}"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [105.68 + n / 1000, 18.67]}},
    }
    entity.update(attrs)
    return entity
