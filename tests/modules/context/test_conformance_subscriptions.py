"""Subscriptions and notifications against the ETSI NGSI-LD conformance suite (GS CIM 009 v1.8).

Each test replays the requests of the suite's test purposes (TP ids in the docstrings) as the suite
writes them: its payloads under its own @context (served here over real HTTP), notifications to a real
HTTP listener, and the suite's expectations compared member by member. 028_07_02, 031_02, 436_09/10,
046_10 and 046_14 are in test_conformance_subs_temporal.py, 49_01 in test_linked.py.

Notes: 046_20, 046_41 and 046_23..30 create an attribute with PATCH /entities/{id}/attrs, which the
broker appends (204; the §5.6.2 text of v1.9.1, 011_01_03). The suite's data for 046_22_06/07 (a
mis-encoded ``París``) and 046_37 (a LanguageProperty Null as a plain string) are not followed; see
docs/CONTEXT.md, Subscriptions.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from . import test_subscriptions as subs
from .conftest import CORE, LD, Ngsi
from .jsonld_server import ContextDocuments
from .test_subscriptions import Listener, Received

# the fixtures of test_subscriptions: fast delivery settings, this module only, a real HTTP listener
_fast_delivery = subs._fast_delivery
settings = subs.settings
listener = subs.listener

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
NULL = "urn:ngsi-ld:null"
VOCAB = "https://ngsi-ld-test-suite/context#"
TERMS = (
    "Building",
    "City",
    "Tower",
    "Vehicle",
    "airQualityLevel",
    "almostFull",
    "jsonProperty",
    "locatedAt",
    "name",
    "street",
    "subCategory",
    "vocabProperty",
)
FR = "urn:ngsi-ld:Dataset:french-name"
DE = "urn:ngsi-ld:Dataset:german-name"
ES = "urn:ngsi-ld:Dataset:spanish-name"


class SuiteContexts(ContextDocuments):
    """The suite's @context documents over real HTTP: the compound one imports its terms and the core."""

    def __init__(self) -> None:
        super().__init__()
        self.terms_url = self.url_of("/ngsi-ld-test-suite.jsonld")
        self.documents["/ngsi-ld-test-suite.jsonld"] = {"@context": {t: VOCAB + t for t in TERMS}}
        self.documents["/ngsi-ld-test-suite-compound.jsonld"] = {"@context": [self.terms_url, CORE]}
        self.url = self.url_of("/ngsi-ld-test-suite-compound.jsonld")

    def link(self) -> dict[str, str]:
        return {"Link": f'<{self.url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'}


@pytest.fixture
def suite() -> Iterator[SuiteContexts]:
    contexts = SuiteContexts()
    yield contexts
    contexts.close()


def prop(value: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **extra}


def rel(obj: str, **extra: Any) -> dict[str, Any]:
    return {"type": "Relationship", "object": obj, **extra}


LOCATION = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [-8.5, 41.2]}}
STREET = {"type": "LanguageProperty", "languageMap": {"fr": "Grand Place", "nl": "Grote Markt"}}
JSON_VALUE = {"id": "some-id", "type": "some-type", "null": None, "anythingElse": "anything-else"}


def simple_attributes() -> dict[str, Any]:
    """data/entities/building-simple-attributes.jsonld"""
    return {
        "name": prop("Eiffel Tower"),
        "subCategory": prop("tourism"),
        "airQualityLevel": prop(4, unitCode="C62", observedAt="2020-09-09T16:40:00.000Z"),
        "almostFull": prop(False),
    }


def multi_instances() -> dict[str, Any]:
    """data/entities/building-multi-instances-attributes.jsonld"""
    return {
        "name": [prop("Eiffel Tower"), prop("Tour Eiffel", datasetId=FR), prop("Eiffelturm", datasetId=DE)],
        "locatedAt": [
            rel("urn:ngsi-ld:City:Paris"),
            rel("urn:ngsi-ld:Ville:Paris", datasetId=FR),
            rel("urn:ngsi-ld:Ciudad:Madrid", datasetId=ES),
        ],
    }


def different_types() -> dict[str, Any]:
    """data/entities/building-different-attributes-types.jsonld"""
    return {
        "name": prop("Eiffel Tower"),
        "locatedAt": rel("urn:ngsi-ld:City:Paris"),
        "location": LOCATION,
        "street": STREET,
    }


class Suite:
    """The requests of the suite's keywords (ContextInformationProvision / Subscription resources)."""

    def __init__(self, ngsi: Ngsi, contexts: SuiteContexts, listener: Listener) -> None:
        self.ngsi = ngsi
        self.ctx = contexts
        self.listener = listener

    def ld(self, body: dict[str, Any], context: str | None = None) -> dict[str, Any]:
        return {**body, "@context": [context or self.ctx.url]}

    def create_entity(self, eid: str, attrs: dict[str, Any], etype: str = "Building") -> None:
        r = self.ngsi.post("/entities", json=self.ld({"id": eid, "type": etype, **attrs}), headers={"Content-Type": LD})
        assert r.status_code == 201, r.text

    def subscribe(
        self,
        sub: dict[str, Any],
        *,
        entity_id: str | None = None,
        endpoint: bool = True,
        keep_id: bool = False,
        context: str | None = None,
    ) -> str:
        """Create Subscription From Subscription Payload (a new random id, the reachable endpoint and the
        entity id, as the suite sets them)."""
        body = json.loads(json.dumps(sub))
        if not keep_id:
            body["id"] = f"urn:ngsi-ld:Subscription:{uuid.uuid4()}"
        if endpoint:
            body["notification"].setdefault("endpoint", {})["uri"] = self.listener.url
        if entity_id is not None:
            body["entities"][0]["id"] = entity_id
        r = self.ngsi.post("/subscriptions", json=self.ld(body, context), headers={"Content-Type": LD})
        assert r.status_code == 201, r.text
        return str(r.headers["Location"].rsplit("/", 1)[1])

    def update_attrs(self, eid: str, fragment: dict[str, Any]) -> Any:
        """Update Entity Attributes: PATCH /entities/{id}/attrs/ with a JSON-LD fragment."""
        return self.ngsi.patch(f"/entities/{eid}/attrs/", json=self.ld(fragment), headers={"Content-Type": LD})

    def delete_attr(self, eid: str, attr: str, **params: str) -> None:
        r = self.ngsi.delete(f"/entities/{eid}/attrs/{attr}", params=params, headers=self.ctx.link())
        assert r.status_code == 204, r.text

    def notification(self, sid: str) -> Received:
        got = self.listener.next(timeout=10)
        assert got.body["subscriptionId"] == sid and got.body["type"] == "Notification"
        return got


@pytest.fixture
def tp(ngsi: Ngsi, suite: SuiteContexts, listener: Listener) -> Suite:
    return Suite(ngsi, suite, listener)


def as_the_suite_reads(subscription: dict[str, Any]) -> dict[str, Any]:
    """A subscription as the suite compares it (028_01, 030_03, 031): without ``jsonldContext``, the
    URL of the @context implicitly created for a request whose @context is not one URI (§5.13)."""
    return {k: v for k, v in subscription.items() if k != "jsonldContext"}


