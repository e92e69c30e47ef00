"""HTTP routes of the KPI module: the KPI list and details, imports, recompute, reports, pages."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from ioc.core import audit
from ioc.core.auth import Agency, InputModel, OptionalPrincipal, Principal, Requires
from ioc.core.db import DbSession
from ioc.core.pages import render_page
from ioc.core.problems import Problem
from ioc.core.tabular import template_csv, template_xlsx

from . import imports as indicator_imports
from .compute import Resolver, compute, ngsi_entity, refresh, rows_url, series, summarize
from .definitions import KpiDefinition, load_definitions, load_indicators
from .models import IndicatorImport, KpiValue, SocioEconomicReport
from .periods import Period, parse_period, period_of, today
from .reports import KINDS, generate

router = APIRouter(prefix="/api/v1", tags=["kpi"])
pages = APIRouter(include_in_schema=False)

Importer = Annotated[Principal, Depends(Requires("kpi:import"))]
Admin = Annotated[Principal, Depends(Requires("kpi:admin"))]
Reader = Annotated[Principal, Depends(Requires("kpi:read"))]
MAX_UPLOAD = 10_000_000
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def resolver(request: Request) -> Resolver:
    """Measures as the modules registered them in this app (the kpi module imports none of them)."""
    return Resolver(request.app.state.registry.measures)


def visible(principal: Principal | None) -> list[KpiDefinition]:
    """Public KPIs for everyone; all of them for staff who may read KPIs."""
    everything = list(load_definitions().values())
    if principal is not None and principal.has("kpi:read"):
        return everything
    return [k for k in everything if k.public]


def definition(kpi_id: str, principal: Principal | None) -> KpiDefinition:
    kpi = load_definitions().get(kpi_id)
    if kpi is None:
        raise Problem(404, f"Không có chỉ tiêu '{kpi_id}' (no such KPI).", code="no-such-kpi")
    if not kpi.public and (principal is None or not principal.has("kpi:read")):
        if principal is None:
            raise Problem(
                401,
                "Chỉ tiêu nội bộ: cần đăng nhập (internal KPI: log in).",
                code="unauthorized",
                headers={"WWW-Authenticate": "Bearer"},
            )
        raise Problem(403, "Không có quyền 'kpi:read'.", code="forbidden")
    return kpi


def describe(kpi: KpiDefinition) -> dict[str, Any]:
    return {
        "id": kpi.id,
        "number": kpi.number,
        "area": kpi.area,
        "name_vi": kpi.name_vi,
        "name_en": kpi.name_en,
        "target": kpi.target,
        "comparison": kpi.comparison,
        "unit": kpi.unit,
        "direction": kpi.direction,
        "period_kind": kpi.period,
        "public": kpi.public,
        "owner": kpi.owner,
        "reference": kpi.reference,
        "formula": kpi.formula,
    }


def overview(session: Session, res: Resolver, kpi: KpiDefinition) -> dict[str, Any]:
    points = series(session, res, kpi)
    out = describe(kpi) | summarize(kpi, points)
    out["sparkline"] = [{"period": p["period"], "value": p["value"]} for p in points]
    return out


@router.get("/kpis")
def list_kpis(request: Request, session: DbSession, principal: OptionalPrincipal) -> list[dict[str, Any]]:
    """Every KPI the caller may see: target, latest value, period, status, trend and sparkline."""
    res = resolver(request)
    return [overview(session, res, kpi) for kpi in visible(principal)]


@router.get("/kpis/indicators")
def list_indicators() -> list[dict[str, Any]]:
    """The indicators whose values are imported (public catalogue)."""
    return [
        {
            "measure": i.name,
            "name_vi": i.name_vi,
            "name_en": i.name_en,
            "unit": i.unit,
            "aggregation": i.aggregation,
            "additive": i.additive,
        }
        for i in load_indicators().values()
    ]


@router.get("/kpis/templates/{name}")
def indicator_template(name: str) -> Response:
    """The import template: ``indicators.csv`` or ``indicators.xlsx``."""
    if name == "indicators.csv":
        return Response(
            template_csv(indicator_imports.COLUMNS),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="mau-chi-tieu.csv"'},
        )
    if name == "indicators.xlsx":
        body = template_xlsx(indicator_imports.COLUMNS, indicator_imports.HELP, "indicators")
        return Response(
            body, media_type=XLSX, headers={"Content-Disposition": 'attachment; filename="mau-chi-tieu.xlsx"'}
        )
    raise Problem(404, f"Không có mẫu '{name}' (no such template).")


class ImportAnswer(BaseModel):
    rows: int
    inserted: int
    updated: int
    unchanged: int
    import_id: int | None
    measures: list[str]
    kpis_refreshed: list[str]


def _after_import(session: Session, request: Request, outcome: dict[str, Any]) -> ImportAnswer:
    touched = set(outcome["measures"])
    kpis = [k for k in load_definitions().values() if touched & set(k.measures)]
    if kpis:
        refresh(session, resolver(request), kpis, force=True)
    return ImportAnswer(**outcome, kpis_refreshed=[k.id for k in kpis])


@router.post("/kpis/imports", response_model=ImportAnswer)
async def import_indicators(
    request: Request, session: DbSession, principal: Importer, file: Annotated[UploadFile, File()]
) -> ImportAnswer:
    """Import indicator values from CSV or XLSX: 422 with every bad line (nothing written); idempotent."""
    content = await file.read(MAX_UPLOAD + 1)
    if len(content) > MAX_UPLOAD:
        raise Problem(413, "Tệp quá lớn (file too large).", code="payload-too-large")
    outcome = indicator_imports.import_file(session, principal, file.filename or "", content)
    return _after_import(session, request, outcome)


class IndicatorPush(InputModel):
    values: list[dict[str, Any]] = Field(min_length=1, max_length=5000)


@router.post("/kpis/indicator-values", response_model=ImportAnswer)
def push_indicators(request: Request, body: IndicatorPush, session: DbSession, principal: Importer) -> ImportAnswer:
    """Push indicator values (an integrating system with an API key of scope ``kpi:import``)."""
    rows = [(i + 1, dict(item.items())) for i, item in enumerate(body.values)]
    outcome = indicator_imports.apply(session, principal, rows, source="push")
    return _after_import(session, request, outcome)


@router.get("/kpis/imports")
def list_imports(
    session: DbSession, principal: Reader, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[dict[str, Any]]:
    rows = session.scalars(select(IndicatorImport).order_by(IndicatorImport.id.desc()).limit(limit))
    return [
        {
            "id": r.id,
            "source": r.source,
            "filename": r.filename,
            "sha256": r.sha256,
            "rows": r.rows,
            "inserted": r.inserted,
            "updated": r.updated,
            "unchanged": r.unchanged,
            "actor": r.actor,
            "at": r.at.isoformat(),
        }
        for r in rows
    ]


class RecomputeBody(InputModel):
    kpis: list[str] | None = None
    history: int = Field(default=12, ge=1, le=60)
    force: bool = True


@router.post("/kpis/recompute")
def recompute(request: Request, body: RecomputeBody, session: DbSession, principal: Admin) -> dict[str, Any]:
    """Recompute and store the KPI values of the last ``history`` periods (publishes ``kpi.updated``)."""
    definitions = load_definitions()
    unknown = [k for k in body.kpis or [] if k not in definitions]
    if unknown:
        raise Problem(422, f"Không có chỉ tiêu {unknown} (unknown KPI).", code="no-such-kpi")
    chosen = [definitions[k] for k in body.kpis] if body.kpis else list(definitions.values())
    changed = refresh(session, resolver(request), chosen, history=body.history, force=body.force)
    audit.record(
        session,
        principal,
        "kpi.recompute",
        "kpi",
        ",".join(k.id for k in chosen)[:128],
        after={"history": body.history, "changed": changed},
    )
    return {"kpis": [k.id for k in chosen], "changed": changed}


@router.get("/kpis/panel", response_class=HTMLResponse, include_in_schema=False)
def panel(request: Request, session: DbSession, principal: OptionalPrincipal) -> HTMLResponse:
    """Dashboard panel: the 13 targets' status at a glance."""
    res = resolver(request)
    items = [overview(session, res, k) for k in visible(principal) if k.number]
    return render_page(request, "kpi/panel.html", principal=principal, items=items)


