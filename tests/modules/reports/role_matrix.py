"""The reports module's rows of the role matrix (``tests/api/test_role_matrix.py``).

Submitting, following, rating and reopening a report are public (the tracking code is the
credential); handling needs ``reports:handle`` (operators, agency and ward officers, inside
their remit); routing and escalating need ``reports:route`` (operators). The targets are
reports of "rác thải" in Thành Vinh ward, routed to its People's Committee: in the ward
officer's remit, not in the agency officer's (so-nnmt), who gets a 404.
"""

from __future__ import annotations

from typing import Any

from tests.api.test_role_matrix import ROLES, Row, World, everyone, expect

PREFIX = "/api/v1/reports"
HANDLERS = ("admin", "operator", "agency_officer", "ward_officer")
ROUTERS = ("admin", "operator")
#: Out of the so-nnmt officer's remit: not found for them.
IN_REMIT = {"agency_officer": 404}


def _body(role: str) -> dict[str, Any]:
    return {
        "category": "rac-thai",
        "description": f"Rác tồn đọng ở đầu ngõ (ma trận quyền, {role})",
        "address": "Số 1 đường Lê Lợi, phường Thành Vinh",
    }


def _report(world: World, role: str, *, closed: bool = False) -> dict[str, Any]:
    """A new report submitted anonymously through the API (closed by an admin if asked)."""
    r = world.client.post(PREFIX, json=_body(role))
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    if closed:
        r = world.client.post(
            f"{PREFIX}/{created['id']}/transition",
            json={"status": "no_further_action", "note": "Đã kiểm tra, không có vi phạm."},
            headers=world.headers["admin"],
        )
        assert r.status_code == 200, r.text
    return created


def _action(path: str) -> Any:
    return lambda w, r: f"{PREFIX}/{_report(w, r)['id']}/{path}"


def _tracked(path: str) -> Any:
    return lambda w, r: f"{PREFIX}/track/{_report(w, r, closed=True)['code']}/{path}"


ROWS: list[Row] = [
    Row("POST", PREFIX, everyone(201), json=lambda w, r: _body(r)),
    Row(
        "POST", PREFIX + "/track/{code}/rating", everyone(200), url=_tracked("rating"), json=lambda w, r: {"rating": 4}
    ),
    Row(
        "POST",
        PREFIX + "/track/{code}/reopen",
        everyone(200),
        url=_tracked("reopen"),
        json=lambda w, r: {"reason": f"Rác lại đầy ({r})"},
    ),
    Row("POST", PREFIX + "/escalations/run", expect(200, ROUTERS)),
    Row(
        "POST",
        PREFIX + "/{report_id}/transition",
        expect(200, HANDLERS, **IN_REMIT),
        url=_action("transition"),
        json=lambda w, r: {"status": "investigating", "note": "Đã tiếp nhận"},
    ),
    Row(
        "POST",
        PREFIX + "/{report_id}/comments",
        expect(200, HANDLERS, **IN_REMIT),
        url=_action("comments"),
        json=lambda w, r: {"text": f"Ghi chú nội bộ ({r})"},
    ),
    Row(
        "POST",
        PREFIX + "/{report_id}/assign",
        expect(200, HANDLERS, **IN_REMIT),
        url=_action("assign"),
        json=lambda w, r: {"assignee": f"can-bo-{r}"},
    ),
    Row(
        "POST",
        PREFIX + "/{report_id}/abuse",
        expect(200, HANDLERS, **IN_REMIT),
        url=_action("abuse"),
        json=lambda w, r: {"abuse": True, "note": "Nội dung không phù hợp"},
    ),
    Row(
        "POST",
        PREFIX + "/{report_id}/route",
        expect(200, ROUTERS),
        url=_action("route"),
        json=lambda w, r: {"agency_id": "so-xay-dung", "note": "Thuộc thẩm quyền Sở Xây dựng"},
    ),
]

assert all(set(row.expected) == set(ROLES) for row in ROWS)
