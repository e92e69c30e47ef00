"""The KPI module's rows of the role matrix (``tests/api/test_role_matrix.py``).

Importing or pushing indicator values needs ``kpi:import``, recomputing and making reports
``kpi:admin``: operators (and admins) only. An upload without its file answers 422 once the
caller is authorised (the matrix sends no files), which is what the allowed callers get.
"""

from __future__ import annotations

from tests.api.test_role_matrix import Row, expect

MANAGERS = ("admin", "operator")

ROWS: list[Row] = [
    Row("POST", "/api/v1/kpis/imports", expect(422, MANAGERS)),
    Row(
        "POST",
        "/api/v1/kpis/indicator-values",
        expect(200, MANAGERS),
        json=lambda w, r: {
            "values": [{"measure": "opendata.urban_info_published", "period": "2026-01", "value": 3, "note": r}]
        },
    ),
    Row(
        "POST",
        "/api/v1/kpis/recompute",
        expect(200, MANAGERS),
        json=lambda w, r: {"kpis": ["urban-info-public"], "history": 1},
    ),
    Row(
        "POST", "/api/v1/kpi-reports", expect(201, MANAGERS), json=lambda w, r: {"kind": "monthly", "period": "2026-01"}
    ),
]
