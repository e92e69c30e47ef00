"""The context module's rows of the role matrix (``tests/api/test_role_matrix.py``): the device registry.

Managing devices and their keys needs ``devices:manage`` (admin, operator); reading them
``context:read`` (every staff role); telemetry with a staff credential needs ``context:write``
(admin, operator). The matrix's API key (alarm scopes only) may do none of it. Every caller
gets a fresh device, registered by an admin.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.api.test_role_matrix import STAFF, Row, World, expect

PREFIX = "/api/v1/devices"
MANAGERS = ("admin", "operator")


def _body(role: str) -> dict[str, Any]:
    return {
        "id": f"m-{role.replace('_', '-')}-{uuid.uuid4().hex[:6]}",
        "name": f"Trạm ma trận quyền ({role})",
        "entity_type": "AirQualityObserved",
        "attributes": {"pm25": {"attribute": "pm25", "unitCode": "GQ"}},
        "location": {"lat": 18.67797, "lon": 105.66202},
    }


def _device(world: World, role: str) -> str:
    r = world.client.post(PREFIX, json=_body(role), headers=world.headers["admin"])
    assert r.status_code == 201, r.text
    device_id: str = r.json()["id"]
    return device_id


def _key(world: World, role: str) -> str:
    device_id = _device(world, role)
    r = world.client.post(f"{PREFIX}/{device_id}/keys", headers=world.headers["admin"])
    assert r.status_code == 201, r.text
    return f"{PREFIX}/{device_id}/keys/{r.json()['id']}"


ROWS: list[Row] = [
    Row("GET", PREFIX, expect(200, STAFF)),
    Row("POST", PREFIX, expect(201, MANAGERS), json=lambda w, r: _body(r)),
    Row("GET", PREFIX + "/{device_id}", expect(200, STAFF), url=lambda w, r: f"{PREFIX}/{_device(w, r)}"),
    Row(
        "PATCH",
        PREFIX + "/{device_id}",
        expect(200, MANAGERS),
        url=lambda w, r: f"{PREFIX}/{_device(w, r)}",
        json=lambda w, r: {"name": f"Đổi tên bởi {r}"},
    ),
    Row("DELETE", PREFIX + "/{device_id}", expect(204, MANAGERS), url=lambda w, r: f"{PREFIX}/{_device(w, r)}"),
    Row("POST", PREFIX + "/{device_id}/keys", expect(201, MANAGERS), url=lambda w, r: f"{PREFIX}/{_device(w, r)}/keys"),
    Row("DELETE", PREFIX + "/{device_id}/keys/{key_id}", expect(204, MANAGERS), url=_key),
    Row(
        "POST",
        PREFIX + "/{device_id}/telemetry",
        expect(200, MANAGERS),
        url=lambda w, r: f"{PREFIX}/{_device(w, r)}/telemetry",
        json=lambda w, r: {"pm25": 21.5},
    ),
]
