"""The environment module's rows of the role matrix (``tests/api/test_role_matrix.py``).

Readings are public. The incident register is read by staff (``environment:read``, every staff
role) and handled with ``environment:manage``: admins, operators and the officers of the agency
that owns pollution incidents (so-nnmt, the matrix's agency officer). Ward officers and viewers
read only; API keys of the matrix hold neither permission. Every target is a fresh incident of
Thành Vinh owned by so-nnmt.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ioc.modules.environment import incidents
from tests.api.test_role_matrix import STAFF, Row, World, everyone, expect

PREFIX = "/api/v1/environment"
MANAGERS = ("admin", "operator", "agency_officer")


def _incident(world: World, role: str) -> int:
    with world.db.session() as s:
        incident = incidents.open_incident(
            s,
            kind="air",
            source="camera",
            title=f"Đốt rác ngoài trời (ma trận quyền, {role})",
            agency_id="so-nnmt",
            detected_at=datetime(2025, 9, 10, 3, tzinfo=UTC),
            ward_code="16681",
        )
        return incident.id


def _action(path: str) -> Any:
    return lambda w, r: f"{PREFIX}/incidents/{_incident(w, r)}/{path}"


ROWS: list[Row] = [
    Row("GET", PREFIX + "/air/now", everyone(200)),
    Row("GET", PREFIX + "/flood/wards", everyone(200)),
    Row("GET", PREFIX + "/incidents/summary", everyone(200)),
    Row("GET", PREFIX + "/incidents", expect(200, STAFF)),
    Row(
        "POST",
        PREFIX + "/incidents",
        expect(201, MANAGERS),
        json=lambda w, r: {"kind": "water", "source": "press", "title": f"Nước thải ({r})", "ward_code": "16681"},
    ),
    Row(
        "POST",
        PREFIX + "/incidents/{incident_id}/confirm",
        expect(200, MANAGERS),
        url=_action("confirm"),
        json=lambda w, r: {},
    ),
    Row(
        "POST",
        PREFIX + "/incidents/{incident_id}/close",
        expect(200, MANAGERS),
        url=_action("close"),
        json=lambda w, r: {"resolution": "Đã xử lý xong."},
    ),
    Row(
        "POST",
        PREFIX + "/incidents/{incident_id}/dismiss",
        expect(200, MANAGERS),
        url=_action("dismiss"),
        json=lambda w, r: {"reason": "Không phải sự cố ô nhiễm."},
    ),
    Row(
        "POST",
        PREFIX + "/incidents/{incident_id}/merge",
        expect(200, MANAGERS),
        url=_action("merge"),
        json=lambda w, r: {"into": _incident(w, r)},
    ),
]