def sub(*, notification: dict[str, Any] | None = None, **members: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"urn:ngsi-ld:Subscription:{uuid.uuid4()}",
        "type": "Subscription",
        "entities": [{"type": "Building"}],
        "notification": notification or {"endpoint": {"uri": "http://localhost:1111/notify"}},
    }
    body.update(members)
    return body


def endpoint(accept: str | None = "application/json", **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"uri": "http://localhost:1111/notify", **extra}
    if accept:
        out["accept"] = accept
    return out


def error(r: Any) -> str:
    return str(r.json()["type"]).removeprefix(ERR)


# --------------------------------------------------------------------------- create / retrieve / query


def test_create_and_retrieve_as_the_suite_compares(tp: Suite) -> None:
    """TP 028_01_01 (read back as JSON-LD), 030_03_01 (as JSON), 028_06 (with datasetId), 5811_01_03
    (no id: one is generated)."""
    given = sub(
        timeInterval=5,
        notification={"format": "keyValues", "endpoint": endpoint()},
    )
    sid = given["id"]
    r = tp.ngsi.post("/subscriptions", json=tp.ld(given), headers={"Content-Type": LD})
    assert r.status_code == 201 and r.headers["Location"] == f"/ngsi-ld/v1/subscriptions/{sid}"
    expected = {
        "id": sid,
        "type": "Subscription",
        "timeInterval": 5,
        "entities": [{"type": "Building"}],
        "notification": {"format": "keyValues", "endpoint": endpoint()},
        "status": "active",
        "notificationTrigger": ["attributeCreated", "attributeUpdated"],
    }
    r = tp.ngsi.get(f"/subscriptions/{sid}", headers={"Accept": LD, **tp.ctx.link()})
    assert r.status_code == 200 and as_the_suite_reads(r.json()) == {**expected, "@context": tp.ctx.url}
    r = tp.ngsi.get(f"/subscriptions/{sid}", headers=tp.ctx.link())
    assert as_the_suite_reads(r.json()) == expected
    # the @context, given as an array, was hosted as ImplicitlyCreated: the jsonldContext (050_03, 052_06)
    implicit = r.json()["jsonldContext"].rsplit("/", 1)[1]
    assert tp.ngsi.get(f"/jsonldContexts/{implicit}").json() == {"@context": tp.ld({})["@context"]}
    listed = tp.ngsi.get("/jsonldContexts", params={"kind": "ImplicitlyCreated", "details": "true"}).json()
    assert [(c["localId"], c["kind"]) for c in listed] == [(implicit, "ImplicitlyCreated")]
    assert tp.ngsi.delete(f"/jsonldContexts/{implicit}", params={"reload": "true"}).status_code == 400  # 051_07

    with_ds = sub(datasetId=[FR], notification={"format": "normalized", "endpoint": endpoint(LD)})
    sid = tp.subscribe(with_ds, endpoint=False)
    r = tp.ngsi.get(f"/subscriptions/{sid}", headers={"Accept": LD, **tp.ctx.link()})
    assert as_the_suite_reads(r.json()) == {
        "id": sid,
        "type": "Subscription",
        "entities": [{"type": "Building"}],
        "notificationTrigger": ["attributeCreated", "attributeUpdated"],
        "notification": with_ds["notification"],
        "datasetId": [FR],
        "status": "active",
        "@context": tp.ctx.url,
    }

    anonymous = {k: v for k, v in sub().items() if k != "id"}
    r = tp.ngsi.post("/subscriptions", json=tp.ld(anonymous), headers={"Content-Type": LD})
    assert r.status_code == 201
    generated = r.headers["Location"].rsplit("/", 1)[1]
    assert generated.startswith("urn:ngsi-ld:Subscription:")
    assert tp.ngsi.get(f"/subscriptions/{generated}", headers={"Accept": LD, **tp.ctx.link()}).status_code == 200


def test_create_refusals(tp: Suite) -> None:
    """TP 028_02_01/02 (malformed → InvalidRequest, empty → BadRequestData), 028_03_01/02 (invalid and
    empty id), 028_04_01 (409), 028_05_01/02 (throttling with timeInterval, negative), 028_07_01 (invalid
    jsonldContext), 028_08_01..03 (pick/omit/attributes), 028_09 (Table 5.2.14.1-1), 028_10 (KeyValuePair),
    5811_01_01 (expiresAt in the past), 5811_02_01/03 (trigger, csf)."""
    ngsi = tp.ngsi
    r = ngsi.post("/subscriptions", content=b'{"id":"urn:x",,"type":"Subscription"}', headers={"Content-Type": LD})
    assert r.status_code == 400 and error(r) == "InvalidRequest" and r.json()["title"]
    r = ngsi.post("/subscriptions", content=b"{}", headers={"Content-Type": LD})
    assert r.status_code == 400 and error(r) == "BadRequestData", r.text
    base = sub(timeInterval=5, notification={"format": "keyValues", "endpoint": endpoint()})
    refused = [
        {**base, "id": "invalidId"},
        {**base, "id": ""},
        {**base, "throttling": 30, "timeInterval": 10},
        {**sub(notification={"format": "keyValues", "endpoint": endpoint()}), "throttling": -30},
        {**base, "jsonldContext": "unknownContext"},
        sub(notification={"endpoint": endpoint(), "pick": ["id", "name"], "omit": ["name"]}),
        sub(notification={"endpoint": endpoint(), "pick": ["name"], "attributes": ["name"]}),
        sub(notification={"endpoint": endpoint(), "omit": ["name"], "attributes": ["name"]}),
        sub(notification={"endpoint": endpoint(), "format": "keyValues", "showChanges": True}),
        sub(notification={"endpoint": endpoint(), "format": "simplified", "showChanges": True}),
        sub(notification={"endpoint": endpoint(), "attributes": []}),
        sub(notification={"endpoint": endpoint(), "pick": []}),
        sub(notification={"endpoint": endpoint(), "omit": []}),
        sub(notification={"endpoint": endpoint(receiverInfo=[{"key": "K", "value": 42}])}),
        sub(notification={"endpoint": endpoint(notifierInfo=[{"key": "K", "value": {"a": 1}}])}),
        sub(notification={"endpoint": endpoint(receiverInfo=[{"key": "K"}])}),
        sub(notification={"endpoint": endpoint(receiverInfo=[{"key": 5, "value": "v"}])}),
        sub(expiresAt="2000-01-01T00:00:00Z"),
        sub(notificationTrigger=["entityChanged"]),
        sub(csf="(("),
    ]
    for body in refused:
        r = ngsi.post("/subscriptions", json=tp.ld(body), headers={"Content-Type": LD})
        assert r.status_code == 400 and error(r) == "BadRequestData" and r.json()["title"], (body, r.text)
    tp.subscribe(base, endpoint=False, keep_id=True)
    r = ngsi.post("/subscriptions", json=tp.ld(base), headers={"Content-Type": LD})
    assert r.status_code == 409 and error(r) == "AlreadyExists"
    accepted = [
        sub(notification={"endpoint": endpoint(), "format": "normalized", "showChanges": True}),
        sub(
            notification={
                "endpoint": endpoint(
                    receiverInfo=[{"key": "Authorization", "value": "Bearer abc"}],
                    notifierInfo=[{"key": "Prefer", "value": "body=json"}],
                )
            }
        ),
        sub(
            notificationTrigger=[
                "entityCreated",
                "entityUpdated",
                "entityDeleted",
                "attributeCreated",
                "attributeUpdated",
                "attributeDeleted",
            ]
        ),
    ]
    for body in accepted:
        tp.subscribe(body, endpoint=False)


