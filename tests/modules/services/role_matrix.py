"""The services module's rows of the role matrix (``tests/api/test_role_matrix.py``).

Imports need ``services:import`` (operators); pushing dossiers needs ``services:push`` and
managing connectors ``services:admin``, which no staff role holds: admins, and API keys
given those scopes. An upload without its file answers 422 once the caller is authorised
(the matrix sends no files), which is what the allowed callers get.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.api.test_role_matrix import Row, World, expect

PREFIX = "/api/v1/services"
ADMIN = ("admin",)


def _dossier(role: str) -> dict[str, Any]:
    return {
        "dossiers": [
            {
                "code": f"MT-{role}-{uuid.uuid4().hex[:6]}",
                "procedure_code": "1.001193",
                "procedure_name": "Đăng ký khai sinh",
                "agency_id": "ubnd-thanh-vinh",
                "service_level": "full",
                "channel": "online",
                "received_at": "2026-03-02 09:00",
                "due_at": "2026-03-03",
                "status": "received",
            }
        ]
    }


def _connector_body(role: str) -> dict[str, Any]:
    # Port 9 (discard) refuses at once: a run records the error and answers 200.
    return {
        "name": f"matrix-{role.replace('_', '-')}-{uuid.uuid4().hex[:6]}",
        "url": "http://127.0.0.1:9/dossiers",
        "mapping": {
            "code": "id",
            "procedure_code": "proc",
            "agency_id": "agency",
            "service_level": "level",
            "channel": "channel",
            "received_at": "received",
        },
    }


def _connector(world: World, role: str) -> int:
    r = world.client.post(PREFIX + "/connectors", json=_connector_body(role), headers=world.headers["admin"])
    assert r.status_code == 201, r.text
    connector_id: int = r.json()["id"]
    return connector_id


ROWS: list[Row] = [
    Row("POST", PREFIX + "/imports", expect(422, ("admin", "operator"))),
    Row("POST", PREFIX + "/dossiers", expect(200, ADMIN), json=lambda w, r: _dossier(r)),
    Row("POST", PREFIX + "/connectors", expect(201, ADMIN), json=lambda w, r: _connector_body(r)),
    Row(
        "DELETE",
        PREFIX + "/connectors/{connector_id}",
        expect(204, ADMIN),
        url=lambda w, r: f"{PREFIX}/connectors/{_connector(w, r)}",
    ),
    Row(
        "PATCH",
        PREFIX + "/connectors/{connector_id}",
        expect(200, ADMIN),
        url=lambda w, r: f"{PREFIX}/connectors/{_connector(w, r)}",
        json=lambda w, r: {"interval_minutes": 15, "headers": {"X-API-Key": "matrix-secret"}},
    ),
    Row(
        "POST",
        PREFIX + "/connectors/{connector_id}/run",
        expect(200, ADMIN),
        url=lambda w, r: f"{PREFIX}/connectors/{_connector(w, r)}/run",
    ),
]
