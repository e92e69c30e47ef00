"""HTTP routes of public-service monitoring: monitor, dossiers, procedures, imports, push, connectors."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import and_, not_, select

from ioc.core import audit
from ioc.core.auth import CurrentPrincipal, Principal, Requires, Role
from ioc.core.db import DbSession, utcnow
from ioc.core.pages import render_page
from ioc.core.problems import Problem
from ioc.core.tabular import template_csv, template_xlsx

from . import connectors as conn
from .models import Connector, Dossier, ImportBatch, Procedure
from .monitor import Monitor, day_bounds, dossier_monitor, monitor_breakdown, procedures_at
from .records import VN
from .schemas import (
    ConnectorCreate,
    ConnectorPublic,
    ConnectorUpdate,
    DossierPublic,
    ImportPublic,
    ImportResult,
    ProcedurePublic,
    PushBody,
)
from .service import DOSSIER_HELP, PROCEDURE_HELP, columns, import_file, push

router = APIRouter(prefix="/api/v1/services", tags=["services"])
pages = APIRouter(include_in_schema=False)

Reader = Annotated[Principal, Depends(Requires("services:read"))]
Importer = Annotated[Principal, Depends(Requires("services:import"))]
Pusher = Annotated[Principal, Depends(Requires("services:push"))]
Admin = Annotated[Principal, Depends(Requires("services:admin"))]
MAX_PERIOD_DAYS = 5 * 366
MAX_UPLOAD = 30_000_000


def today() -> date:
    return utcnow().astimezone(VN).date()


def period(start: date | None, end: date | None) -> tuple[date, date]:
    """The period asked for: this month so far by default; at most five years."""
    end = end or today()
    start = start or end.replace(day=1)
    if end < start:
        raise Problem(422, "Ngày kết thúc trước ngày bắt đầu (end before start).", code="bad-period")
    if (end - start).days > MAX_PERIOD_DAYS:
        raise Problem(422, "Khoảng thời gian tối đa 5 năm (period longer than five years).", code="bad-period")
    return start, end


def remit(principal: Principal, agency_id: str | None, ward_code: str | None) -> tuple[str | None, str | None]:
    """Filters narrowed to the caller's remit: a ward officer sees its ward, an agency officer its agency."""
    if not principal.scoped:
        return agency_id, ward_code
    if principal.role == Role.WARD_OFFICER:
        if ward_code and ward_code != principal.ward_code:
            raise Problem(404, "Không có dữ liệu trong phạm vi của bạn (outside your remit).", code="out-of-remit")
        return agency_id, principal.ward_code
    if agency_id and agency_id != principal.agency_id:
        raise Problem(404, "Không có dữ liệu trong phạm vi của bạn (outside your remit).", code="out-of-remit")
    return principal.agency_id, ward_code


@router.get("/monitor")
def get_monitor(
    session: DbSession,
    principal: Reader,
    start: date | None = None,
    end: date | None = None,
    agency_id: Annotated[str | None, Query(max_length=64)] = None,
    procedure_code: Annotated[str | None, Query(max_length=64)] = None,
    ward_code: Annotated[str | None, Query(max_length=8)] = None,
    by: Literal["agency", "ward", "procedure"] | None = None,
    nearly_late_hours: Annotated[int, Query(ge=1, le=24 * 30)] = 48,
) -> dict[str, Any]:
    """The dossier monitor of a period (default: this month) with an optional breakdown."""
    start, end = period(start, end)
    agency_id, ward_code = remit(principal, agency_id, ward_code)
    filters: dict[str, Any] = {"agency_id": agency_id, "procedure_code": procedure_code, "ward_code": ward_code}
    m = dossier_monitor(session, start, end, nearly_late_hours=nearly_late_hours, **filters)
    out = m.as_dict()
    out["filters"] = filters
    if by:
        out["breakdown"] = [
            b.as_dict()
            for b in monitor_breakdown(session, start, end, by, nearly_late_hours=nearly_late_hours, **filters)
        ]
    return out