def test_update_retrieve_delete_by_id(tp: Suite) -> None:
    """TP 029_01_01/02 (no id: 405; invalid id: 400), 029_02_01 (unknown: 404), 029_03_01 (an invalid
    fragment: 400), 029_04_01 (endpoint set to null: 400), 029_11_01 (expiresAt in the past: 400),
    030_01_01/030_02_01 (retrieve: invalid id 400, unknown 404), 032_01_01/02, 032_02_01, 032_03_01."""
    ngsi = tp.ngsi
    fragment = {
        "type": "Subscription",
        "notification": {"format": "keyValues", "endpoint": {"uri": "http://my.second.endpoint.org/notify"}},
    }
    r = ngsi.patch("/subscriptions/", json=fragment)
    assert r.status_code == 405
    for method in ("PATCH", "GET", "DELETE"):
        r = ngsi.request(method, "/subscriptions/InvalidUri", json=fragment if method == "PATCH" else None)
        assert r.status_code == 400 and error(r) == "BadRequestData" and r.json()["title"], method
        r = ngsi.request(
            method,
            "/subscriptions/urn:ngsi-ld:Subscription:unknowSubscription",
            json=fragment if method == "PATCH" else None,
        )
        assert r.status_code == 404 and error(r) == "ResourceNotFound" and r.json()["title"], method
    assert ngsi.delete("/subscriptions/").status_code == 405
    sid = tp.subscribe(
        sub(timeInterval=5, notification={"format": "keyValues", "endpoint": endpoint()}), endpoint=False
    )
    for bad in (
        {"type": "Subscription", "notification": {"format": "keyValues", "endpoint": None}},
        {"type": "Subscription", "expiresAt": "2020-08-01T22:07:00Z"},
        {"type": "Subscription", "timeInterval": "ten"},
        {"type": "Subscription", "entities": [{"id": "urn:ngsi-ld:Building:1"}]},
        {"type": "Subscription", "notification": {"endpoint": {"uri": "not a uri"}}},
        {"type": "Subscription", "isActive": "yes"},
    ):
        r = ngsi.patch(f"/subscriptions/{sid}", json=bad)
        assert r.status_code == 400 and error(r) == "BadRequestData" and r.json()["title"], bad
    r = ngsi.delete(f"/subscriptions/{sid}")
    assert r.status_code == 204 and r.content == b""
    assert ngsi.get(f"/subscriptions/{sid}").status_code == 404


def test_update_and_read_back(tp: Suite) -> None:
    """TP 029_05_01/02 (term to URI expansion: read back compacted with the suite's @context, expanded
    without it), 029_06_01 (the fragment's notification replaces the stored one)."""
    ngsi = tp.ngsi
    given = sub(timeInterval=5, notification={"format": "keyValues", "endpoint": endpoint()})
    sid = tp.subscribe(given, endpoint=False)
    vehicle_fragment = {
        "type": "Subscription",
        "entities": [{"type": "Vehicle"}],
        "notification": {"format": "keyValues", "endpoint": endpoint()},
    }
    r = ngsi.patch(f"/subscriptions/{sid}", json=vehicle_fragment, headers=tp.ctx.link())
    assert r.status_code == 204 and r.content == b""
    expected = {
        "id": sid,
        "type": "Subscription",
        "entities": [{"type": "Vehicle"}],
        "timeInterval": 5,
        "notification": {"format": "keyValues", "endpoint": endpoint()},
        "status": "active",
        "notificationTrigger": ["attributeCreated", "attributeUpdated"],
    }
    assert as_the_suite_reads(ngsi.get(f"/subscriptions/{sid}", headers=tp.ctx.link()).json()) == expected
    expanded = as_the_suite_reads(ngsi.get(f"/subscriptions/{sid}").json())
    assert expanded == {**expected, "entities": [{"type": VOCAB + "Vehicle"}]}

    second = {
        "type": "Subscription",
        "notification": {
            "format": "keyValues",
            "endpoint": {"uri": "http://my.second.endpoint.org/notify", "accept": "application/json"},
        },
    }
    assert ngsi.patch(f"/subscriptions/{sid}", json=second, headers=tp.ctx.link()).status_code == 204
    r = ngsi.get(f"/subscriptions/{sid}", headers={"Accept": LD, **tp.ctx.link()})
    assert as_the_suite_reads(r.json()) == {**expected, "notification": second["notification"], "@context": tp.ctx.url}


def test_status_follows_is_active_and_expires_at(tp: Suite) -> None:
    """TP 029_07_01, 029_08_01 (paused → active), 029_09_01 (→ paused), 029_10_01 (expired, then a
    future expiresAt → active), 5811_01_02 (isActive false → paused), 5811_02_04 (read-only members)."""
    ngsi = tp.ngsi

    def status(sid: str) -> str:
        return str(ngsi.get(f"/subscriptions/{sid}").json()["status"])

    inactive = sub(isActive=False, notification={"format": "keyValues", "endpoint": endpoint()})
    for fragment in ({"isActive": True}, {"isActive": True, "expiresAt": "2030-08-01T22:07:00Z"}):
        sid = tp.subscribe(inactive, endpoint=False)
        assert status(sid) == "paused"
        assert ngsi.patch(f"/subscriptions/{sid}", json={"type": "Subscription", **fragment}).status_code == 204
        assert status(sid) == "active"
    sid = tp.subscribe(
        sub(timeInterval=5, notification={"format": "keyValues", "endpoint": endpoint()}), endpoint=False
    )
    assert ngsi.patch(f"/subscriptions/{sid}", json={"type": "Subscription", "isActive": False}).status_code == 204
    assert status(sid) == "paused"
    assert ngsi.patch(f"/subscriptions/{sid}", json={"type": "Subscription", "isActive": True}).status_code == 204
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
    assert ngsi.patch(f"/subscriptions/{sid}", json={"type": "Subscription", "expiresAt": soon}).status_code == 204
    time.sleep(3)
    assert status(sid) == "expired"
    fragment = {"type": "Subscription", "expiresAt": "2030-08-01T22:07:00Z"}
    assert ngsi.patch(f"/subscriptions/{sid}", json=fragment).status_code == 204
    assert status(sid) == "active"

    given = sub(status="expired", __context="http://localhost:1111/hijacked.jsonld")
    given["notification"]["timesSent"] = 42
    sid = tp.subscribe(given, endpoint=False)
    r = ngsi.get(f"/subscriptions/{sid}", headers={"Accept": LD, **tp.ctx.link()})
    assert "hijacked" not in r.text and "__context" not in r.text
    assert r.json()["status"] == "active" and "timesSent" not in r.json()["notification"]


