"""Conformance of subscriptions and the temporal API with the ETSI NGSI-LD test suite (GS CIM 009 v1.8).

Each test names the suite's test purposes (TP ids) it stands for; notifications go to a real HTTP
listener, as the suite's notification server.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from . import test_subscriptions as subs
from .conftest import CORE, LD, Ngsi
from .jsonld_server import ContextDocuments
from .test_subscriptions import Listener, create_sub

# the fixtures of test_subscriptions: fast delivery settings, this module only, a real HTTP listener
_fast_delivery = subs._fast_delivery
settings = subs.settings
listener = subs.listener

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
VOCAB = "https://example.org/suite#"
T = "/temporal/entities"


@pytest.fixture
def suite_context() -> Iterator[str]:
    server = ContextDocuments({"/suite.jsonld": {"@context": {"Building": VOCAB + "Building", "name": VOCAB + "name"}}})
    yield server.url_of("/suite.jsonld")
    server.close()


def building(n: int, **attrs: Any) -> dict[str, Any]:
    return {"id": f"urn:ngsi-ld:Building:{n}", "type": "Building", **attrs}


def prop(value: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **extra}


def sub(endpoint: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "Subscription",
        "entities": [{"type": "Building"}],
        "notification": {"endpoint": {"uri": endpoint}},
    }
    body.update(extra)
    return body


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# --------------------------------------------------------------------------- subscriptions


def test_subscription_reads_back_as_written(ngsi: Ngsi) -> None:
    """TP 028_01, 030_03, 031_01 (§5.8.3: no member the subscriber did not give), 028_06 (datasetId,
    §5.2.12 v1.8), 5811_02_03 (csf is a §4.9 query: invalid → 400, valid kept), 028_09 (Table 5.2.14.1-1:
    showChanges with keyValues/simplified → 400)."""
    given = sub(
        "http://example.org/n",
        timeInterval=5,
        notification={"format": "keyValues", "endpoint": {"uri": "http://example.org/n", "accept": "application/json"}},
    )
    sid = create_sub(ngsi, given)
    body = ngsi.get(f"/subscriptions/{sid}").json()
    assert "isActive" not in body and body["timeInterval"] == 5 and isinstance(body["timeInterval"], int)
    assert body["notification"] == given["notification"] and body["status"] == "active"
    paused = ngsi.get(f"/subscriptions/{create_sub(ngsi, sub('http://example.org/n', isActive=False))}").json()
    assert paused["isActive"] is False and paused["status"] == "paused"

    with_ds = create_sub(ngsi, sub("http://example.org/n", datasetId=["urn:ngsi-ld:Dataset:fr"], csf="p==1"))
    body = ngsi.get(f"/subscriptions/{with_ds}").json()
    assert body["datasetId"] == ["urn:ngsi-ld:Dataset:fr"] and body["csf"] == "p==1"

    bad = [
        sub("http://example.org/n", csf="(("),
        sub("http://example.org/n", datasetId=["not a uri"]),
        sub(
            "http://example.org/n",
            notification={"endpoint": {"uri": "http://e.org/n"}, "format": "keyValues", "showChanges": True},
        ),
        sub(
            "http://example.org/n",
            notification={"endpoint": {"uri": "http://e.org/n"}, "format": "simplified", "showChanges": True},
        ),
    ]
    for body in bad:
        r = ngsi.post("/subscriptions", json=body)
        assert r.status_code == 400 and r.json()["type"] == ERR + "BadRequestData", body
    simplified = sub(
        "http://example.org/n", notification={"endpoint": {"uri": "http://e.org/n"}, "format": "simplified"}
    )
    assert ngsi.post("/subscriptions", json=simplified).status_code == 201


def test_unavailable_jsonld_context_is_503(ngsi: Ngsi) -> None:
    """TP 028_07_02 (§5.8.1.4): a jsonldContext that cannot be loaded → 503 LdContextNotAvailable."""
    body = sub("http://example.org/n", jsonldContext=f"http://127.0.0.1:{closed_port()}/ctx.jsonld")
    r = ngsi.post("/subscriptions", json=body)
    assert r.status_code == 503 and r.json()["type"] == ERR + "LdContextNotAvailable"


def test_collection_methods_paging_links_and_version_preference(ngsi: Ngsi) -> None:
    """TP 029_01_01 (no id: 405), 031_02 (prev/next Link headers, §5.5.9), 436_09/436_10 (Prefer
    ngsi-ld=<version> per RFC 7240 → Preference-Applied, the Subscription unaltered)."""
    r = ngsi.patch("/subscriptions/", json={"type": "Subscription"})
    assert r.status_code == 405 and r.json()["type"] == ERR + "MethodNotAllowed"
    tenant = {"NGSILD-Tenant": "paging"}
    for _ in range(3):
        create_sub(ngsi, sub("http://example.org/n"), headers=tenant)
    for path in ("/subscriptions", "/subscriptions/"):  # the suite asks with the trailing slash
        r = ngsi.get(path, params={"limit": 1, "offset": 1}, headers={**tenant, "Accept": LD})
        assert len(r.json()) == 1
        assert sorted(r.headers["Link"].replace(" ", "").split(",")) == [
            '</ngsi-ld/v1/subscriptions?limit=1&offset=0>;rel="prev";type="application/ld+json"',
            '</ngsi-ld/v1/subscriptions?limit=1&offset=2>;rel="next";type="application/ld+json"',
        ], path
    last = ngsi.get("/subscriptions", params={"limit": 1, "offset": 2}, headers={**tenant, "Accept": LD})
    assert last.headers["Link"] == '</ngsi-ld/v1/subscriptions?limit=1&offset=1>;rel="prev";type="application/ld+json"'
    assert "Link" not in ngsi.get("/subscriptions", params={"limit": 15}, headers={**tenant, "Accept": LD}).headers

    sid = create_sub(
        ngsi, sub("http://example.org/n", notification={"endpoint": {"uri": "http://e.org/n"}, "attributes": ["name"]})
    )
    for prefer in ("ngsi-ld=1.0", "NGSI-LD=1.0", 'ngsi-ld="1.0"', "ngsi-ld=1.0;q=0.1", "respond-async, ngsi-ld=1.0"):
        r = ngsi.get(f"/subscriptions/{sid}", headers={"Prefer": prefer})
        assert r.status_code == 200 and r.headers["Preference-Applied"] == "ngsi-ld=1.0", prefer
        assert r.json()["notification"]["attributes"] == ["name"]
    assert "Preference-Applied" not in ngsi.get(f"/subscriptions/{sid}", headers={"Prefer": "respond-async"}).headers


def test_notification_context_link_and_jsonld_data(ngsi: Ngsi, listener: Listener, suite_context: str) -> None:
    """TP 046_10 (JSON: the subscription's @context, given as an array of one URL, in the Link header;
    no @context in data), 046_14 (JSON-LD: no Link, every entity of data carries the @context)."""
    ngsi.create({**building(1, name=prop("Eiffel Tower")), "@context": [suite_context]}, headers={"Content-Type": LD})
    create_sub(ngsi, {**sub(listener.url), "@context": [suite_context]}, headers={"Content-Type": LD})
    ld = sub(listener.url, notification={"endpoint": {"uri": listener.url, "accept": LD}})
    create_sub(ngsi, {**ld, "@context": [suite_context]}, headers={"Content-Type": LD})
    patch = {"name": prop("Tour Eiffel"), "@context": [suite_context]}
    assert (
        ngsi.patch("/entities/urn:ngsi-ld:Building:1/attrs", json=patch, headers={"Content-Type": LD}).status_code
        == 204
    )
    got = sorted((listener.next(), listener.next()), key=lambda g: g.headers["content-type"])
    as_json, as_ld = got
    assert (
        as_json.headers["link"]
        == f'<{suite_context}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
    )
    assert "@context" not in as_json.body["data"][0] and as_json.body["data"][0]["name"]["value"] == "Tour Eiffel"
    assert "link" not in as_ld.headers and as_ld.body["data"][0]["@context"] == [suite_context]


def test_percent_encoded_q_datasets_and_deleted_entity_sysattrs(ngsi: Ngsi, listener: Listener) -> None:
    """TP 046_05 (a q written percent-encoded matches), 046_19 (datasetId selects the notified
    instances, §5.2.12), 046_21_02 (entityDeleted with sysAttrs: id, type, createdAt, modifiedAt,
    deletedAt)."""
    fr = "urn:ngsi-ld:Dataset:fr"
    ngsi.create(building(1, name=[prop("Eiffel Tower"), prop("Tour Eiffel", datasetId=fr)], height=prop(300)))
    create_sub(ngsi, sub(listener.url, q='name=="Eiffel%20Tower"', watchedAttributes=["height"]))
    assert ngsi.patch("/entities/urn:ngsi-ld:Building:1/attrs", json={"height": prop(301)}).status_code == 204
    assert listener.next().body["data"][0]["height"]["value"] == 301

    ngsi.create(building(2, name=[prop("Eiffel Tower"), prop("Tour Eiffel", datasetId=fr)]))
    create_sub(ngsi, sub(listener.url, entities=[{"type": "Building", "id": "urn:ngsi-ld:Building:2"}], datasetId=[fr]))
    patch = {"name": prop("La Tour Eiffel", datasetId=fr)}
    assert ngsi.patch("/entities/urn:ngsi-ld:Building:2/attrs", json=patch).status_code == 204
    assert listener.next().body["data"][0]["name"] == prop("La Tour Eiffel", datasetId=fr)

    ngsi.create(building(3, name=prop("x")))
    only_3 = [{"type": "Building", "id": "urn:ngsi-ld:Building:3"}]
    note = {"endpoint": {"uri": listener.url}, "sysAttrs": True}
    create_sub(ngsi, sub(listener.url, entities=only_3, notificationTrigger=["entityDeleted"], notification=note))
    assert ngsi.delete("/entities/urn:ngsi-ld:Building:3").status_code == 204
    data = listener.next().body["data"]
    assert len(data) == 1 and set(data[0]) == {"id", "type", "createdAt", "modifiedAt", "deletedAt"}
    assert data[0]["createdAt"] <= data[0]["deletedAt"]


def test_subscription_read_right_after_delivery_shows_it(ngsi: Ngsi, listener: Listener) -> None:
    """TP 046_11, 046_12 (§5.8.6): the suite reads the subscription as soon as its endpoint answered;
    timesSent, status, lastNotification and lastSuccess already reflect that delivery."""
    ngsi.create(building(1, name=prop("x")))
    for n in range(3):
        sid = create_sub(ngsi, sub(listener.url, entities=[{"type": "Building", "id": "urn:ngsi-ld:Building:1"}]))
        assert ngsi.patch("/entities/urn:ngsi-ld:Building:1/attrs", json={"name": prop(f"v{n}")}).status_code == 204
        listener.next()
        note = ngsi.get(f"/subscriptions/{sid}").json()["notification"]
        assert note["timesSent"] == 1 and note["status"] == "ok", note
        assert note["lastNotification"].endswith("Z") and note["lastSuccess"].endswith("Z")
        ngsi.delete(f"/subscriptions/{sid}")


# --------------------------------------------------------------------------- temporal

VEHICLE = {
    "id": "urn:ngsi-ld:Vehicle:1",
    "type": "Vehicle",
    "speed": [prop(120, observedAt="2020-08-01T12:03:00Z"), prop(80, observedAt="2020-08-01T12:05:00Z")],
    "fuelLevel": [prop(67, observedAt="2020-08-01T12:03:00Z"), prop(53, observedAt="2020-08-01T13:05:00Z")],
}


def test_temporal_values_and_aggregated_periods_as_the_suite_writes_them(ngsi: Ngsi) -> None:
    """TP 020_11_01 (aggregated period bounds in whole seconds) and the temporalValues
    representation (§4.5.9): values as written (120, not 120.0) with the instances' observedAt."""
    assert ngsi.post(T, json=VEHICLE).status_code == 201
    r = ngsi.get(
        f"{T}/urn:ngsi-ld:Vehicle:1",
        params={"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "PT1H"},
    )
    assert r.status_code == 200
    assert r.json()["fuelLevel"]["avg"] == [
        [67.0, "2020-08-01T12:03:00Z", "2020-08-01T13:03:00Z"],
        [53.0, "2020-08-01T13:03:00Z", "2020-08-01T14:03:00Z"],
    ]
    simple = ngsi.get(f"{T}/urn:ngsi-ld:Vehicle:1", params={"options": "temporalValues"}).json()
    assert simple["speed"]["values"] == [[120, "2020-08-01T12:03:00Z"], [80, "2020-08-01T12:05:00Z"]]
    assert all(isinstance(v, int) for v, _ in simple["speed"]["values"])


def test_temporal_pick_and_omit(ngsi: Ngsi) -> None:
    """Temporal pick/omit (§4.21, TP expectations vehicle-pick-id-speed, vehicle-omit-type-speed)."""
    assert ngsi.post(T, json=VEHICLE).status_code == 201
    url = f"{T}/urn:ngsi-ld:Vehicle:1"
    assert set(ngsi.get(url, params={"pick": "id,speed"}).json()) == {"id", "speed"}
    assert set(ngsi.get(url, params={"omit": "type,speed"}).json()) == {"id", "fuelLevel"}
    listed = ngsi.get(T, params={"type": "Vehicle", "pick": "speed"}).json()
    assert [set(e) for e in listed] == [{"speed"}]
    r = ngsi.get(url, params={"pick": "id", "omit": "type"})
    assert r.status_code == 400 and r.json()["type"] == ERR + "BadRequestData"


def test_temporal_query_with_a_query_body(ngsi: Ngsi) -> None:
    """POST /temporal/entityOperations/query (§5.7.4, §6.24; TP 021_25 and the temporalQ data files):
    temporalQ carries the time relation and the aggregation, aggrMethods as an array or a string."""
    assert ngsi.post(T, json=VEHICLE).status_code == 201
    path = "/temporal/entityOperations/query"
    after = {
        "type": "Query",
        "entities": [{"type": "Vehicle"}],
        "temporalQ": {"timerel": "after", "timeAt": "2020-08-01T12:04:00Z"},
    }
    r = ngsi.post(path, json=after)
    assert r.status_code == 200 and CORE in r.headers["Link"]
    (entity,) = r.json()
    assert [i["value"] for i in entity["speed"]] == [80] and [i["value"] for i in entity["fuelLevel"]] == [53]
    aggr = {**after, "temporalQ": {"timerel": "after", "timeAt": "2020-08-01T12:00:00Z", "aggrMethods": ["max"]}}
    r = ngsi.post(path, json=aggr, params={"options": "aggregatedValues"})
    assert r.status_code == 200 and r.json()[0]["speed"]["max"][0][0] == 120
    for temporal_q in ({"timerel": "between", "timeAt": "2020-08-01T12:00:00Z"}, {"lastN": 0}, {"timerel": "sometime"}):
        r = ngsi.post(path, json={**after, "temporalQ": temporal_q})
        assert r.status_code == 400 and r.json()["type"] == ERR + "BadRequestData", temporal_q
