"""The reports JSON API (``/api/v1/reports``): citizens' submissions and tracking, officers' queue
and workflow, operators' routing and overview. Errors are RFC 7807 problems."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import escape
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ioc.core.admin_units import VN_TZ
from ioc.core.auth import OptionalPrincipal, Principal, Requires, optional_principal
from ioc.core.db import DbSession
from ioc.core.i18n import negotiate_language
from ioc.core.problems import Problem

from . import catalog, kpis, service
from .models import Report, ReportPhoto
from .schemas import (
    AbuseIn,
    AssignIn,
    CommentIn,
    CreatedReport,
    Duplicate,
    RatingIn,
    ReopenIn,
    ReportCreate,
    ReportDetail,
    ReportPublic,
    ReportStaff,
    ReportTracked,
    RouteIn,
    TransitionIn,
)
from .service import QueueFilter, Runtime
from .workflow import Status

PREFIX = "/api/v1/reports"
_TRUE = {"1", "true", "on", "yes"}

Reader = Annotated[Principal, Depends(Requires("reports:read"))]
Handler = Annotated[Principal, Depends(Requires("reports:handle"))]
Router = Annotated[Principal, Depends(Requires("reports:route"))]


def validation_problem(exc: ValidationError) -> Problem:
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in exc.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid"}
    where = ".".join(first["loc"]) or "body"
    return Problem(422, f"Dữ liệu không hợp lệ tại '{where}': {first['msg']}", code="validation-error", errors=errors)


def parse_create(fields: dict[str, Any]) -> ReportCreate:
    """A :class:`ReportCreate` from JSON or form fields (strings); 422 with the reason otherwise."""
    data = dict(fields)
    for key in ("anonymous", "public"):
        if isinstance(data.get(key), str):
            data[key] = data[key].strip().lower() in _TRUE
    for key in ("lat", "lon"):
        if isinstance(data.get(key), str):
            data[key] = data[key].strip() or None
    try:
        return ReportCreate.model_validate(data)
    except ValidationError as exc:
        raise validation_problem(exc) from exc


async def read_submission(request: Request, max_photos: int) -> tuple[dict[str, Any], list[bytes]]:
    """Fields and photo bytes of a JSON or multipart/urlencoded submission."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        try:
            body = await request.json()
        except ValueError as exc:
            raise Problem(400, "JSON không hợp lệ (malformed JSON).", code="bad-json") from exc
        if not isinstance(body, dict):
            raise Problem(422, "Cần một đối tượng JSON (a JSON object is expected).", code="validation-error")
        return body, []
    if ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form(max_files=max_photos + 1, max_fields=100)
        fields: dict[str, Any] = {}
        photos: list[bytes] = []
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key in ("photos", "photo") and value.filename:
                    photos.append(await value.read())
                continue
            if key in ("csrf_token",):
                continue
            fields[key] = value
        return fields, photos
    raise Problem(
        415, "Gửi JSON hoặc multipart/form-data (send JSON or multipart/form-data).", code="unsupported-media-type"
    )


def carries_credentials(request: Request) -> bool:
    """Whether the request holds anything :func:`~ioc.core.auth.optional_principal` would read: a bearer
    token or API key, or a browser session. Without any, the caller is anonymous (no database needed)."""
    headers = request.headers
    return "authorization" in headers or "x-api-key" in headers or bool(request.scope.get("session"))


def client_of(request: Request) -> str:
    return request.client.host if request.client else "?"


def _vn_range(start: date | None, end: date | None) -> tuple[datetime, datetime]:
    today = datetime.now(VN_TZ).date()
    end = end or today
    start = start or (end - timedelta(days=89))
    if start > end:
        raise Problem(422, "Ngày bắt đầu sau ngày kết thúc (start after end).", code="bad-period")
    return datetime.combine(start, time(0), VN_TZ), datetime.combine(end + timedelta(days=1), time(0), VN_TZ)