def test_query_subscriptions(tp: Suite) -> None:
    """TP 031_01_01: the three subscriptions as written (031_02's paging: test_conformance_subs_temporal)."""
    ngsi = tp.ngsi
    first = sub(timeInterval=5, notification={"format": "keyValues", "endpoint": endpoint()})
    second = sub(
        watchedAttributes=["name", "subCategory"], notification={"format": "keyValues", "endpoint": endpoint()}
    )
    third = sub(isActive=False, notification={"format": "keyValues", "endpoint": endpoint()})
    ids = [tp.subscribe(s, endpoint=False) for s in (first, second, third)]
    listed = [as_the_suite_reads(s) for s in ngsi.get("/subscriptions", headers=tp.ctx.link()).json()]
    common = {"notification": {"format": "keyValues", "endpoint": endpoint()}, "entities": [{"type": "Building"}]}
    triggers = {"notificationTrigger": ["attributeCreated", "attributeUpdated"]}
    assert listed == [
        {"id": ids[0], "type": "Subscription", "timeInterval": 5, **common, "status": "active", **triggers},
        {
            "id": ids[1],
            "type": "Subscription",
            "watchedAttributes": ["name", "subCategory"],
            **common,
            "status": "active",
            **triggers,
        },
        {"id": ids[2], "type": "Subscription", **common, "isActive": False, "status": "paused", **triggers},
    ]


# --------------------------------------------------------------------------- notifications

AQ5 = {"airQualityLevel": prop(5, unitCode="C62", observedAt="2020-10-10T16:40:00.000Z")}
B = "urn:ngsi-ld:Building:"


def test_notified_on_change_with_all_attributes(tp: Suite) -> None:
    """TP 046_01_01, 046_03_01, 046_04_01, 046_05_01, 046_07_01/02/03, 046_08_01/02, 046_09_01,
    046_17_01, 046_18_01: who is notified, with which attributes, format, headers and sysAttrs."""
    cases = {
        "active": sub(isActive=True, notification={"format": "normalized", "endpoint": endpoint()}),
        "default": sub(),
        "watched": sub(isActive=True, watchedAttributes=["airQualityLevel"], notification={"endpoint": endpoint()}),
        "query": sub(
            watchedAttributes=["airQualityLevel"], q='name=="Eiffel%20Tower"', notification={"endpoint": endpoint()}
        ),
        "attributes": sub(notification={"endpoint": endpoint(), "attributes": ["airQualityLevel"]}),
        "keyValues": sub(notification={"format": "keyValues", "endpoint": endpoint()}),
        "receiverInfo": sub(
            notification={
                "format": "normalized",
                "endpoint": endpoint(receiverInfo=[{"key": "X-Additional-Key", "value": "Value"}]),
            }
        ),
        "sysAttrs": sub(notification={"format": "keyValues", "endpoint": endpoint(), "sysAttrs": True}),
        "noSysAttrs": sub(notification={"format": "keyValues", "endpoint": endpoint(), "sysAttrs": False}),
        "coreContext": sub(
            isActive=True,
            entities=[{"type": VOCAB + "Building"}],
            notification={"attributes": [VOCAB + "airQualityLevel"], "endpoint": endpoint()},
        ),
    }
    got: dict[str, Received] = {}
    for name, body in cases.items():
        eid = f"{B}046{name}"
        tp.create_entity(eid, simple_attributes())
        sid = tp.subscribe(body, entity_id=eid, context=CORE if name == "coreContext" else None)
        assert tp.update_attrs(eid, AQ5).status_code == 204
        got[name] = tp.notification(sid)
        assert got[name].body["data"][0]["id"] == eid
        assert got[name].body["notifiedAt"].endswith("Z")
    for name in ("active", "default", "watched", "query", "receiverInfo"):
        data = got[name].body["data"][0]
        assert data["airQualityLevel"]["value"] == 5 and data["name"]["value"] == "Eiffel Tower", name
        assert set(data) == {"id", "type", "name", "subCategory", "airQualityLevel", "almostFull"}, name
    assert set(got["attributes"].body["data"][0]) == {"id", "type", "airQualityLevel"}
    assert got["keyValues"].body["data"][0]["name"] == "Eiffel Tower"
    assert got["receiverInfo"].headers["x-additional-key"] == "Value"
    assert {"createdAt", "modifiedAt"} <= set(got["sysAttrs"].body["data"][0])
    assert not {"createdAt", "modifiedAt"} & set(got["noSysAttrs"].body["data"][0])
    core = got["coreContext"]
    assert core.body["data"][0] == {
        "id": f"{B}046coreContext",
        "type": VOCAB + "Building",
        VOCAB + "airQualityLevel": AQ5["airQualityLevel"],
    }
    assert core.headers["link"] == f'<{CORE}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


def test_attribute_deletion_notifications(tp: Suite) -> None:
    """TP 046_22_01..08: attributeDeleted, keyValues and normalized, one attribute, one instance (with
    its datasetId), every instance (deleteAll), with sysAttrs; 046_22_03: an unwatched one is not notified."""
    kv = sub(notificationTrigger=["attributeDeleted"], notification={"format": "keyValues", "endpoint": endpoint()})
    kv_name = {**kv, "watchedAttributes": ["name"]}
    norm_name = {**kv_name, "notification": {"format": "normalized", "endpoint": endpoint()}}
    norm_sys = {**kv_name, "notification": {"format": "normalized", "sysAttrs": True, "endpoint": endpoint()}}
    simple_kv = {"type": "Building", "almostFull": False, "subCategory": "tourism", "airQualityLevel": 4}
    simple_norm = {"type": "Building", **{k: v for k, v in simple_attributes().items() if k != "name"}}

    def deleted(n: int, body: dict[str, Any], attrs: dict[str, Any], **params: str) -> dict[str, Any]:
        eid = f"{B}04622{n}"
        tp.create_entity(eid, attrs)
        sid = tp.subscribe(body)
        tp.delete_attr(eid, "name", **params)
        data = tp.notification(sid).body["data"]
        assert tp.ngsi.delete(f"/subscriptions/{sid}").status_code == 204
        assert len(data) == 1 and data[0].pop("id") == eid
        return dict(data[0])

    assert deleted(1, kv, simple_attributes()) == {**simple_kv, "name": NULL}
    assert deleted(2, kv_name, simple_attributes()) == {**simple_kv, "name": NULL}
    eid = f"{B}046223"
    tp.create_entity(eid, simple_attributes())
    sid = tp.subscribe(kv_name)
    tp.delete_attr(eid, "airQualityLevel")
    tp.listener.nothing(1.5)
    assert tp.ngsi.delete(f"/subscriptions/{sid}").status_code == 204
    assert deleted(4, norm_name, simple_attributes()) == {**simple_norm, "name": prop(NULL)}
    with_sys = deleted(5, norm_sys, simple_attributes())
    assert with_sys["name"]["value"] == NULL and with_sys["name"]["deletedAt"].endswith("Z")
    one = deleted(6, norm_name, multi_instances(), datasetId=FR)
    assert one == {
        "type": "Building",
        "name": [prop("Eiffel Tower"), prop("Eiffelturm", datasetId=DE), prop(NULL, datasetId=FR)],
        "locatedAt": multi_instances()["locatedAt"],
    }
    one_kv = deleted(7, kv_name, multi_instances(), datasetId=FR)
    assert one_kv == {
        "type": "Building",
        "name": {"dataset": {"@none": "Eiffel Tower", DE: "Eiffelturm", FR: NULL}},
        "locatedAt": {
            "dataset": {
                "@none": "urn:ngsi-ld:City:Paris",
                FR: "urn:ngsi-ld:Ville:Paris",
                ES: "urn:ngsi-ld:Ciudad:Madrid",
            }
        },
    }
    every = deleted(8, norm_name, multi_instances(), deleteAll="true")
    assert every["name"]["value"] == NULL


