"""Temporal API under /ngsi-ld/v1/temporal: representations, time relations, lastN, aggregations,
pagination (206 + Content-Range), writes and deletes, history from the entity API, access (both databases)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from ioc.app import create_app
from ioc.core.audit import AuditEntry
from ioc.core.auth import User
from ioc.core.db import Database
from ioc.modules.context.models import NgsiAttributeHistory
from ioc.settings import Settings

from .conftest import BASE, CORE, LD, Ngsi

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
V1 = "urn:ngsi-ld:Vehicle:1"
T = "/temporal/entities"


def day(d: int, h: int = 0, m: int = 0) -> str:
    return f"2025-07-{d:02d}T{h:02d}:{m:02d}:00Z"


def inst(value: Any, at: str, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, "observedAt": at, **extra}


def vehicle_history() -> dict[str, Any]:
    """speed at 12:03, 12:05, 12:07; fuelLevel at 12:03, 13:05, 14:07 (1 Aug 2020)."""
    return {
        "id": V1,
        "type": "Vehicle",
        "speed": [
            inst(120, "2020-08-01T12:03:00Z"),
            inst(80, "2020-08-01T12:05:00Z"),
            inst(100, "2020-08-01T12:07:00Z"),
        ],
        "fuelLevel": [
            inst(67, "2020-08-01T12:03:00Z"),
            inst(53, "2020-08-01T13:05:00Z"),
            inst(40, "2020-08-01T14:07:00Z"),
        ],
    }


def values(body: dict[str, Any], attr: str) -> list[Any]:
    """The values of an attribute's instances (an attribute without instances in range is left out)."""
    return [i["value"] for i in body.get(attr, [])]


