"""Open311 GeoReport v2 over real HTTP (an ``ioc serve`` process), in XML and in JSON."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from lxml import etree

from ioc.core.auth import AccessPolicy, create_api_key
from ioc.core.db import Database
from ioc.settings import Settings
from tests.conftest import PASSWORD, SECRET, MakeUser, free_port


class Server:
    """An ``ioc serve`` process with only this module, ready when /healthz answers.

    (``start_server()`` waits for /readyz, which is 503 while the core's ``is_current`` does
    not see through module branches' ``depends_on``; switch back once the core is fixed.)
    """

    def __init__(self, settings: Settings) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "IOC_DATABASE_URL": settings.database_url,
            "IOC_SECRET_KEY": SECRET,
            "IOC_VAR_DIR": str(settings.var_dir),
            "IOC_MODULES": '["reports"]',
            "IOC_EVENTS_POLL_SECONDS": "0.05",
        }
        port = self.url.rsplit(":", 1)[1]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ioc", "serve", "--port", port],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def live(settings: Settings, db: Database) -> Iterator[Server]:
    server = Server(settings)
    yield server
    server.stop()


def api_key(db: Database, scopes: list[str]) -> str:
    policy = AccessPolicy()
    policy.add("open311:write", "Open311")
    policy.add("reports:read", "read")
    with db.session() as s:
        _, key = create_api_key(s, policy, name="Vinh Smart app", scopes=scopes)
    return key


def xml(r: httpx.Response) -> Any:
    assert r.headers["content-type"].startswith("text/xml"), r.headers["content-type"]
    assert r.content.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    return etree.fromstring(r.content)


def test_round_trip_xml_and_json(
    live: Server, db: Database, points: dict[str, tuple[float, float]], make_user: MakeUser
) -> None:
    server = live
    base = server.url + "/open311/v2"
    key = api_key(db, ["open311:write"])
    lat, lon = points["16702"]
    with httpx.Client(timeout=20) as http:
        disco = xml(http.get(base + "/discovery.xml"))
        assert (
            disco.tag == "discovery"
            and disco.findtext("endpoints/endpoint/specification") == "http://wiki.open311.org/GeoReport_v2"
        )
        assert http.get(base + "/discovery.json").json()["endpoints"][0]["formats"] == ["text/xml", "application/json"]
        services = xml(http.get(base + "/services.xml"))
        assert services.tag == "services" and len(services.findall("service")) == 12
        assert services.find("service").findtext("type") == "realtime"
        svc = http.get(base + "/services.json").json()
        assert isinstance(svc, list) and {
            "service_code",
            "service_name",
            "metadata",
            "type",
            "keywords",
            "group",
        } <= set(svc[0])
        assert xml(http.get(base + "/services/rac-thai.xml")).findtext("service_code") == "rac-thai"

        form = {
            "api_key": key,
            "jurisdiction_id": "vinh.nghean.gov.vn",
            "service_code": "rac-thai",
            "lat": str(lat),
            "long": str(lon),
            "address_string": "15 Nguyễn Du, Vinh Phú",
            "description": "Rác thải tồn đọng ba ngày",
            "first_name": "Lê",
            "last_name": "Văn Công Dân",
            "email": "cong.dan@example.vn",
            "phone": "0987654321",
        }
        created = xml(http.post(base + "/requests.xml", data=form))
        assert created.tag == "service_requests"
        sid = created.findtext("request/service_request_id")
        assert sid and created.findtext("request/service_notice")
        created_json = http.post(base + "/requests.json", data=form).json()
        assert isinstance(created_json, list) and created_json[0]["service_request_id"]

        one = xml(http.get(f"{base}/requests/{sid}.xml"))
        req = one.find("request")
        assert req.findtext("status") == "open" and req.findtext("service_code") == "rac-thai"
        assert req.findtext("agency_responsible") == "UBND phường Vinh Phú"
        assert req.findtext("requested_datetime").endswith("+07:00")
        assert req.findtext("expected_datetime").endswith("+07:00")
        assert float(req.findtext("lat")) == lat and float(req.findtext("long")) == lon
        listed = http.get(base + "/requests.json", params={"status": "open", "service_code": "rac-thai"}).json()
        assert {r["service_request_id"] for r in listed} == {sid, created_json[0]["service_request_id"]}
        assert (
            "cong.dan" not in http.get(base + "/requests.json").text
            and "0987654321" not in http.get(base + "/requests.xml").text
        )

        # an officer closes it over the staff API; Open311 then shows it closed, with its notes
        officer = make_user("ward_officer", "ubnd-vinh-phu")
        token = http.post(
            server.url + "/api/v1/auth/token", data={"username": officer.username, "password": PASSWORD}
        ).json()
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        for status in ("investigating", "fixed"):
            r = http.post(
                f"{server.url}/api/v1/reports/{sid}/transition",
                json={"status": status, "note": f"Đã {status}"},
                headers=auth,
            )
            assert r.status_code == 200, r.text
        closed = http.get(f"{base}/requests/{sid}.json").json()[0]
        assert (
            closed["status"] == "closed"
            and closed["status_notes"] == "Đã fixed"
            and closed["expected_datetime"] is None
        )
        assert http.get(base + "/requests.json", params={"status": "closed"}).json()[0]["service_request_id"] == sid

        updates = xml(http.get(base + "/servicerequestupdates.xml"))
        assert updates.tag == "service_requests_updates"
        mine = [u for u in updates.findall("request_update") if u.findtext("service_request_id") == sid]
        assert [u.findtext("status") for u in mine] == ["FOR_TRIAGE", "INVESTIGATING", "FIXED"]
        # the citizen's app says it is not fixed: status OPEN reopens it (FixMyStreet extension)
        upd = http.post(
            base + "/servicerequestupdates.json",
            data={"api_key": key, "service_request_id": sid, "status": "OPEN", "description": "Vẫn còn rác"},
        )
        assert upd.status_code == 200 and upd.json()[0]["update_id"]
        assert http.get(f"{base}/requests/{sid}.json").json()[0]["status"] == "open"
    check_errors(server, db, points)


def check_errors(server: Server, db: Database, points: dict[str, tuple[float, float]]) -> None:
    """Errors follow the spec: {code, description} lists, 400/403/404, nothing written."""
    base = server.url + "/open311/v2"
    key = api_key(db, ["open311:write"])
    weak = api_key(db, ["reports:read"])
    lat, lon = points["16681"]
    good = {"service_code": "rac-thai", "lat": str(lat), "long": str(lon), "description": "x"}
    with httpx.Client(timeout=20) as http:
        before = len(http.get(base + "/requests.json").json())

        def err(r: httpx.Response, status: int) -> str:
            assert r.status_code == status, r.text
            if r.headers["content-type"].startswith("application/json"):
                body = r.json()
                assert isinstance(body, list) and set(body[0]) == {"code", "description"}
                return str(body[0]["description"])
            root = xml(r)
            assert root.tag == "errors" and root.find("error/code") is not None
            return str(root.findtext("error/description"))

        err(http.post(base + "/requests.xml", data=good), 403)
        err(http.post(base + "/requests.json", data={**good, "api_key": "ioc_nope"}), 403)
        err(http.post(base + "/requests.xml", data={**good, "api_key": weak}), 403)
        err(http.post(base + "/requests.xml", data={**good, "api_key": key, "service_code": "nope"}), 404)
        err(
            http.post(
                base + "/requests.xml", data={"api_key": key, "description": "x", "lat": str(lat), "long": str(lon)}
            ),
            400,
        )
        err(http.post(base + "/requests.json", data={"api_key": key, "service_code": "rac-thai"}), 400)
        assert "ngoài" in err(
            http.post(base + "/requests.xml", data={**good, "api_key": key, "lat": "21.03", "long": "105.85"}), 400
        )
        err(http.post(base + "/requests.xml", data={**good, "api_key": key, "jurisdiction_id": "hanoi.gov.vn"}), 404)
        err(http.get(base + "/services.json", params={"jurisdiction_id": "hanoi.gov.vn"}), 404)
        err(http.get(base + "/services/nope.xml"), 404)
        err(http.get(base + "/requests/999999.json"), 404)
        err(http.get(base + "/tokens/PA-NOPE.xml"), 404)
        err(http.get(base + "/requests.json", params={"start_date": "yesterday"}), 400)
        err(
            http.get(
                base + "/requests.json",
                params={"start_date": "2025-01-01T00:00:00Z", "end_date": "2025-12-01T00:00:00Z"},
            ),
            400,
        )
        err(http.get(base + "/requests.xml", params={"status": "pending"}), 400)
        err(http.get(base + "/requests.xml", params={"page_size": "5000"}), 400)
        err(http.get(base + "/nothing.xml"), 404)
        # a refused POST wrote nothing
        assert len(http.get(base + "/requests.json").json()) == before