def test_deleted_attributes_of_every_type(tp: Suite) -> None:
    """TP 046_22_09_01..03, 046_22_10_01..03, 046_22_11_01..03 (NGSI-LD Null through Merge Entity,
    Update Attributes and Partial Attribute Update deletes the attribute; a LanguageProperty is notified
    with ``{"@none": "urn:ngsi-ld:null"}``), 046_34_01..04, 046_35_01, 046_36_01 (showChanges on
    attributeDeleted: the previous value, by attribute type)."""
    ngsi = tp.ngsi
    nulls = {
        "name": (prop(NULL), {"value": NULL}, prop(NULL)),
        "locatedAt": (rel(NULL), {"object": NULL}, rel(NULL)),
        "street": (
            {"type": "LanguageProperty", "languageMap": {"@none": NULL}},
            {"type": "LanguageProperty", "languageMap": {"@none": NULL}},
            {"type": "LanguageProperty", "languageMap": {"@none": NULL}},
        ),
    }
    n = 0
    for attr, (merge, partial, notified) in nulls.items():
        for how in ("merge", "update", "partial"):
            n += 1
            eid = f"{B}0462209{n}"
            tp.create_entity(eid, different_types())
            watched = sub(
                watchedAttributes=[attr],
                notificationTrigger=["attributeDeleted"],
                notification={"format": "normalized", "endpoint": endpoint()},
            )
            sid = tp.subscribe(watched)
            if how == "merge":
                r = ngsi.patch(
                    f"/entities/{eid}",
                    json=tp.ld({"id": eid, "type": "Building", attr: merge}),
                    headers={"Content-Type": LD},
                )
            elif how == "update":
                r = tp.update_attrs(eid, {attr: merge})
            else:
                r = ngsi.patch(f"/entities/{eid}/attrs/{attr}", json=tp.ld(partial), headers={"Content-Type": LD})
            assert r.status_code == 204, (attr, how, r.text)
            (data,) = tp.notification(sid).body["data"]
            assert data == {"id": eid, "type": "Building", **different_types(), attr: notified}, (attr, how)
            assert ngsi.delete(f"/subscriptions/{sid}").status_code == 204

    show = sub(notificationTrigger=["attributeDeleted"], notification={"endpoint": endpoint(None), "showChanges": True})
    previous = {
        "name": {**prop(NULL), "previousValue": "Eiffel Tower"},
        "locatedAt": {**rel(NULL), "previousObject": "urn:ngsi-ld:City:Paris"},
        "location": {"type": "GeoProperty", "value": NULL, "previousValue": LOCATION["value"]},
        "street": {
            "type": "LanguageProperty",
            "languageMap": {"@none": NULL},
            "previousLanguageMap": STREET["languageMap"],
        },
    }
    for attr, expected in previous.items():
        eid = f"{B}046_34{attr}"
        tp.create_entity(eid, different_types())
        sid = tp.subscribe(show)
        tp.delete_attr(eid, attr, deleteAll="false")
        (data,) = tp.notification(sid).body["data"]
        assert data == {"id": eid, "type": "Building", **different_types(), attr: expected}, attr
        assert ngsi.delete(f"/subscriptions/{sid}").status_code == 204
    for attr, value, expected in (
        ("jsonProperty", {"type": "JsonProperty", "json": JSON_VALUE}, {"json": NULL, "previousJson": JSON_VALUE}),
        ("vocabProperty", {"type": "VocabProperty", "vocab": "monument"}, {"vocab": NULL, "previousVocab": "monument"}),
    ):
        eid = f"{B}046_35{attr}"
        tp.create_entity(eid, {attr: value})
        sid = tp.subscribe(show)
        tp.delete_attr(eid, attr, deleteAll="false")
        (data,) = tp.notification(sid).body["data"]
        assert data == {"id": eid, "type": "Building", attr: {"type": value["type"], **expected}}, attr
        assert ngsi.delete(f"/subscriptions/{sid}").status_code == 204


def test_entity_deletion_notifications(tp: Suite) -> None:
    """TP 046_21_01 (entityDeleted: id, type, deletedAt), 046_21_02 (with sysAttrs), 046_22_12/13
    (attributeDeleted on a deleted entity: the watched attribute as NGSI-LD Null, with sysAttrs its
    createdAt/modifiedAt/deletedAt), 046_37_01, 046_38_01, 046_39_01 (entityDeleted with showChanges:
    every attribute as NGSI-LD Null with its previous value)."""
    ngsi = tp.ngsi

    def on_delete(n: str, body: dict[str, Any], attrs: dict[str, Any]) -> dict[str, Any]:
        eid = f"{B}{n}"
        tp.create_entity(eid, attrs)
        sid = tp.subscribe(body)
        assert ngsi.delete(f"/entities/{eid}").status_code == 204
        data = tp.notification(sid).body["data"]
        assert ngsi.delete(f"/subscriptions/{sid}").status_code == 204
        assert len(data) == 1 and data[0].pop("id") == eid and data[0].pop("type") == "Building"
        return dict(data[0])

    deleted = sub(notificationTrigger=["entityDeleted"], notification={"endpoint": endpoint(None)})
    got = on_delete("046_21_01", deleted, different_types())
    assert set(got) == {"deletedAt"}
    got = on_delete(
        "046_21_02", {**deleted, "notification": {"endpoint": endpoint(None), "sysAttrs": True}}, different_types()
    )
    assert set(got) == {"createdAt", "modifiedAt", "deletedAt"}

    watched = sub(
        watchedAttributes=["name"],
        notificationTrigger=["attributeDeleted"],
        notification={"format": "normalized", "endpoint": endpoint()},
    )
    got = on_delete("046_22_12", watched, simple_attributes())
    assert got == {"deletedAt": got["deletedAt"], "name": prop(NULL)}
    with_sys = {**watched, "notification": {"format": "normalized", "sysAttrs": True, "endpoint": endpoint()}}
    got = on_delete("046_22_13", with_sys, simple_attributes())
    assert set(got) == {"createdAt", "modifiedAt", "deletedAt", "name"}
    assert set(got["name"]) == {"type", "value", "createdAt", "modifiedAt", "deletedAt"}
    assert got["name"]["value"] == NULL and got["name"]["deletedAt"] == got["deletedAt"]
    assert got["name"]["createdAt"] == got["createdAt"] and got["createdAt"] < got["deletedAt"]

    show = {**deleted, "notification": {"endpoint": endpoint(None), "showChanges": True}}
    got = on_delete("046_37", show, different_types())
    assert got == {
        "deletedAt": got["deletedAt"],
        "location": {"type": "GeoProperty", "value": NULL, "previousValue": LOCATION["value"]},
        "name": {**prop(NULL), "previousValue": "Eiffel Tower"},
        "street": {
            "type": "LanguageProperty",
            "languageMap": {"@none": NULL},
            "previousLanguageMap": STREET["languageMap"],
        },
        "locatedAt": {**rel(NULL), "previousObject": "urn:ngsi-ld:City:Paris"},
    }
    got = on_delete("046_38", show, {"jsonProperty": {"type": "JsonProperty", "json": JSON_VALUE}})
    assert got["jsonProperty"] == {"type": "JsonProperty", "json": NULL, "previousJson": JSON_VALUE}
    got = on_delete("046_39", show, {"vocabProperty": {"type": "VocabProperty", "vocab": "monument"}})
    assert got["vocabProperty"] == {"type": "VocabProperty", "vocab": NULL, "previousVocab": "monument"}