def assert_problem(r: Any, status: int, name: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["type"] == ERR + name, r.text


@contextmanager
def other_app(settings: Settings, monkeypatch: pytest.MonkeyPatch, **env: str) -> Iterator[TestClient]:
    """The service with extra IOC_NGSILD_* settings, on the same database."""
    for key, value in env.items():
        monkeypatch.setenv(f"IOC_NGSILD_{key.upper()}", value)
    with TestClient(create_app(settings)) as c:
        yield c


# --------------------------------------------------------------------------- create, retrieve, representations


def test_create_add_and_retrieve(ngsi: Ngsi) -> None:
    r = ngsi.post(T, json=vehicle_history())
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"{BASE}{T}/{V1}"
    # the current state is the newest instance of each attribute
    current = ngsi.get(f"/entities/{V1}").json()
    assert current["speed"]["value"] == 100 and current["fuelLevel"]["value"] == 40

    r = ngsi.get(f"{T}/{V1}")
    assert r.status_code == 200
    assert CORE in r.headers["Link"]
    body = r.json()
    assert body["id"] == V1 and body["type"] == "Vehicle"
    assert values(body, "speed") == [120, 80, 100]
    assert values(body, "fuelLevel") == [67, 53, 40]
    first = body["speed"][0]
    assert first["type"] == "Property" and first["observedAt"] == "2020-08-01T12:03:00Z"
    assert first["instanceId"].startswith("urn:ngsi-ld:")
    assert len({i["instanceId"] for i in body["speed"]}) == 3

    # adding to an existing entity: 204; an older instance does not move the current state
    more = {"id": V1, "type": "Vehicle", "speed": [inst(90, "2020-08-01T12:09:00Z"), inst(1, "2020-08-01T11:00:00Z")]}
    assert ngsi.post(T, json=more).status_code == 204
    assert values(ngsi.get(f"{T}/{V1}").json(), "speed") == [1, 120, 80, 100, 90]
    assert ngsi.get(f"/entities/{V1}").json()["speed"]["value"] == 90

    # concise, simplified (temporalValues), sysAttrs, attrs, JSON-LD
    concise = ngsi.get(f"{T}/{V1}", params={"format": "concise", "attrs": "fuelLevel"}).json()
    assert set(concise) == {"id", "type", "fuelLevel"}
    assert "type" not in concise["fuelLevel"][0] and concise["fuelLevel"][0]["value"] == 67
    simple = ngsi.get(f"{T}/{V1}", params={"options": "temporalValues", "attrs": "fuelLevel"}).json()
    assert simple["fuelLevel"] == {
        "type": "Property",
        "values": [
            [67, "2020-08-01T12:03:00Z"],
            [53, "2020-08-01T13:05:00Z"],
            [40, "2020-08-01T14:07:00Z"],
        ],
    }
    sys_attrs = ngsi.get(f"{T}/{V1}", params={"options": "sysAttrs"}).json()
    assert sys_attrs["speed"][0]["createdAt"].endswith("Z")
    ld = ngsi.get(f"{T}/{V1}", headers={"Accept": LD})
    assert ld.headers["content-type"].startswith(LD) and ld.json()["@context"] == CORE
    assert ngsi.get(f"{T}/{V1}", headers={"Accept": "application/geo+json"}).status_code == 406


def test_relationships_and_datasets(ngsi: Ngsi) -> None:
    body = {
        "id": V1,
        "type": "Vehicle",
        "owner": [
            {"type": "Relationship", "object": "urn:ngsi-ld:Person:a", "observedAt": day(1)},
            {"type": "Relationship", "object": "urn:ngsi-ld:Person:b", "observedAt": day(2)},
        ],
        "temp": [inst(20, day(1), datasetId="urn:ds:a"), inst(21, day(2), datasetId="urn:ds:b"), inst(22, day(3))],
    }
    assert ngsi.post(T, json=body).status_code == 201
    simple = ngsi.get(f"{T}/{V1}", params={"options": "temporalValues"}).json()
    assert simple["owner"] == {
        "type": "Relationship",
        "objects": [
            ["urn:ngsi-ld:Person:a", "2025-07-01T00:00:00Z"],
            ["urn:ngsi-ld:Person:b", "2025-07-02T00:00:00Z"],
        ],
    }
    # one object per datasetId in the simplified form, one array with datasetIds in the normalized form
    assert [(p.get("datasetId"), p["values"][0][0]) for p in simple["temp"]] == [
        (None, 22),
        ("urn:ds:a", 20),
        ("urn:ds:b", 21),
    ]
    normalized = ngsi.get(f"{T}/{V1}", params={"attrs": "temp"}).json()
    assert sorted((i.get("datasetId", ""), i["value"]) for i in normalized["temp"]) == [
        ("", 22),
        ("urn:ds:a", 20),
        ("urn:ds:b", 21),
    ]


def test_create_errors(ngsi: Ngsi) -> None:
    assert_problem(ngsi.post(T, json={"type": "Vehicle"}), 400, "BadRequestData")
    assert_problem(ngsi.post(T, json={"id": "not a uri", "type": "V"}), 400, "BadRequestData")
    assert_problem(ngsi.post(T, json={"id": V1, "speed": [inst(1, day(1))]}), 400, "BadRequestData")  # no type
    assert_problem(ngsi.post(T, json={"id": V1, "type": "V", "speed": []}), 400, "BadRequestData")
    bad_time = {"id": V1, "type": "V", "speed": [inst(1, "yesterday")]}
    assert_problem(ngsi.post(T, json=bad_time), 400, "BadRequestData")
    r = ngsi.post(T, content=b"{nope", headers={"Content-Type": "application/json"})
    assert_problem(r, 400, "InvalidRequest")
    assert_problem(ngsi.post(T, content=b"{}", headers={"Content-Type": "text/plain"}), 415, "UnsupportedMediaType")
    assert_problem(ngsi.get(f"{T}/{V1}"), 404, "ResourceNotFound")
    assert_problem(ngsi.get(f"{T}/not-a-uri"), 400, "BadRequestData")
    assert_problem(ngsi.get(f"{T}/{V1}", headers={"NGSILD-Tenant": "nobody"}), 404, "NonexistentTenant")


# --------------------------------------------------------------------------- time relations, lastN


def test_timerel_edges(ngsi: Ngsi) -> None:
    ngsi.post(T, json={"id": V1, "type": "V", "x": [inst(i, day(i)) for i in range(1, 6)]})

    def xs(**params: str) -> list[Any]:
        r = ngsi.get(f"{T}/{V1}", params=params)
        assert r.status_code == 200, r.text
        return values(r.json(), "x")

    assert xs() == [1, 2, 3, 4, 5]
    assert xs(timerel="before", timeAt=day(3)) == [1, 2]  # before: strictly earlier
    assert xs(timerel="after", timeAt=day(3)) == [3, 4, 5]  # after: at or later
    assert xs(timerel="between", timeAt=day(2), endTimeAt=day(4)) == [2, 3]  # [timeAt, endTimeAt)
    assert xs(timerel="between", timeAt="2025-07-02T00:00:01Z", endTimeAt="2025-07-04T00:00:01Z") == [3, 4]
    assert xs(timerel="after", timeAt=day(9)) == []
    assert xs(lastN="2") == [4, 5]
    assert xs(lastN="2", timerel="before", timeAt=day(4)) == [2, 3]
    assert xs(lastN="10") == [1, 2, 3, 4, 5]
    # createdAt / modifiedAt: the time each instance was recorded (all now)
    assert xs(timeproperty="modifiedAt", timerel="before", timeAt=day(1)) == []
    assert xs(timeproperty="createdAt", timerel="after", timeAt=day(1)) == [1, 2, 3, 4, 5]

    bad = [
        {"timerel": "during", "timeAt": day(1)},
        {"timerel": "before"},
        {"timerel": "before", "timeAt": "yesterday"},
        {"timerel": "between", "timeAt": day(1)},
        {"timerel": "between", "timeAt": day(3), "endTimeAt": day(2)},
        {"timerel": "after", "timeAt": day(1), "endTimeAt": day(2)},
        {"timeAt": day(1)},
        {"timeproperty": "bornAt"},
        {"lastN": "0"},
        {"lastN": "x"},
        {"options": "aggregatedValues"},
        {"options": "aggregatedValues", "aggrMethods": "median"},
        {"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "1 day"},
        {"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "PT"},
    ]
    for params in bad:
        assert_problem(ngsi.get(f"{T}/{V1}", params=params), 400, "BadRequestData")
    for params in ({"options": "bogus"}, {"format": "bogus"}):  # §6.3.20
        assert_problem(ngsi.get(f"{T}/{V1}", params=params), 400, "InvalidRequest")


# --------------------------------------------------------------------------- aggregations


AGG = "totalCount,distinctCount,sum,avg,min,max,stddev,sumsq"


def test_aggregations_p1d_pt1h_and_whole_range(ngsi: Ngsi) -> None:
    # day 1: 1, 2, 3, 4 at 00:00, 06:00, 12:00, 18:00; day 2: 10, 10, 20 at 00:00, 01:00, 23:59
    xs = [(1, day(1, 0)), (2, day(1, 6)), (3, day(1, 12)), (4, day(1, 18))]
    xs += [(10, day(2, 0)), (10, day(2, 1)), (20, day(2, 23, 59))]
    ngsi.post(T, json={"id": V1, "type": "V", "x": [inst(v, t) for v, t in xs]})
    base = {
        "options": "aggregatedValues",
        "aggrMethods": AGG,
        "timerel": "between",
        "timeAt": day(1),
        "endTimeAt": day(3),
    }

    r = ngsi.get(f"{T}/{V1}", params={**base, "aggrPeriodDuration": "P1D"})
    assert r.status_code == 200, r.text
    x = r.json()["x"]
    assert x["type"] == "Property"
    assert x["totalCount"] == [
        [4, day(1), day(2)],
        [3, "2025-07-02T00:00:00Z", "2025-07-03T00:00:00Z"],
    ]
    assert [b[0] for b in x["distinctCount"]] == [4, 2]
    assert [b[0] for b in x["sum"]] == [10, 40]
    assert [b[0] for b in x["min"]] == [1, 10]
    assert [b[0] for b in x["max"]] == [4, 20]
    assert [b[0] for b in x["sumsq"]] == [30, 600]
    assert x["avg"][0][0] == pytest.approx(2.5) and x["avg"][1][0] == pytest.approx(40 / 3)
    assert x["stddev"][0][0] == pytest.approx(math.sqrt(5 / 3))  # sample standard deviation
    assert x["stddev"][1][0] == pytest.approx(math.sqrt(100 / 3))

    hourly = ngsi.get(f"{T}/{V1}", params={**base, "aggrPeriodDuration": "PT1H"}).json()["x"]
    assert [b[1][11:16] for b in hourly["totalCount"]] == [
        "00:00",
        "06:00",
        "12:00",
        "18:00",
        "00:00",
        "01:00",
        "23:00",
    ]
    assert hourly["sum"][-1] == [20, "2025-07-02T23:00:00Z", "2025-07-03T00:00:00Z"]

    whole = ngsi.get(f"{T}/{V1}", params={**base, "aggrMethods": "totalCount,sum,avg"}).json()["x"]
    assert whole["totalCount"] == [[7, "2025-07-01T00:00:00Z", "2025-07-02T23:59:00Z"]]
    assert whole["sum"][0][0] == 50 and whole["avg"][0][0] == pytest.approx(50 / 7)
    # without timeAt the periods start at the oldest instance
    retrieved = ngsi.get(
        f"{T}/{V1}", params={"options": "aggregatedValues", "aggrMethods": "sum", "aggrPeriodDuration": "PT12H"}
    )
    assert [b[0] for b in retrieved.json()["x"]["sum"]] == [3, 7, 20, 20]
    # the whole query endpoint aggregates the same way
    q = ngsi.get(T, params={**base, "type": "V", "aggrPeriodDuration": "P1D"}).json()
    assert [b[0] for b in q[0]["x"]["sum"]] == [10, 40]
    # each method asked alone (the SQL then computes only what it needs) gives what it gives among
    # all the others, with and without a period
    for period in ({"aggrPeriodDuration": "P1D"}, {}):
        together = ngsi.get(f"{T}/{V1}", params={**base, **period}).json()["x"]
        for method in AGG.split(","):
            alone = ngsi.get(f"{T}/{V1}", params={**base, **period, "aggrMethods": method}).json()["x"]
            assert alone[method] == together[method], (method, period)
            assert set(alone) == {"type", method}


def test_aggregations_of_non_numbers_and_months(ngsi: Ngsi) -> None:
    states = [("open", day(1)), ("closed", day(2)), ("open", "2025-08-03T00:00:00Z")]
    ngsi.post(T, json={"id": V1, "type": "V", "state": [inst(s, t) for s, t in states]})
    params = {"options": "aggregatedValues", "aggrMethods": "totalCount,distinctCount,min,max,sum"}
    state = ngsi.get(f"{T}/{V1}", params=params).json()["state"]
    assert state["totalCount"][0][0] == 3 and state["distinctCount"][0][0] == 2
    assert state["min"][0][0] == "closed" and state["max"][0][0] == "open" and state["sum"][0][0] is None
    monthly = ngsi.get(f"{T}/{V1}", params={**params, "aggrPeriodDuration": "P1M"}).json()["state"]
    assert monthly["totalCount"] == [
        [2, "2025-07-01T00:00:00Z", "2025-08-01T00:00:00Z"],
        [1, "2025-08-01T00:00:00Z", "2025-09-01T00:00:00Z"],
    ]


# --------------------------------------------------------------------------- pagination


def test_content_range_pagination(settings: Settings, monkeypatch: pytest.MonkeyPatch, db: Database) -> None:
    with other_app(settings, monkeypatch, anonymous_writes="true", temporal_max_instances="3") as c:
        speed = [inst(i, day(i)) for i in range(1, 6)]  # days 1..5
        fuel = [inst(100 + i, day(i)) for i in (2, 5)]
        assert c.post(f"{BASE}{T}", json={"id": V1, "type": "V", "speed": speed, "fuel": fuel}).status_code == 201

        r = c.get(f"{BASE}{T}/{V1}")
        assert r.status_code == 206
        assert r.headers["Content-Range"] == "date-time 2025-07-01T00:00:00.000Z-2025-07-03T00:00:00.000Z/*"
        assert values(r.json(), "speed") == [1, 2, 3] and values(r.json(), "fuel") == [102]  # cut at day 3

        r = c.get(f"{BASE}{T}/{V1}", params={"timerel": "after", "timeAt": "2025-06-30T00:00:00Z"})
        assert r.status_code == 206
        assert r.headers["Content-Range"].startswith("date-time 2025-06-30T00:00:00.000Z-2025-07-03T00:00:00.000Z/")
        # next page: after the end of this one
        r = c.get(f"{BASE}{T}/{V1}", params={"timerel": "after", "timeAt": "2025-07-03T00:00:01Z"})
        assert r.status_code == 200 and "Content-Range" not in r.headers
        assert values(r.json(), "speed") == [4, 5] and values(r.json(), "fuel") == [105]

        # backwards with lastN above the server's limit
        r = c.get(f"{BASE}{T}/{V1}", params={"lastN": "10"})
        assert r.status_code == 206
        assert r.headers["Content-Range"] == "date-time 2025-07-05T00:00:00.000Z-2025-07-03T00:00:00.000Z/10"
        assert values(r.json(), "speed") == [3, 4, 5] and values(r.json(), "fuel") == [105]
        r = c.get(f"{BASE}{T}/{V1}", params={"lastN": "10", "timerel": "before", "timeAt": day(9)})
        assert r.headers["Content-Range"].startswith("date-time 2025-07-09T00:00:00.000Z-2025-07-03")
        # lastN within the limit: complete, no pagination
        r = c.get(f"{BASE}{T}/{V1}", params={"lastN": "3"})
        assert r.status_code == 200 and "Content-Range" not in r.headers
        assert values(r.json(), "speed") == [3, 4, 5] and values(r.json(), "fuel") == [102, 105]
        # the query endpoint pages the same way
        r = c.get(f"{BASE}{T}", params={"type": "V", "options": "temporalValues"})
        assert r.status_code == 206 and r.headers["Content-Range"].endswith("/*")
        assert [v[0] for v in r.json()[0]["speed"]["values"]] == [1, 2, 3]


def test_instances_without_the_time_come_before_the_oldest(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, db: Database
) -> None:
    """Instances without the time property (no observedAt) are in the evolution when no timerel
    bounds it, before the oldest timed one, in the order they were added; lastN reaches them after
    every timed one; the server's limit counts both (they are read apart from the timed ones)."""
    untimed = [{"type": "Property", "value": f"u{i}"} for i in (1, 2, 3)]
    timed = [inst(i, day(i)) for i in (1, 2, 3, 4)]
    with other_app(settings, monkeypatch, anonymous_writes="true", temporal_max_instances="5") as c:
        r = c.post(f"{BASE}{T}", json={"id": V1, "type": "V", "x": [timed[2], *untimed[:2], *timed[:2]]})
        assert r.status_code == 201, r.text
        assert c.post(f"{BASE}{T}/{V1}/attrs", json={"x": [untimed[2], timed[3]]}).status_code == 204

        def got(params: dict[str, str]) -> tuple[int, list[Any]]:
            r = c.get(f"{BASE}{T}/{V1}", params=params)
            assert r.status_code in (200, 206), r.text
            return r.status_code, values(r.json(), "x")

        assert got({"lastN": "2"}) == (200, [3, 4])
        assert got({"lastN": "5"}) == (200, ["u3", 1, 2, 3, 4])
        assert got({"timerel": "after", "timeAt": day(2)}) == (200, [2, 3, 4])
        # past the server's limit of 5: the untimed three and the two oldest timed ones
        assert got({}) == (206, ["u1", "u2", "u3", 1, 2])
        assert got({"lastN": "7"}) == (206, [1, 2, 3, 4])  # cut at the oldest timed instance read
    with other_app(settings, monkeypatch, anonymous_writes="true", temporal_max_instances="10") as c:
        r = c.get(f"{BASE}{T}/{V1}")
        assert r.status_code == 200 and values(r.json(), "x") == ["u1", "u2", "u3", 1, 2, 3, 4]
        r = c.get(f"{BASE}{T}/{V1}", params={"lastN": "6"})
        assert r.status_code == 200 and values(r.json(), "x") == ["u2", "u3", 1, 2, 3, 4]


# --------------------------------------------------------------------------- history from the entity API


def test_history_from_entity_writes(ngsi: Ngsi) -> None:
    ngsi.create({"id": V1, "type": "Vehicle", "speed": {"type": "Property", "value": 1, "observedAt": day(1)}})
    assert ngsi.patch(f"/entities/{V1}/attrs", json={"speed": inst(2, day(2))}).status_code == 204
    assert ngsi.patch(f"/entities/{V1}", json={"speed": inst(3, day(3))}).status_code == 204
    assert ngsi.patch(f"/entities/{V1}/attrs/speed", json={"value": 4, "observedAt": day(4)}).status_code == 204
    batch = [{"id": V1, "type": "Vehicle", "speed": inst(5, day(5))}]
    assert ngsi.post("/entityOperations/update", json=batch).status_code == 204
    r = ngsi.post(
        "/entityOperations/upsert", json=[{**batch[0], "speed": inst(6, day(6))}], params={"options": "update"}
    )
    assert r.status_code == 204
    assert ngsi.post("/entityOperations/merge", json=[{**batch[0], "speed": inst(7, day(7))}]).status_code == 204
    body = ngsi.get(f"{T}/{V1}").json()
    assert values(body, "speed") == [1, 2, 3, 4, 5, 6, 7]
    assert values(ngsi.get(f"{T}/{V1}", params={"timerel": "after", "timeAt": day(6)}).json(), "speed") == [6, 7]
    # attributes without observedAt: read by the time they were recorded
    ngsi.patch(f"/entities/{V1}/attrs", json={"speed": {"type": "Property", "value": 8}})
    recorded = ngsi.get(f"{T}/{V1}", params={"timeproperty": "modifiedAt", "lastN": "2"}).json()
    assert values(recorded, "speed") == [7, 8]
    # a deleted attribute leaves its history; the current state no longer has it
    assert ngsi.delete(f"/entities/{V1}/attrs/speed").status_code == 204
    assert values(ngsi.get(f"{T}/{V1}", params={"lastN": "1", "timeproperty": "modifiedAt"}).json(), "speed") == [8]


# --------------------------------------------------------------------------- writes and deletes


def test_add_modify_and_delete_instances(ngsi: Ngsi, db: Database) -> None:
    ngsi.post(T, json={"id": V1, "type": "V", "x": [inst(1, day(1)), inst(2, day(2))], "y": [inst(9, day(1))]})
    r = ngsi.post(f"{T}/{V1}/attrs", json={"x": [inst(3, day(3))], "z": inst(True, day(1))})
    assert r.status_code == 204, r.text
    assert values(ngsi.get(f"{T}/{V1}").json(), "x") == [1, 2, 3]
    assert ngsi.get(f"/entities/{V1}").json()["z"]["value"] is True
    assert_problem(ngsi.post(f"{T}/urn:ngsi-ld:V:none/attrs", json={"x": inst(1, day(1))}), 404, "ResourceNotFound")
    assert_problem(
        ngsi.post(f"{T}/{V1}/attrs", json={"id": "urn:other:1", "x": inst(1, day(1))}), 400, "BadRequestData"
    )

    second = ngsi.get(f"{T}/{V1}").json()["x"][1]
    r = ngsi.patch(f"{T}/{V1}/attrs/x/{second['instanceId']}", json={"value": 20, "observedAt": day(2, 12)})
    assert r.status_code == 204, r.text
    x = ngsi.get(f"{T}/{V1}").json()["x"]
    assert [(i["value"], i["observedAt"]) for i in x] == [(1, day(1)), (20, day(2, 12)), (3, day(3))]
    assert x[1]["instanceId"] == second["instanceId"]
    sums = ngsi.get(f"{T}/{V1}", params={"options": "aggregatedValues", "aggrMethods": "sum"}).json()
    assert sums["x"]["sum"][0][0] == 24  # the numeric column follows the modified value
    assert_problem(ngsi.patch(f"{T}/{V1}/attrs/x/urn:ngsi-ld:nope", json={"value": 1}), 404, "ResourceNotFound")

    assert ngsi.delete(f"{T}/{V1}/attrs/x/{second['instanceId']}").status_code == 204
    assert values(ngsi.get(f"{T}/{V1}").json(), "x") == [1, 3]
    assert_problem(ngsi.delete(f"{T}/{V1}/attrs/x/{second['instanceId']}"), 404, "ResourceNotFound")

    # delete an attribute's history (and the attribute)
    assert ngsi.delete(f"{T}/{V1}/attrs/y").status_code == 204
    body = ngsi.get(f"{T}/{V1}").json()
    assert "y" not in body and "y" not in ngsi.get(f"/entities/{V1}").json()
    assert_problem(ngsi.delete(f"{T}/{V1}/attrs/y"), 404, "ResourceNotFound")
    with db.session() as s:
        actions = set(s.scalars(select(AuditEntry.action).where(AuditEntry.object_id == V1)))
    assert {"context.temporal.instance.modify", "context.temporal.instance.delete"} <= actions
    assert "context.temporal.attribute.delete" in actions


def test_delete_attribute_datasets(ngsi: Ngsi) -> None:
    ngsi.post(
        T,
        json={
            "id": V1,
            "type": "V",
            "t": [inst(1, day(1)), inst(2, day(1), datasetId="urn:ds:a"), inst(3, day(1), datasetId="urn:ds:b")],
        },
    )
    assert ngsi.delete(f"{T}/{V1}/attrs/t", params={"datasetId": "urn:ds:a"}).status_code == 204
    assert sorted(values(ngsi.get(f"{T}/{V1}").json(), "t")) == [1, 3]
    assert ngsi.delete(f"{T}/{V1}/attrs/t").status_code == 204  # the default instance
    assert values(ngsi.get(f"{T}/{V1}").json(), "t") == [3]
    assert_problem(ngsi.delete(f"{T}/{V1}/attrs/t", params={"datasetId": "urn:ds:a"}), 404, "ResourceNotFound")
    assert_problem(ngsi.delete(f"{T}/{V1}/attrs/t", params={"datasetId": "nope"}), 400, "BadRequestData")
    ngsi.post(f"{T}/{V1}/attrs", json={"t": [inst(4, day(2)), inst(5, day(2), datasetId="urn:ds:a")]})
    assert ngsi.delete(f"{T}/{V1}/attrs/t", params={"deleteAll": "true"}).status_code == 204
    assert "t" not in ngsi.get(f"{T}/{V1}").json()


def test_delete_temporal_entity(ngsi: Ngsi, db: Database) -> None:
    ngsi.post(T, json=vehicle_history())
    ngsi.post(T, json={**vehicle_history(), "id": "urn:ngsi-ld:Vehicle:2"})
    assert ngsi.delete(f"{T}/{V1}").status_code == 204
    assert_problem(ngsi.get(f"{T}/{V1}"), 404, "ResourceNotFound")
    assert_problem(ngsi.get(f"/entities/{V1}"), 404, "ResourceNotFound")
    with db.session() as s:
        left = s.scalar(
            select(func.count()).select_from(NgsiAttributeHistory).where(NgsiAttributeHistory.entity_id == V1)
        )
        other = s.scalar(select(func.count()).select_from(NgsiAttributeHistory))
    assert left == 0 and other == 6
    assert_problem(ngsi.delete(f"{T}/{V1}"), 404, "ResourceNotFound")
    # an entity deleted through the entity API keeps its history until the temporal delete
    assert ngsi.delete("/entities/urn:ngsi-ld:Vehicle:2").status_code == 204
    assert ngsi.delete(f"{T}/urn:ngsi-ld:Vehicle:2").status_code == 204
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(NgsiAttributeHistory)) == 0


# --------------------------------------------------------------------------- query


def test_query_temporal_entities(ngsi: Ngsi) -> None:
    for n in (1, 2, 3):
        body = {
            "id": f"urn:ngsi-ld:Vehicle:{n}",
            "type": "Vehicle",
            "speed": [inst(10 * n, day(1)), inst(10 * n + 1, day(2))],
        }
        ngsi.post(T, json=body)
    ngsi.post(
        T, json={"id": "urn:ngsi-ld:Bus:1", "type": "Bus", "speed": [inst(5, day(1))], "seats": [inst(40, day(1))]}
    )

    r = ngsi.get(T, params={"type": "Vehicle", "timerel": "after", "timeAt": day(2), "count": "true"})
    assert r.status_code == 200, r.text
    assert r.headers["NGSILD-Results-Count"] == "3"
    assert [(e["id"], values(e, "speed")) for e in r.json()] == [
        ("urn:ngsi-ld:Vehicle:1", [11]),
        ("urn:ngsi-ld:Vehicle:2", [21]),
        ("urn:ngsi-ld:Vehicle:3", [31]),
    ]
    r = ngsi.get(T, params={"type": "Vehicle", "q": "speed>15", "limit": "1"})  # q on the current state
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Vehicle:2"]
    r = ngsi.get(T, params={"attrs": "seats"})
    assert [(e["id"], sorted(k for k in e if k not in ("id", "type"))) for e in r.json()] == [
        ("urn:ngsi-ld:Bus:1", ["seats"])
    ]
    r = ngsi.get(
        T,
        params={
            "id": "urn:ngsi-ld:Vehicle:3,urn:ngsi-ld:Bus:1",
            "type": "Vehicle,Bus",
            "lastN": "1",
            "options": "temporalValues",
        },
    )
    assert {e["id"]: e["speed"]["values"][0][0] for e in r.json()} == {
        "urn:ngsi-ld:Vehicle:3": 31,
        "urn:ngsi-ld:Bus:1": 5,
    }
    assert_problem(ngsi.get(T, params={"timerel": "after", "timeAt": day(1)}), 400, "BadRequestData")
    assert_problem(ngsi.get(T, params={"type": "Vehicle", "limit": "5000"}), 400, "BadRequestData")
    assert_problem(ngsi.get(T, params={"type": "Vehicle", "timerel": "nope", "timeAt": day(1)}), 400, "BadRequestData")


# --------------------------------------------------------------------------- access


def test_access(
    ngsi: Ngsi,
    client: TestClient,
    make_user: Callable[..., User],
    token_headers: Callable[[User], dict[str, str]],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ngsi.post(T, json=vehicle_history())
    ngsi.post(
        T, json={"id": "urn:ngsi-ld:AirQualityObserved:1", "type": "AirQualityObserved", "pm25": [inst(30, day(1))]}
    )
    assert_problem(client.post(f"{BASE}{T}", json=vehicle_history()), 401, "Unauthorized")
    assert_problem(client.delete(f"{BASE}{T}/{V1}"), 401, "Unauthorized")
    assert_problem(client.get(f"{BASE}{T}/{V1}"), 401, "Unauthorized")
    viewer = token_headers(make_user("viewer"))
    assert client.get(f"{BASE}{T}/{V1}", headers=viewer).status_code == 200
    assert_problem(client.delete(f"{BASE}{T}/{V1}", headers=viewer), 403, "Forbidden")
    assert_problem(
        client.post(f"{BASE}{T}/{V1}/attrs", json={"speed": inst(1, day(1))}, headers=viewer), 403, "Forbidden"
    )
    with other_app(settings, monkeypatch, public_types='["AirQualityObserved"]') as anon:
        assert anon.get(f"{BASE}{T}/urn:ngsi-ld:AirQualityObserved:1").status_code == 200
        assert_problem(anon.get(f"{BASE}{T}/{V1}"), 401, "Unauthorized")
        everything = anon.get(f"{BASE}{T}", params={"type": "Vehicle,AirQualityObserved"}).json()
        assert [e["id"] for e in everything] == ["urn:ngsi-ld:AirQualityObserved:1"]
        assert_problem(anon.post(f"{BASE}{T}", json=vehicle_history()), 401, "Unauthorized")