def wards(session: Session) -> list[tuple[str, str]]:
    return [
        (a.ward_code or "", a.name)
        for a in session.scalars(select(Agency).where(Agency.ward_code.is_not(None)).order_by(Agency.name))
    ]


def details(session: Session, res: Resolver, kpi: KpiDefinition) -> dict[str, Any]:
    points = series(session, res, kpi)
    out = describe(kpi) | summarize(kpi, points)
    out["description_vi"] = kpi.description_vi
    out["series"] = points
    latest = next((p for p in reversed(points) if p["value"] is not None), points[-1] if points else None)
    out["lineage"] = latest["lineage"] if latest else None
    current = period_of(today(), kpi.period)
    breakdown = []
    for code, name in wards(session):
        c = compute(session, res, kpi, current, code)
        breakdown.append(
            {"ward_code": code, "name": name, "value": c.value, "lineage": c.lineage(rows_url(kpi, current, code))}
        )
    out["wards"] = breakdown
    return out


@router.get("/kpis/{kpi_id}")
def get_kpi(kpi_id: str, request: Request, session: DbSession, principal: OptionalPrincipal) -> dict[str, Any]:
    """One KPI with its series (each point with its lineage), the latest lineage and the ward breakdown."""
    kpi = definition(kpi_id, principal)
    return details(session, resolver(request), kpi)


@router.get("/kpis/{kpi_id}/entity")
def get_entity(kpi_id: str, session: DbSession, principal: OptionalPrincipal) -> Response:
    """The latest stored value as an NGSI-LD KeyPerformanceIndicator entity (normalized, JSON-LD)."""
    kpi = definition(kpi_id, principal)
    row = session.scalar(
        select(KpiValue)
        .where(KpiValue.kpi_id == kpi.id, KpiValue.ward_code == "", KpiValue.value.is_not(None))
        .order_by(KpiValue.period_start.desc())
        .limit(1)
    )
    if row is None:
        raise Problem(404, "Chỉ tiêu chưa có giá trị lưu (no stored value yet).", code="no-value")
    return Response(json.dumps(ngsi_entity(kpi, row), ensure_ascii=False), media_type="application/ld+json")