def test_show_changes_on_update(tp: Suite) -> None:
    """TP 046_31_01..04, 046_32_01, 046_33_01 (previousValue, previousObject, previousLanguageMap,
    previousJson, previousVocab), 046_40_01 (none on entityCreated), 046_42_01/046_43_01 (pick, omit)."""
    ngsi = tp.ngsi
    show = sub(notification={"endpoint": endpoint(None), "showChanges": True})
    updates = {
        "name": (prop("Tour Eiffel"), {**prop("Tour Eiffel"), "previousValue": "Eiffel Tower"}),
        "locatedAt": (
            rel("urn:ngsi-ld:City:Berlin"),
            {**rel("urn:ngsi-ld:City:Berlin"), "previousObject": "urn:ngsi-ld:City:Paris"},
        ),
        "location": (
            {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [13.3986, 52.5547]}},
            {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [13.3986, 52.5547]},
                "previousValue": LOCATION["value"],
            },
        ),
        "street": (
            {"type": "LanguageProperty", "languageMap": {"fr": "Grand Place", "es": "Gran Lugar"}},
            {
                "type": "LanguageProperty",
                "languageMap": {"fr": "Grand Place", "es": "Gran Lugar"},
                "previousLanguageMap": STREET["languageMap"],
            },
        ),
    }
    for attr, (fragment, expected) in updates.items():
        eid = f"{B}046_31{attr}"
        tp.create_entity(eid, different_types())
        sid = tp.subscribe(show)
        assert tp.update_attrs(eid, {attr: fragment}).status_code == 204
        (data,) = tp.notification(sid).body["data"]
        assert data == {"id": eid, "type": "Building", **different_types(), attr: expected}, attr
        assert ngsi.delete(f"/subscriptions/{sid}").status_code == 204
    for attr, before, after, expected in (
        (
            "jsonProperty",
            {"type": "JsonProperty", "json": JSON_VALUE},
            {"type": "JsonProperty", "json": {"street": "Place Royale", "city": "Nantes"}},
            {"previousJson": JSON_VALUE},
        ),
        (
            "vocabProperty",
            {"type": "VocabProperty", "vocab": "monument"},
            {"type": "VocabProperty", "vocab": "museum"},
            {"previousVocab": "monument"},
        ),
    ):
        eid = f"{B}046_32{attr}"
        tp.create_entity(eid, {attr: before})
        sid = tp.subscribe(show)
        assert tp.update_attrs(eid, {attr: after}).status_code == 204
        (data,) = tp.notification(sid).body["data"]
        assert data == {"id": eid, "type": "Building", attr: {**after, **expected}}, attr
        assert ngsi.delete(f"/subscriptions/{sid}").status_code == 204

    sid = tp.subscribe({**show, "notificationTrigger": ["entityCreated"]})
    tp.create_entity(f"{B}046_40", simple_attributes())
    assert "previous" not in json.dumps(tp.notification(sid).body["data"])
    assert ngsi.delete(f"/subscriptions/{sid}").status_code == 204

    for members, expected in (
        ({"pick": ["id", "name"]}, {"name": prop("Tour Eiffel")}),
        ({"omit": ["type", "name"]}, {k: v for k, v in different_types().items() if k != "name"}),
    ):
        eid = f"{B}046_42{len(expected)}"
        tp.create_entity(eid, different_types())
        sid = tp.subscribe(sub(notification={"endpoint": endpoint(), **members}))
        assert tp.update_attrs(eid, {"name": prop("Tour Eiffel")}).status_code == 204
        assert tp.notification(sid).body["data"] == [{"id": eid, **expected}]
        assert ngsi.delete(f"/subscriptions/{sid}").status_code == 204


def test_pick_takes_the_projection_language(tp: Suite) -> None:
    """TP 046_44_01..03 (Table 5.2.14.1-1: notification.pick is a §4.21 projection): ``locatedAt{name}``
    keeps the Relationship, ``name|street`` projects both alternatives, and with join=flat
    ``locatedAt{id|name}`` reduces the joined City to its id and name. The pick reads back as written;
    braces deeper than joinLevel are refused as in queries (019_33)."""
    ngsi = tp.ngsi
    paris = "urn:ngsi-ld:City:Paris"
    for n, pick, expected in (
        ("01", ["id", "name", "locatedAt{name}"], {"name": prop("Tour Eiffel"), "locatedAt": rel(paris)}),
        ("02", ["id", "name|street"], {"name": prop("Tour Eiffel"), "street": STREET}),
    ):
        eid = f"{B}046_44_{n}"
        tp.create_entity(eid, different_types())
        sid = tp.subscribe(sub(notification={"endpoint": endpoint(), "pick": pick}))
        r = ngsi.get(f"/subscriptions/{sid}", headers=tp.ctx.link())
        assert r.json()["notification"]["pick"] == pick
        assert tp.update_attrs(eid, {"name": prop("Tour Eiffel")}).status_code == 204
        assert tp.notification(sid).body["data"] == [{"id": eid, **expected}]
        assert ngsi.delete(f"/subscriptions/{sid}").status_code == 204

    city = {
        "description": prop("Paris is the capital and largest city of France"),
        "name": prop("Paris"),
        "isInCountry": rel("urn:ngsi-ld:Country:France"),
    }
    tp.create_entity(paris, city, etype="City")
    eid = f"{B}046_44:EiffelTower"
    tp.create_entity(eid, {"locatedAt": rel(paris), "name": prop("Eiffel Tower")})
    joined = {"endpoint": endpoint(), "join": "flat", "joinLevel": 1, "pick": ["id", "name", "locatedAt{id|name}"]}
    sid = tp.subscribe(sub(notification=joined))
    assert tp.update_attrs(eid, {"name": prop("Tour Eiffel")}).status_code == 204
    assert tp.notification(sid).body["data"] == [
        {"id": eid, "name": prop("Tour Eiffel"), "locatedAt": rel(paris)},
        {"id": paris, "name": prop("Paris")},
    ]
    assert ngsi.delete(f"/subscriptions/{sid}").status_code == 204

    too_deep = sub(notification={**joined, "pick": ["id", "locatedAt{owner{name}}"]})
    r = ngsi.post("/subscriptions", json=tp.ld(too_deep), headers={"Content-Type": LD})
    assert r.status_code == 400 and r.json()["type"] == ERR + "BadRequestData", r.text


