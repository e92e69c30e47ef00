"""NGSI-LD routing (``ioc.modules.context.errors``): entity ids holding ``/``, the ``/attrs``
boundary between an entity and its attributes, trailing slashes, and the order routes are tried in."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from fastapi import APIRouter, FastAPI
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from ioc.modules.context.errors import DirectRoute, EntityIdConvertor, NgsiRoute, direct_routes
from ioc.modules.context.http import PREFIX

from .conftest import Ngsi, vehicle

ENTITY_ID = re.compile(f"^{EntityIdConvertor.regex}$")


@pytest.mark.parametrize(
    ("text", "is_entity_id"),
    [
        ("urn:ngsi-ld:Vehicle:1", True),
        ("http://example.org/cars/1", True),
        ("http://example.org/attrsx/1", True),  # a segment that only begins with attrs
        ("urn:ngsi-ld:V:1/attrs", False),
        ("urn:ngsi-ld:V:1/attrs/speed", False),
        ("http://example.org/attrs/1", False),
        ("", False),
    ],
)
def test_an_entity_id_in_a_route_never_holds_an_attrs_segment(text: str, is_entity_id: bool) -> None:
    assert bool(ENTITY_ID.match(text)) is is_entity_id


def test_ids_with_slashes_and_the_attrs_boundary_route_as_before(ngsi: Ngsi) -> None:
    """Retrieve and Update Attributes come first among the routes; an id with slashes still reaches
    them, and a path with an /attrs segment still reaches the attribute routes behind them."""
    eid = "http://example.org/cars/1"
    ngsi.create({"id": eid, "type": "Vehicle", "speed": {"type": "Property", "value": 1}})
    r = ngsi.get(f"/entities/{eid}")
    assert r.status_code == 200 and r.json()["id"] == eid
    r = ngsi.get(f"/entities/{quote(eid, safe='')}/")  # a trailing slash is not significant
    assert r.status_code == 200 and r.json()["id"] == eid
    assert ngsi.patch(f"/entities/{eid}/attrs", json={"speed": {"type": "Property", "value": 2}}).status_code == 204
    assert ngsi.get(f"/entities/{eid}").json()["speed"]["value"] == 2
    # an attribute named "attrs" is reached by the attribute's own route, not taken for an id
    assert ngsi.post(f"/entities/{eid}/attrs", json={"attrs": {"type": "Property", "value": 1}}).status_code == 204
    assert ngsi.patch(f"/entities/{eid}/attrs/attrs", json={"value": 5}).status_code == 204
    assert ngsi.get(f"/entities/{eid}").json()["attrs"]["value"] == 5
    # reading an attribute by its path is not an operation of the API (§6.3.3)
    for path in (f"/entities/{eid}/attrs", f"/entities/{eid}/attrs/speed"):
        r = ngsi.get(path)
        assert r.status_code == 405 and r.json()["type"].endswith("MethodNotAllowed"), path
    r = ngsi.get("/no/such/resource")
    assert r.status_code == 404 and r.json()["type"].endswith("ResourceNotFound")


def test_a_route_turns_away_a_path_without_its_literal_part_and_keeps_partial_matches() -> None:
    """The literal check only rejects what the route's pattern would reject: a path of another
    method is still a partial match (405 where no route takes the method)."""
    app = FastAPI()

    def handler() -> None:
        return None

    route = NgsiRoute("/ngsi-ld/v1/entities/{entity_id:entity_id}", handler, methods=["GET"])
    assert route.literal_prefix == "/ngsi-ld/v1/entities/"

    def scope(method: str, path: str, root_path: str = "") -> dict[str, object]:
        return {"type": "http", "method": method, "path": path, "root_path": root_path, "app": app}

    assert route.matches(scope("GET", "/ngsi-ld/v1/temporal/entities/urn:x:1"))[0] is Match.NONE
    match, child = route.matches(scope("GET", "/ngsi-ld/v1/entities/urn:x:1/"))
    assert match is Match.FULL and child["path_params"] == {"entity_id": "urn:x:1"}
    assert route.matches(scope("DELETE", "/ngsi-ld/v1/entities/urn:x:1"))[0] is Match.PARTIAL
    assert route.matches(scope("GET", "/ngsi-ld/v1/entities/urn:x:1/attrs"))[0] is Match.NONE
    assert route.matches(scope("GET", "/city/ngsi-ld/v1/entities/urn:x:1", "/city"))[0] is Match.FULL


def test_retrieve_and_update_attributes_are_served_directly_ahead_of_the_routers(ngsi: Ngsi) -> None:
    """The two most frequent requests skip FastAPI's route machinery (``DirectRoute``) and answer as
    every NGSI-LD route does; OpenAPI still documents them from their router."""
    app = ngsi.client.app
    first = app.router.routes[:2]
    assert [type(r) for r in first] == [DirectRoute, DirectRoute]
    assert [(r.name, r.methods) for r in first] == [("retrieve_entity", {"GET"}), ("update_attrs", {"PATCH"})]
    served: list[str] = []
    for route in first:  # which route answered: the direct one, not its APIRoute behind
        route.app = _recording(route.app, route.name, served)
    tenant = {"NGSILD-Tenant": "direct"}
    ngsi.create(vehicle(1), headers=tenant)
    r = ngsi.get("/entities/urn:ngsi-ld:Vehicle:1", headers=tenant)
    assert r.status_code == 200 and r.json()["id"] == "urn:ngsi-ld:Vehicle:1"
    assert r.headers["NGSILD-Tenant"] == "direct"  # §6.3.14
    assert "nosniff" in r.headers["X-Content-Type-Options"]  # the app's middleware still runs
    r = ngsi.get("/entities/urn:ngsi-ld:Vehicle:2", headers=tenant)  # errors: ProblemDetails, tenant echoed
    assert r.status_code == 404 and r.json()["type"].endswith("ResourceNotFound")
    assert r.headers["NGSILD-Tenant"] == "direct"
    r = ngsi.get("/entities/urn:ngsi-ld:Vehicle:1?options=bogus", headers=tenant)
    assert r.status_code == 400 and r.json()["type"].endswith("InvalidRequest")
    body = {"speed": {"type": "Property", "value": 9}}
    assert ngsi.patch("/entities/urn:ngsi-ld:Vehicle:1/attrs", json=body, headers=tenant).status_code == 204
    chunked = ngsi.client.patch(  # §6.3.4: no Content-Length, a bare 411
        f"{PREFIX}/entities/urn:ngsi-ld:Vehicle:1/attrs",
        content=iter([b'{"speed": {"type": "Property", "value": 1}}']),
        headers={**ngsi.auth, "Content-Type": "application/json"},
    )
    assert chunked.status_code == 411 and chunked.content == b""
    assert served == ["retrieve_entity", "retrieve_entity", "retrieve_entity", "update_attrs", "update_attrs"]
    assert ngsi.get("/entities/urn:ngsi-ld:Vehicle:1", headers=tenant).json()["speed"]["value"] == 9
    # another method on the same path is still answered by its own route, or refused as before
    assert ngsi.delete("/entities/urn:ngsi-ld:Vehicle:1", headers=tenant).status_code == 204
    r = ngsi.post("/entities/urn:ngsi-ld:Vehicle:1", json={}, headers=tenant)  # the catch-all's
    assert r.status_code == 404 and r.json()["type"].endswith("ResourceNotFound")
    r = ngsi.request("HEAD", "/entities/urn:ngsi-ld:Vehicle:1", headers=tenant)
    assert r.status_code == 405 and r.headers["Allow"] == "GET"
    paths = app.openapi()["paths"]
    assert "get" in paths[f"{PREFIX}/entities/{{entity_id}}"]
    assert "patch" in paths[f"{PREFIX}/entities/{{entity_id}}/attrs"]


def _recording(app: ASGIApp, name: str, served: list[str]) -> ASGIApp:
    async def recorded(scope: Scope, receive: Receive, send: Send) -> None:
        served.append(name)
        await app(scope, receive, send)

    return recorded


def test_a_direct_route_takes_only_an_endpoint_that_reads_its_own_parameters() -> None:
    def declared(entity_id: str) -> None:
        return None

    route = NgsiRoute("/ngsi-ld/v1/entities/{entity_id:entity_id}", declared, methods=["GET"], name="declared")
    with pytest.raises(ValueError, match="reads its own parameters"):
        DirectRoute(route)
    router = APIRouter(route_class=NgsiRoute)
    router.routes.append(route)
    with pytest.raises(ValueError, match="no NGSI-LD route named"):
        direct_routes(router, ("retrieve_entity",))