# --------------------------------------------------------------------------- reports


class ReportCreate(InputModel):
    kind: Literal["monthly", "quarterly"]
    period: str = Field(min_length=4, max_length=10)


def _report_meta(r: SocioEconomicReport) -> dict[str, Any]:
    return {
        "id": r.id,
        "kind": r.kind,
        "period": r.label,
        "start": r.period_start.isoformat(),
        "end": r.period_end.isoformat(),
        "trigger": r.trigger,
        "created_by": r.created_by,
        "created_at": r.created_at.isoformat(),
        "xlsx_url": f"/api/v1/kpi-reports/{r.id}/xlsx",
        "pdf_url": f"/api/v1/kpi-reports/{r.id}/pdf",
        "xlsx_bytes": len(r.xlsx),
        "pdf_bytes": len(r.pdf),
    }


@router.get("/kpi-reports")
def list_reports(
    session: DbSession, principal: Reader, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[dict[str, Any]]:
    """Every report kept (newest first): scheduled and on demand."""
    stmt = select(SocioEconomicReport).order_by(SocioEconomicReport.id.desc()).limit(limit)
    return [_report_meta(r) for r in session.scalars(stmt)]


@router.post("/kpi-reports", status_code=201)
def create_report(request: Request, body: ReportCreate, session: DbSession, principal: Admin) -> dict[str, Any]:
    """Generate a monthly (``2026-06``) or quarterly (``2026-Q2``) report now."""
    try:
        period: Period = parse_period(body.period)
    except ValueError as exc:
        raise Problem(422, str(exc), code="bad-period") from exc
    if period.kind != KINDS[body.kind]:
        raise Problem(
            422, f"Kỳ '{body.period}' không phải {body.kind} (period does not fit the kind).", code="bad-period"
        )
    if period.start > today():
        raise Problem(422, "Kỳ báo cáo chưa bắt đầu (period in the future).", code="bad-period")
    report = generate(session, resolver(request), body.kind, period, principal=principal)
    assert report is not None
    session.flush()
    return _report_meta(report)


def _report(session: Session, report_id: int) -> SocioEconomicReport:
    row = session.get(SocioEconomicReport, report_id)
    if row is None:
        raise Problem(404, f"Không có báo cáo {report_id} (no such report).")
    return row


@router.get("/kpi-reports/{report_id}")
def get_report(report_id: int, session: DbSession, principal: Reader) -> dict[str, Any]:
    row = _report(session, report_id)
    return _report_meta(row) | {"summary": row.summary}


@router.get("/kpi-reports/{report_id}/{fmt}")
def download_report(report_id: int, fmt: str, session: DbSession, principal: Reader) -> Response:
    row = _report(session, report_id)
    if fmt not in ("xlsx", "pdf"):
        raise Problem(404, f"Không có định dạng '{fmt}' (xlsx | pdf).")
    name = f"bao-cao-ktxh-{row.label}-{row.id}.{fmt}"
    body, media = (row.xlsx, XLSX) if fmt == "xlsx" else (row.pdf, "application/pdf")
    return Response(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})


# --------------------------------------------------------------------------- pages


def sparkline(values: list[float | None], width: int = 120, height: int = 32) -> str:
    """SVG polyline points of a series (gaps skipped), scaled into ``width`` × ``height``."""
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    span = (high - low) or 1.0
    step = width / max(len(values) - 1, 1)
    return " ".join(
        f"{i * step:.1f},{height - 2 - (v - low) / span * (height - 4):.1f}"
        for i, v in enumerate(values)
        if v is not None
    )


@pages.get("/kpi", response_class=HTMLResponse)
def wall(request: Request, session: DbSession, principal: OptionalPrincipal) -> HTMLResponse:
    """The KPI wall: cards grouped by area, target against actual, sparkline and status."""
    res = resolver(request)
    items = [overview(session, res, k) for k in visible(principal)]
    for item in items:
        item["spark"] = sparkline([p["value"] for p in item["sparkline"]])
    areas: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        areas.setdefault(item["area"], []).append(item)
    return render_page(request, "kpi/wall.html", principal=principal, areas=areas, signed_in=principal is not None)


@pages.get("/kpi/{kpi_id}", response_class=HTMLResponse)
def detail_page(kpi_id: str, request: Request, session: DbSession, principal: OptionalPrincipal) -> HTMLResponse:
    """Drill-down: series, lineage with the source rows, ward breakdown."""
    kpi = definition(kpi_id, principal)
    data = details(session, resolver(request), kpi)
    data["spark"] = sparkline([p["value"] for p in data["series"]], 480, 80)
    return render_page(request, "kpi/detail.html", principal=principal, k=data)