@router.get("/dossiers", response_model=list[DossierPublic])
def list_dossiers(
    session: DbSession,
    principal: Reader,
    received_from: date | None = None,
    received_to: date | None = None,
    resolved_from: date | None = None,
    resolved_to: date | None = None,
    agency_id: Annotated[str | None, Query(max_length=64)] = None,
    ward_code: Annotated[str | None, Query(max_length=8)] = None,
    procedure_code: Annotated[str | None, Query(max_length=64)] = None,
    channel: Literal["online", "in_person", "post"] | None = None,
    service_level: Annotated[list[Literal["full", "partial", "direct"]] | None, Query()] = None,
    status: Literal["received", "in_progress", "resolved", "returned", "withdrawn"] | None = None,
    on_time: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[Dossier]:
    """Dossier records (the source rows behind the monitor and the KPIs), newest first.

    Dates are local days, both ends inclusive; ``service_level`` may be repeated (any of them);
    ``on_time``: closed by the due time, or without one (true), or after it (false)."""
    agency_id, ward_code = remit(principal, agency_id, ward_code)
    stmt = select(Dossier).order_by(Dossier.received_at.desc(), Dossier.id.desc())
    for moment, lo, hi in (
        (Dossier.received_at, received_from, received_to),
        (Dossier.resolved_at, resolved_from, resolved_to),
    ):
        if lo or hi:
            s, e = day_bounds(lo or date(1990, 1, 1), hi or date(2100, 1, 1))
            stmt = stmt.where(moment >= s, moment < e)
    for field, value in (
        (Dossier.agency_id, agency_id),
        (Dossier.ward_code, ward_code),
        (Dossier.procedure_code, procedure_code),
        (Dossier.channel, channel),
        (Dossier.status, status),
    ):
        if value:
            stmt = stmt.where(field == value)
    if service_level:
        stmt = stmt.where(Dossier.service_level.in_(service_level))
    if on_time is not None:
        late = and_(Dossier.resolved_at.is_not(None), Dossier.due_at.is_not(None), Dossier.resolved_at > Dossier.due_at)
        stmt = stmt.where(Dossier.resolved_at.is_not(None), not_(late) if on_time else late)
    return list(session.scalars(stmt.limit(limit).offset(offset)))


@router.get("/dossiers/{code}", response_model=DossierPublic)
def get_dossier(code: str, session: DbSession, principal: Reader) -> Dossier:
    row = session.scalar(select(Dossier).where(Dossier.code == code))
    if row is None or not principal.can_access(ward_code=row.ward_code, agency_id=row.agency_id):
        raise Problem(404, f"Không có hồ sơ '{code}' (no such dossier).")
    return row


@router.post("/dossiers", response_model=ImportResult)
def push_dossiers(body: PushBody, session: DbSession, principal: Pusher) -> ImportResult:
    """Push dossier records (API key with scope ``services:push``): all valid or nothing written."""
    return push(session, principal, body.dossiers)


@router.get("/procedures", response_model=list[ProcedurePublic])
def list_procedures(
    session: DbSession,
    at: date | None = None,
    level: Literal["partial", "full"] | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[Procedure]:
    """The procedure catalogue on ``at`` (public): all, at least một phần (``partial``) or toàn trình (``full``)."""
    return procedures_at(session, at or today(), level, limit, offset)


@router.post("/imports", response_model=ImportResult)
async def post_import(
    session: DbSession,
    principal: Importer,
    file: Annotated[UploadFile, File()],
    kind: Literal["dossiers", "procedures"] = "dossiers",
) -> ImportResult:
    """Import a CSV or XLSX file; 422 with every bad line (nothing written); re-importing changes nothing."""
    content = await file.read(MAX_UPLOAD + 1)
    if len(content) > MAX_UPLOAD:
        raise Problem(413, "Tệp quá lớn (file too large).", code="payload-too-large")
    return import_file(session, principal, kind, file.filename or "", content)


@router.get("/imports", response_model=list[ImportPublic])
def list_imports(
    session: DbSession, principal: Reader, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[ImportBatch]:
    return list(session.scalars(select(ImportBatch).order_by(ImportBatch.id.desc()).limit(limit)))


@router.get("/templates/{name}")
def get_template(name: str) -> Response:
    """The import templates: ``dossiers.csv``, ``dossiers.xlsx``, ``procedures.csv``, ``procedures.xlsx``."""
    kind, _, ext = name.partition(".")
    if kind not in ("dossiers", "procedures") or ext not in ("csv", "xlsx"):
        raise Problem(404, f"Không có mẫu '{name}' (no such template).")
    if ext == "csv":
        body, media = template_csv(columns(kind)), "text/csv; charset=utf-8"
    else:
        help_rows = DOSSIER_HELP if kind == "dossiers" else PROCEDURE_HELP
        body = template_xlsx(columns(kind), help_rows, kind)
        media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return Response(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="mau-{kind}.{ext}"'})


# --------------------------------------------------------------------------- connectors


@router.get("/connectors", response_model=list[ConnectorPublic])
def list_connectors(session: DbSession, principal: Admin) -> list[Connector]:
    return list(session.scalars(select(Connector).order_by(Connector.name)))


def _check_connector(mapping: dict[str, Any], value_maps: dict[str, Any], headers: dict[str, Any]) -> None:
    problems = conn.check_mapping(mapping, value_maps)
    if problems:
        raise Problem(422, "Ánh xạ trường không hợp lệ (bad mapping): " + "; ".join(problems), code="bad-mapping")
    problems = conn.check_headers(headers)
    if problems:
        raise Problem(422, "Tiêu đề HTTP không hợp lệ (bad headers): " + "; ".join(problems), code="bad-headers")


def _snapshot(row: Connector) -> dict[str, Any]:
    """The connector as audited: header values masked."""
    return ConnectorPublic.model_validate(row).model_dump(mode="json", exclude={"last_run_at", "last_counts"})


@router.post("/connectors", response_model=ConnectorPublic, status_code=201)
def create_connector(body: ConnectorCreate, session: DbSession, principal: Admin) -> Connector:
    """Declare a JSON HTTP endpoint to poll on a schedule, with its field mapping and request headers."""
    _check_connector(body.mapping, body.value_maps, body.headers)
    if session.scalar(select(Connector.id).where(Connector.name == body.name)) is not None:
        raise Problem(409, f"Đã có bộ kết nối '{body.name}' (connector exists).", code="connector-exists")
    row = Connector(**body.model_dump(), created_by=principal.name, created_at=utcnow())
    session.add(row)
    session.flush()
    audit.record(session, principal, "services.connector.create", "connector", row.id, after=_snapshot(row))
    return row


@router.patch("/connectors/{connector_id}", response_model=ConnectorPublic)
def update_connector(connector_id: int, body: ConnectorUpdate, session: DbSession, principal: Admin) -> Connector:
    """Change a connector (e.g. rotate its credentials); ``headers`` replaces them all, a value sent
    back as shown (masked) keeps the stored one."""
    row = _connector(session, connector_id)
    before = _snapshot(row)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("headers") is not None:
        changes["headers"] = conn.merge_headers(dict(row.headers or {}), changes["headers"])
    for name in ("mapping", "value_maps", "headers", "url", "items_path", "interval_minutes", "enabled"):
        if name in changes and changes[name] is None:
            raise Problem(422, f"'{name}' không được để trống (may not be null).", code="bad-connector")
    _check_connector(
        changes.get("mapping", row.mapping), changes.get("value_maps", row.value_maps), changes.get("headers", {})
    )
    old_headers = dict(row.headers or {})
    for name, value in changes.items():
        setattr(row, name, value)
    session.flush()
    after = _snapshot(row)
    if "headers" in changes:
        new_headers = changes["headers"]
        after["headers_changed"] = sorted(
            {n for n in set(old_headers) | set(new_headers) if old_headers.get(n) != new_headers.get(n)}
        )
    audit.record(session, principal, "services.connector.update", "connector", connector_id, before=before, after=after)
    return row


def _connector(session: DbSession, connector_id: int) -> Connector:
    row = session.get(Connector, connector_id)
    if row is None:
        raise Problem(404, f"Không có bộ kết nối {connector_id} (no such connector).")
    return row


@router.delete("/connectors/{connector_id}", status_code=204)
def delete_connector(connector_id: int, session: DbSession, principal: Admin) -> Response:
    row = _connector(session, connector_id)
    before = _snapshot(row)
    session.delete(row)
    audit.record(session, principal, "services.connector.delete", "connector", connector_id, before=before)
    return Response(status_code=204)


@router.post("/connectors/{connector_id}/run")
def run_connector(connector_id: int, session: DbSession, principal: Admin) -> dict[str, Any]:
    """Poll a connector now (as the schedule would)."""
    row = _connector(session, connector_id)
    outcome = conn.poll(session, row)
    audit.record(
        session, principal, "services.connector.run", "connector", connector_id, after={"status": outcome["status"]}
    )
    return outcome


# --------------------------------------------------------------------------- pages


def _local_month(d: date) -> tuple[date, date]:
    first = d.replace(day=1)
    return first, d


@router.get("/panel", response_class=HTMLResponse, include_in_schema=False)
def panel(request: Request, session: DbSession, principal: Reader) -> HTMLResponse:
    """The dashboard panel: this month's dossier figures."""
    start, end = _local_month(today())
    agency_id, ward_code = remit(principal, None, None)
    m = dossier_monitor(session, start, end, agency_id=agency_id, ward_code=ward_code)
    return render_page(request, "services/panel.html", principal=principal, m=m)


@pages.get("/services", response_class=HTMLResponse)
def dashboard_page(
    request: Request,
    session: DbSession,
    principal: CurrentPrincipal,
    start: date | None = None,
    end: date | None = None,
    agency_id: Annotated[str | None, Query(max_length=64)] = None,
    ward_code: Annotated[str | None, Query(max_length=8)] = None,
    procedure_code: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    """The dossier dashboard: the monitor, by agency and by ward."""
    if not principal.has("services:read"):
        raise Problem(403, "Không có quyền 'services:read'.", code="forbidden")
    start, end = period(start, end)
    agency_id, ward_code = remit(principal, agency_id or None, ward_code or None)
    filters: dict[str, Any] = {"agency_id": agency_id, "procedure_code": procedure_code or None, "ward_code": ward_code}
    m = dossier_monitor(session, start, end, **filters)
    by_agency = monitor_breakdown(session, start, end, "agency", **filters)
    by_ward = monitor_breakdown(session, start, end, "ward", **filters)
    return render_page(
        request,
        "services/dashboard.html",
        principal=principal,
        m=m,
        by_agency=by_agency,
        by_ward=by_ward,
        filters=filters,
        start=start,
        end=end,
        rows=_rows(m),
    )


def _rows(m: Monitor) -> list[tuple[str, Any]]:
    return [
        ("services.received", m.received),
        ("services.carried_over", m.carried_over),
        ("services.to_handle", m.to_handle),
        ("services.resolved", m.resolved.total),
        ("services.resolved_early", m.resolved.early),
        ("services.resolved_on_time", m.resolved.on_time),
        ("services.resolved_late", m.resolved.late),
        ("services.closed_other", m.closed_other),
        ("services.in_progress", m.in_progress.total),
        ("services.in_progress_late", m.in_progress.late),
        ("services.in_progress_nearly_late", m.in_progress.nearly_late),
        ("services.in_progress_not_due", m.in_progress.not_due),
    ]