def test_periodic_triggers_counters_and_type_selection(tp: Suite) -> None:
    """TP 046_02_01 (timeInterval: every interval, the matching entities), 046_06_01 (entityCreated),
    046_11_01/046_12_01 (timesSent, status ok, lastNotification, lastSuccess), 046_15_01 (throttling),
    046_16_01/02 (a type expression selects), 5212_01_01/02 (paused: nothing; resumed: notified)."""
    ngsi = tp.ngsi
    eid = f"{B}046_02"
    tp.create_entity(eid, simple_attributes())
    sid = tp.subscribe(sub(timeInterval=1, notification={"endpoint": endpoint()}), entity_id=eid)
    for _ in range(2):
        (data,) = tp.notification(sid).body["data"]
        assert data["id"] == eid and data["airQualityLevel"]["value"] == 4 and data["name"]["value"] == "Eiffel Tower"
    assert ngsi.delete(f"/subscriptions/{sid}").status_code == 204
    time.sleep(0.5)
    while not tp.listener.received.empty():
        tp.listener.received.get()

    sid = tp.subscribe(sub(notificationTrigger=["entityCreated"], notification={"endpoint": endpoint(None)}))
    tp.create_entity(f"{B}046_06", simple_attributes())
    assert [e["id"] for e in tp.notification(sid).body["data"]] == [f"{B}046_06"]
    assert ngsi.delete(f"/subscriptions/{sid}").status_code == 204

    eid = f"{B}046_11"
    tp.create_entity(eid, simple_attributes())
    sid = tp.subscribe(sub(throttling=15, notification={"format": "keyValues", "endpoint": endpoint()}), entity_id=eid)
    assert tp.update_attrs(eid, AQ5).status_code == 204
    tp.notification(sid)
    note = ngsi.get(f"/subscriptions/{sid}", headers={"Accept": LD, **tp.ctx.link()}).json()["notification"]
    assert note["timesSent"] == 1 and note["status"] == "ok"
    assert note["lastNotification"].endswith("Z") and note["lastSuccess"].endswith("Z")
    assert tp.update_attrs(eid, AQ5).status_code == 204
    tp.listener.nothing(1.5)
    assert ngsi.delete(f"/subscriptions/{sid}").status_code == 204

    selection = sub(
        entities=[{"type": "(Building|Tower)"}],
        notificationTrigger=["entityCreated"],
        notification={"endpoint": endpoint(None)},
    )
    sid = tp.subscribe(selection)
    tp.create_entity("urn:ngsi-ld:Vehicle:046_16", {"name": prop("car")}, etype="Vehicle")
    tp.listener.nothing(1.5)
    tp.create_entity(f"{B}046_16", simple_attributes())
    assert [e["id"] for e in tp.notification(sid).body["data"]] == [f"{B}046_16"]
    assert ngsi.delete(f"/subscriptions/{sid}").status_code == 204

    paused = {**sub(notification={"endpoint": endpoint(None)}), "isActive": False}
    sid = tp.subscribe(paused)
    tp.create_entity(f"{B}5212", simple_attributes())
    tp.listener.nothing(1.5)
    assert ngsi.patch(f"/subscriptions/{sid}", json={"isActive": True}).status_code == 204
    assert tp.update_attrs(f"{B}5212", AQ5).status_code == 204
    assert [e["id"] for e in tp.notification(sid).body["data"]] == [f"{B}5212"]


def test_failed_delivery_is_recorded(tp: Suite) -> None:
    """TP 046_13_01: an endpoint that does not answer 2xx: status failed and lastFailure."""
    ngsi = tp.ngsi
    tp.listener.statuses.extend([500] * 10)
    eid = f"{B}046_13"
    sid = tp.subscribe(sub(isActive=True, notification={"format": "normalized", "endpoint": endpoint()}))
    tp.create_entity(eid, simple_attributes())
    tp.listener.next()
    for _ in range(100):
        note = ngsi.get(f"/subscriptions/{sid}", headers={"Accept": LD, **tp.ctx.link()}).json()["notification"]
        if note.get("status") == "failed":
            break
        time.sleep(0.05)
    assert note["status"] == "failed" and note["lastFailure"].endswith("Z") and note["timesFailed"] >= 1


def test_datasets_and_jsonld_context_of_notifications(tp: Suite) -> None:
    """TP 046_19 (datasetId: only the instances of that dataset, every attribute, JSON-LD with the
    @context), 046_20 (jsonldContext: the entity compacted with the core context, names expanded; the
    attribute exists before, see the module notes)."""
    eid = f"{B}046_19"
    tp.create_entity(eid, multi_instances())
    with_ds = sub(datasetId=[FR], notification={"format": "normalized", "endpoint": endpoint("application/ld+json")})
    sid = tp.subscribe(with_ds, entity_id=eid)
    assert tp.update_attrs(eid, {"name": prop("Le Tour Eiffel", datasetId=FR)}).status_code == 204
    got = tp.notification(sid)
    assert "link" not in got.headers and got.headers["content-type"] == LD
    assert got.body["data"] == [
        {
            "@context": [tp.ctx.url],
            "id": eid,
            "type": "Building",
            "name": prop("Le Tour Eiffel", datasetId=FR),
            "locatedAt": rel("urn:ngsi-ld:Ville:Paris", datasetId=FR),
        }
    ]
    assert tp.ngsi.delete(f"/subscriptions/{sid}").status_code == 204

    eid = f"{B}046_20"
    tp.create_entity(eid, {"name": prop("Eiffel Tower", datasetId=FR)})
    core = sub(jsonldContext=CORE, notification={"format": "normalized", "endpoint": endpoint("application/ld+json")})
    sid = tp.subscribe(core, entity_id=eid)
    assert tp.update_attrs(eid, {"name": prop("Le Tour Eiffel", datasetId=FR)}).status_code == 204
    assert tp.notification(sid).body["data"] == [
        {
            "@context": CORE,
            "id": eid,
            "type": VOCAB + "Building",
            VOCAB + "name": prop("Le Tour Eiffel", datasetId=FR),
        }
    ]