def build_router(rt: Runtime) -> APIRouter:
    """The module's JSON routes, bound to this app's runtime."""
    router = APIRouter(tags=["reports"])

    def principal_in_thread(request: Request) -> Principal | None:
        with rt.db.session() as session:
            return optional_principal(request, session)

    def create_in_thread(
        data: ReportCreate, photos: list[bytes], principal: Principal | None, client: str, source: str
    ) -> CreatedReport:
        checked = service.check_report(rt, data, photos=photos, principal=principal, client=client, source=source)
        # Submissions arriving together are written in one transaction (group commit).
        return rt.intake.submit(checked)

    # ------------------------------------------------------------------ public

    @router.get(PREFIX + "/categories")
    def categories(request: Request) -> list[dict[str, Any]]:
        """Report categories with the expected response time of each (SLA)."""
        lang = negotiate_language(request)
        tiers = catalog.sla_tiers()
        return [
            {
                "code": c.code,
                "name": c.name_en if lang == "en" else c.name,
                "description": c.description_en if lang == "en" else c.description,
                "group": c.group,
                "private": c.private,
                "tier": c.tier,
                "expected_response": tiers[c.tier].describe(lang),
                "keywords": list(c.keywords),
            }
            for c in catalog.categories().values()
        ]

    @router.post(PREFIX, status_code=201, response_model=CreatedReport)
    async def create(request: Request) -> CreatedReport:
        """Submit a report: JSON, or multipart/form-data with up to 5 ``photos``. Anonymous allowed;
        a bearer token, API key or browser session identifies the caller (``OptionalPrincipal``)."""
        # The caller as OptionalPrincipal gives it, first (bad credentials answer 401 before the body
        # is read); but an anonymous citizen costs no database session and no extra thread hop.
        principal = await run_in_threadpool(principal_in_thread, request) if carries_credentials(request) else None
        fields, photos = await read_submission(request, rt.settings.max_photos)
        data = parse_create(fields)
        source = "staff" if principal is not None and principal.kind == "user" else "app" if principal else "web"
        return await run_in_threadpool(create_in_thread, data, photos, principal, client_of(request), source)

    @router.get(PREFIX + "/nearby")
    def nearby(
        session: DbSession,
        category: Annotated[str, Query(max_length=64)],
        lat: Annotated[float, Query(ge=-90, le=90)],
        lon: Annotated[float, Query(ge=-180, le=180)],
    ) -> list[Duplicate]:
        """Open public reports of the category within the duplicate radius (shown while reporting)."""
        service.category_or_422(category)
        return service.nearby(session, category, lat, lon, rt.settings.duplicate_radius_m)

    @router.get(PREFIX + "/public.geojson")
    def public_geojson(
        request: Request,
        session: DbSession,
        category: Annotated[str | None, Query(max_length=64)] = None,
        state: Annotated[str | None, Query(pattern="^(open|closed)$")] = None,
        limit: Annotated[int, Query(ge=1, le=2000)] = 500,
    ) -> Response:
        """Public reports as GeoJSON for the public map (no identity, no tracking code)."""
        lang = negotiate_language(request)
        stmt = select(Report).where(service.publicly_visible(), Report.lat.is_not(None))
        if category:
            stmt = stmt.where(Report.category == category)
        if state == "open":
            stmt = stmt.where(Report.status.in_(service.OPEN_VALUES))
        elif state == "closed":
            stmt = stmt.where(Report.status.in_(service.CLOSED_VALUES))
        rows = list(session.scalars(stmt.order_by(Report.created_at.desc()).limit(limit)))
        features = []
        for r in service.to_public(session, rows, lang):
            props = r.model_dump(mode="json", exclude={"lat", "lon"})
            # The map layer contract (ioc.core.registry.MapLayer): label, colour, status, ward, time.
            colour = "#2a7d3f" if r.open311_status == "closed" else "#c0392b" if r.status == "for_triage" else "#b26a00"
            props |= {
                "label": f"#{r.id} · {r.category_name}",
                "colour": colour,
                "ward": r.ward_code,
                "time": props["updated_at"],
            }
            features.append(
                {
                    "type": "Feature",
                    "id": r.id,
                    "geometry": {"type": "Point", "coordinates": [r.lon, r.lat]},
                    "properties": props,
                }
            )
        import json

        body = json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False)
        return Response(body, media_type="application/geo+json")

    @router.get(PREFIX + "/public/{report_id:int}")
    def public_one(request: Request, session: DbSession, report_id: int) -> ReportPublic:
        report = service.get_public(session, report_id)
        return service.to_public(session, [report], negotiate_language(request))[0]

    @router.get(PREFIX + "/track/{code}")
    def track(request: Request, session: DbSession, code: str) -> ReportTracked:
        """The reporter's view by tracking code (also of a private report); public updates only."""
        return service.tracked(session, service.get_by_code(session, code), negotiate_language(request))

    @router.post(PREFIX + "/track/{code}/rating")
    def track_rate(request: Request, session: DbSession, code: str, body: RatingIn) -> ReportTracked:
        report = service.rate(session, service.get_by_code(session, code), body.rating, body.comment)
        result = service.tracked(session, report, negotiate_language(request))
        session.commit()
        return result

    @router.post(PREFIX + "/track/{code}/reopen")
    def track_reopen(request: Request, session: DbSession, code: str, body: ReopenIn) -> ReportTracked:
        report = service.reopen_after_close(session, rt, service.get_by_code(session, code), None, body.reason)
        result = service.tracked(session, report, negotiate_language(request))
        session.commit()
        return result

    @router.get(PREFIX + "/photos/{photo_id:int}")
    def photo(session: DbSession, principal: OptionalPrincipal, photo_id: int) -> Response:
        """A photo (metadata stripped) of a public report, or of one in the caller's remit."""
        row = session.get(ReportPhoto, photo_id)
        report = session.get(Report, row.report_id) if row else None
        visible = report is not None and (
            (report.public and not report.abuse)
            or (
                principal is not None
                and principal.has("reports:read")
                and principal.can_access(ward_code=report.ward_code, agency_id=report.agency_id)
            )
        )
        if row is None or not visible:
            raise Problem(404, "Không tìm thấy ảnh (photo not found).", code="photo-not-found")
        return Response(row.data, media_type=row.content_type, headers={"Cache-Control": "private, max-age=3600"})

    # ------------------------------------------------------------------ staff

    @router.get(PREFIX)
    def staff_list(
        request: Request,
        session: DbSession,
        principal: Reader,
        status: Annotated[list[Status] | None, Query()] = None,
        ward_code: Annotated[str | None, Query(pattern=r"^\d{5}$")] = None,
        agency_id: Annotated[str | None, Query(max_length=64)] = None,
        category: Annotated[str | None, Query(max_length=64)] = None,
        sla: Annotated[str | None, Query(pattern="^(overdue|open|closed)$")] = None,
        q: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> dict[str, Any]:
        """The work queue: reports in the caller's remit, newest first, with SLA state."""
        service.maybe_escalate(rt)
        flt = QueueFilter(
            status=[s.value for s in status] if status else None,
            ward_code=ward_code,
            agency_id=agency_id,
            category=category,
            sla=sla,
            q=q,
        )
        rows, total = service.queue(session, principal, flt, limit=limit, offset=offset)
        items: list[ReportStaff] = service.to_staff(session, rows, negotiate_language(request))
        return {
            "items": [i.model_dump(mode="json") for i in items],
            "total": min(total, service.COUNT_CAP),
            "total_capped": total > service.COUNT_CAP,
            "limit": limit,
            "offset": offset,
        }

    @router.get(PREFIX + "/overview")
    def overview(session: DbSession, principal: Reader) -> dict[str, Any]:
        return service.overview(session, principal)

    @router.get(PREFIX + "/indicators")
    def indicators(
        session: DbSession,
        principal: Reader,
        by: Annotated[str, Query(pattern="^(agency|ward|category)$")] = "agency",
        start: date | None = None,
        end: date | None = None,
    ) -> dict[str, Any]:
        """QĐ 766 indicators per agency, ward or category (units with ≥ 10 reports are ranked)."""
        lo, hi = _vn_range(start, end)
        return kpis.breakdown(session, rt, lo, hi, by)

    @router.get(PREFIX + "/panel", response_class=HTMLResponse)
    def panel(request: Request, session: DbSession, principal: Reader) -> HTMLResponse:
        """Dashboard fragment: open, overdue, by ward."""
        data = service.overview(session, principal)
        en = negotiate_language(request) == "en"
        open_word, overdue_word = ("open", "overdue") if en else ("đang mở", "quá hạn")
        rows = "".join(
            f"<li><span>{escape(code)}</span> <strong>{count}</strong></li>"
            for code, count in data["open_by_ward"].items()
        )
        html = (
            '<div class="reports-panel">'
            f'<p><strong data-kpi="open">{data["open"]}</strong> {open_word} · '
            f'<strong class="sla-overdue" data-kpi="overdue">{data["overdue"]}</strong> {overdue_word}</p>'
            f'<ul class="reports-panel__wards">{rows}</ul>'
            f'<p><a href="/workspace">{"Work queue" if en else "Hàng đợi xử lý"}</a></p></div>'
        )
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @router.post(PREFIX + "/escalations/run")
    def run_escalations(session: DbSession, principal: Router) -> dict[str, int]:
        """Escalate every overdue report not yet escalated (also runs by itself once a minute)."""
        count = service.escalate_overdue(session)
        session.commit()
        return {"escalated": count}

    @router.get(PREFIX + "/{report_id:int}")
    def staff_detail(request: Request, session: DbSession, principal: Reader, report_id: int) -> ReportDetail:
        report = service.get_for_staff(session, principal, report_id)
        return service.detail(session, rt, report, principal, negotiate_language(request))

    @router.get(PREFIX + "/{report_id:int}/reporter")
    def reporter(session: DbSession, principal: Reader, report_id: int) -> dict[str, str | None]:
        """The reporter's identity, unmasked: allowed roles only, audited."""
        report = service.get_for_staff(session, principal, report_id)
        return service.reveal_reporter(session, rt, report, principal)

    @router.get(PREFIX + "/{report_id:int}/duplicates")
    def staff_duplicates(session: DbSession, principal: Reader, report_id: int) -> list[Duplicate]:
        report = service.get_for_staff(session, principal, report_id)
        if report.lat is None or report.lon is None:
            return []
        return service.nearby(
            session, report.category, report.lat, report.lon, rt.settings.duplicate_radius_m,
            exclude=report.id, public_only=False,
        )  # fmt: skip

    def _act(
        session: Session, principal: Principal, report_id: int, fn: Callable[[Report], object], request: Request
    ) -> ReportDetail:
        report = service.get_for_staff(session, principal, report_id)
        fn(report)
        result = service.detail(session, rt, report, principal, negotiate_language(request))
        # Committed before answering: a client that reads right after must see its write.
        session.commit()
        return result

    @router.post(PREFIX + "/{report_id:int}/transition")
    def do_transition(
        request: Request, session: DbSession, principal: Handler, report_id: int, body: TransitionIn
    ) -> ReportDetail:
        """Workflow: accept, start, schedule, resolve, reject, not ours, duplicate, reopen."""

        def apply(report: Report) -> None:
            if body.status == Status.REOPENED:
                service.reopen_after_close(session, rt, report, principal, body.note or "Mở lại")
            else:
                service.transition(session, report, body, principal)

        return _act(session, principal, report_id, apply, request)

    @router.post(PREFIX + "/{report_id:int}/comments")
    def do_comment(
        request: Request, session: DbSession, principal: Handler, report_id: int, body: CommentIn
    ) -> ReportDetail:
        return _act(
            session,
            principal,
            report_id,
            lambda r: service.comment(session, r, principal, body.text, body.public),
            request,
        )

    @router.post(PREFIX + "/{report_id:int}/assign")
    def do_assign(
        request: Request, session: DbSession, principal: Handler, report_id: int, body: AssignIn
    ) -> ReportDetail:
        return _act(
            session, principal, report_id, lambda r: service.assign(session, r, principal, body.assignee), request
        )

    @router.post(PREFIX + "/{report_id:int}/abuse")
    def do_abuse(
        request: Request, session: DbSession, principal: Handler, report_id: int, body: AbuseIn
    ) -> ReportDetail:
        return _act(
            session,
            principal,
            report_id,
            lambda r: service.flag_abuse(session, r, principal, body.abuse, body.note),
            request,
        )

    @router.post(PREFIX + "/{report_id:int}/route")
    def do_route(
        request: Request, session: DbSession, principal: Router, report_id: int, body: RouteIn
    ) -> ReportDetail:
        """Re-route to another agency (operators)."""
        return _act(
            session,
            principal,
            report_id,
            lambda r: service.reroute(session, r, principal, body.agency_id, body.note),
            request,
        )

    return router
