"""Retrieve Context Source Identity Information (v1.9.1 §5.15.1, §5.2.40): the suite's 061_01
with its exact checks, the identity shared by every process of one installation, and the
representations. Both databases."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from ioc.app import create_app
from ioc.modules.context.identity import iso_duration, source_uuid
from ioc.settings import Settings

from .conftest import CORE, LD, Ngsi

DURATION = re.compile(r"^P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?!$)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")
UTC_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
PATH = "/info/sourceIdentity"
JSON = {"Accept": "application/json"}


def test_061_01_01_retrieve_context_source_identity_information(ngsi: Ngsi) -> None:
    r = ngsi.get(PATH, headers=JSON)
    assert r.status_code == 200
    assert r.json()["type"] == "ContextSourceIdentity"
    assert r.json()["id"].startswith("urn:")
    assert r.headers["content-type"] == "application/json"
    assert CORE in r.headers["link"]


def test_061_01_02_the_mandatory_members(ngsi: Ngsi) -> None:
    body = ngsi.get(PATH, headers=JSON).json()
    assert {"contextSourceAlias", "contextSourceUptime", "contextSourceTimeAt"} <= set(body)
    assert body["contextSourceAlias"]


def test_061_01_03_and_04_uptime_is_a_duration_and_time_at_a_utc_date_time(ngsi: Ngsi) -> None:
    body = ngsi.get(PATH, headers=JSON).json()
    assert DURATION.match(body["contextSourceUptime"]), body
    assert UTC_TIME.match(body["contextSourceTimeAt"]), body


def test_061_01_05_each_tenant_has_its_own_stable_alias(ngsi: Ngsi) -> None:
    default = ngsi.get(PATH, headers=JSON).json()["contextSourceAlias"]
    a = ngsi.get(PATH, headers={**JSON, "NGSILD-Tenant": "urnalias-a"})
    b = ngsi.get(PATH, headers={**JSON, "NGSILD-Tenant": "urnalias-b"}).json()["contextSourceAlias"]
    assert a.status_code == 200 and a.headers["NGSILD-Tenant"] == "urnalias-a"  # no tenant needs to exist
    assert len({default, a.json()["contextSourceAlias"], b}) == 3
    again = ngsi.get(PATH, headers={**JSON, "NGSILD-Tenant": "urnalias-a"}).json()["contextSourceAlias"]
    assert again == a.json()["contextSourceAlias"]
    assert "urnalias" not in again  # the alias does not spell out the tenant's name


def test_every_process_of_an_installation_answers_the_same_identity(ngsi: Ngsi, settings: Settings) -> None:
    mine = ngsi.get(PATH, headers=JSON).json()
    with TestClient(create_app(settings)) as other:
        theirs = other.get("/ngsi-ld/v1" + PATH, headers=JSON).json()
    assert (theirs["id"], theirs["contextSourceAlias"]) == (mine["id"], mine["contextSourceAlias"])
    elsewhere = settings.model_copy(update={"database_url": settings.database_url + "-elsewhere"})
    assert str(source_uuid(elsewhere.database_url)) not in mine["id"]


def test_json_ld_and_bad_requests(ngsi: Ngsi) -> None:
    r = ngsi.get(PATH, headers={"Accept": LD})
    assert r.status_code == 200 and r.json()["@context"] == CORE
    assert ngsi.get(PATH, headers={"Accept": "text/csv"}).status_code == 406
    assert ngsi.get(PATH, headers={**JSON, "NGSILD-Tenant": "bad tenant!"}).status_code == 400


def test_iso_duration() -> None:
    assert iso_duration(0) == "P0DT0H0M0S"
    assert iso_duration(90061.7) == "P1DT1H1M1S"
    assert all(DURATION.match(iso_duration(s)) for s in (0, 59, 3600, 10**7))