def test_mqtt_notifications(tp: Suite, mqtt_url: str) -> None:
    """TP 058_01_01..03 (host, port, a user without password), 058_02_01..03 (QoS default, 1, 2),
    058_03_01..03 (MQTT-Version), 058_04_01 (message: metadata with Content-Type, Link and receiverInfo;
    body the Notification)."""
    broker = urlsplit(mqtt_url)
    host, port = broker.hostname or "127.0.0.1", broker.port or 1883
    topic = f"ngsild-test-suite/{uuid.uuid4().hex}"
    messages: queue.Queue[dict[str, Any]] = queue.Queue()
    client = paho.Client(CallbackAPIVersion.VERSION2)
    subscribed = threading.Event()
    client.on_message = lambda _c, _u, msg: messages.put(json.loads(msg.payload))
    client.on_subscribe = lambda *_a: subscribed.set()
    client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
    client.connect(host, port)
    client.loop_start()
    try:
        assert subscribed.wait(10)
        uris = [f"mqtt://{host}:{port}/{topic}", f"mqtt://user@{host}:{port}/{topic}"]
        infos: list[list[dict[str, str]]] = [
            [],
            [{"key": "MQTT-QoS", "value": "1"}],
            [{"key": "MQTT-QoS", "value": "2"}],
            [{"key": "MQTT-Version", "value": "mqtt3.1.1"}],
            [{"key": "MQTT-Version", "value": "mqtt5.0"}],
        ]
        cases = [(uri, []) for uri in uris] + [(uris[0], info) for info in infos[1:]]
        for n, (uri, info) in enumerate(cases):
            eid = f"{B}058{n}"
            tp.create_entity(eid, simple_attributes())
            point = {
                **endpoint(),
                "uri": uri,
                "receiverInfo": [{"key": "test-receiver-key", "value": "test-receiver-info"}],
            }
            if info:
                point["notifierInfo"] = info
            sid = tp.subscribe(sub(notification={"endpoint": point}), entity_id=eid, endpoint=False)
            assert tp.update_attrs(eid, AQ5).status_code == 204
            message = messages.get(timeout=10)
            assert set(message) == {"metadata", "body"}, uri
            metadata = message["metadata"]
            assert (
                metadata["Content-Type"] == "application/json" and metadata["test-receiver-key"] == "test-receiver-info"
            )
            assert (
                metadata["Link"]
                == f'<{tp.ctx.url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
            )
            assert message["body"]["type"] == "Notification" and message["body"]["subscriptionId"] == sid
            assert {"id", "type"} <= set(message["body"]["data"][0])
            assert tp.ngsi.delete(f"/subscriptions/{sid}").status_code == 204
        assert messages.empty()
    finally:
        client.loop_stop()
        client.disconnect()


def test_deleting_a_subscription_as_its_notification_is_recorded(tp: Suite, caplog: pytest.LogCaptureFixture) -> None:
    """The suite's teardown deletes a subscription as soon as its notification arrived (every 046 TP):
    recording that delivery while the subscription is deleted must neither deadlock (PostgreSQL) nor
    fail: a failed round holds back the next notification by seconds (the suite waits 5 s), a failed
    deletion is a 500."""
    eid = f"{B}teardown"
    tp.create_entity(eid, simple_attributes())
    for n in range(10):
        sid = tp.subscribe(sub(notification={"endpoint": endpoint()}), entity_id=eid)
        assert tp.update_attrs(eid, {"name": prop(f"v{n}")}).status_code == 204
        tp.notification(sid)
        assert tp.ngsi.delete(f"/subscriptions/{sid}").status_code == 204
    sid = tp.subscribe(sub(notification={"endpoint": endpoint()}), entity_id=eid)
    assert tp.update_attrs(eid, {"name": prop("last")}).status_code == 204
    assert tp.listener.next(timeout=2).body["subscriptionId"] == sid
    assert not [r for r in caplog.records if r.name == "ioc.context.notify" and r.levelname == "ERROR"]


def test_linked_entities_in_notifications(tp: Suite) -> None:
    """TP 046_23..046_30 (join flat/inline with normalized, sysAttrs, attributes and simplified); ``name``
    exists before and is updated (see the module notes)."""
    paris = {
        "description": prop("Paris is the capital and largest city of France"),
        "name": prop("Paris"),
        "isInCountry": rel("urn:ngsi-ld:Country:France"),
    }
    tp.create_entity("urn:ngsi-ld:City:Paris", paris, etype="City")
    city = {"id": "urn:ngsi-ld:City:Paris", "type": "City", **paris}
    city_kv = {"id": city["id"], "type": "City", **{k: v.get("value", v.get("object")) for k, v in paris.items()}}
    cases: list[tuple[dict[str, Any], Any]] = [
        ({"join": "flat", "joinLevel": 1}, "flat"),
        ({"join": "flat", "joinLevel": 1, "attributes": ["locatedAt"]}, "flat-attributes"),
        ({"join": "flat", "joinLevel": 1, "format": "simplified"}, "flat-simplified"),
        ({"join": "flat", "joinLevel": 1, "sysAttrs": True}, "flat-sysAttrs"),
        ({"join": "inline", "joinLevel": 1}, "inline"),
        ({"join": "inline", "joinLevel": 1, "attributes": ["locatedAt"]}, "inline-attributes"),
        ({"join": "inline", "joinLevel": 1, "format": "simplified"}, "inline-simplified"),
        ({"join": "inline", "joinLevel": 1, "sysAttrs": True}, "inline-sysAttrs"),
    ]
    for n, (members, case) in enumerate(cases):
        eid = f"{B}046_2{n}:EiffelTower"
        tp.create_entity(eid, {"locatedAt": rel("urn:ngsi-ld:City:Paris"), "name": prop("Eiffel Tower")})
        sid = tp.subscribe(sub(notification={"endpoint": endpoint(None), **members}))
        assert tp.update_attrs(eid, {"name": prop("Tour Eiffel")}).status_code == 204
        data = tp.notification(sid).body["data"]
        assert tp.ngsi.delete(f"/subscriptions/{sid}").status_code == 204
        building = {"id": eid, "type": "Building", "name": prop("Tour Eiffel"), "locatedAt": rel(city["id"])}
        if case == "flat":
            assert data == [building, city]
        elif case == "flat-attributes":
            assert data == [{"id": eid, "type": "Building", "locatedAt": rel(city["id"])}, city]
        elif case == "flat-simplified":
            assert data == [{"id": eid, "type": "Building", "name": "Tour Eiffel", "locatedAt": city["id"]}, city_kv]
        elif case == "inline":
            assert data == [{**building, "locatedAt": {**rel(city["id"]), "entity": city}}]
        elif case == "inline-attributes":
            assert data == [{"id": eid, "type": "Building", "locatedAt": {**rel(city["id"]), "entity": city}}]
        elif case == "inline-simplified":
            assert data == [{"id": eid, "type": "Building", "name": "Tour Eiffel", "locatedAt": city_kv}]
        else:
            linked = data[1] if case == "flat-sysAttrs" else data[0]["locatedAt"]["entity"]
            assert {"createdAt", "modifiedAt"} <= set(data[0]) & set(data[0]["name"]) & set(data[0]["locatedAt"])
            assert linked["id"] == city["id"] and {"createdAt", "modifiedAt"} <= set(linked)


def test_an_attribute_appended_by_update_attributes_is_notified(tp: Suite) -> None:
    """TP 046_20, 046_41: a subscription watching an attribute the entity does not have yet is notified
    when ``PATCH /entities/{id}/attrs`` brings it (Update Attributes appends missing attributes, 011_01_03)."""
    eid = f"{B}046appended"
    tp.create_entity(eid, simple_attributes())
    sid = tp.subscribe(sub(watchedAttributes=["newAttribute"], notification={"endpoint": endpoint()}), entity_id=eid)
    fresh = {"newAttribute": prop(12, observedAt="2020-10-10T16:40:00.000Z")}
    assert tp.update_attrs(eid, fresh).status_code == 204
    data = tp.notification(sid).body["data"][0]
    assert data["id"] == eid and data["newAttribute"]["value"] == 12
