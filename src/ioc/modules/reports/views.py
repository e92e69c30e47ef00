"""Server-rendered pages: report a problem, follow a report, the public map (Vinh Smart), the
officers' work queue and the operators' overview. No inline JavaScript: page data travels in
``<script type="application/json">`` blocks read by the module's static scripts."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from ioc.core.admin_units import VN_TZ
from ioc.core.auth import Agency, Principal, check_csrf, web_principal
from ioc.core.db import DbSession
from ioc.core.i18n import negotiate_language
from ioc.core.pages import render_page
from ioc.core.problems import Problem

from . import api, catalog, kpis, service
from .schemas import CreatedReport, ReopenIn
from .service import QueueFilter, Runtime
from .workflow import TRANSITIONS, Status, label

ASSETS = "/assets/reports"
WARD_NAMES = {
    "16681": "Thành Vinh",
    "16690": "Trường Vinh",
    "16702": "Vinh Phú",
    "16708": "Vinh Lộc",
    "16732": "Cửa Lò",
    "17920": "Vinh Hưng",
}


def _map_config(request: Request) -> dict[str, Any]:
    settings = request.app.state.settings
    return {
        "tileUrl": settings.map.tile_url,
        "tileAttribution": settings.map.tile_attribution,
        "centerLat": settings.map.center_lat,
        "centerLon": settings.map.center_lon,
        "zoom": settings.map.zoom,
        "wardsUrl": "/api/v1/admin-units/wards.geojson",
    }


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)


def _staff(request: Request, session: Any) -> Principal | None:
    principal = web_principal(request, session)
    if principal is not None and not principal.has("reports:read"):
        raise Problem(403, "Không có quyền xem phản ánh (permission reports:read required).", code="forbidden")
    return principal


def _local(dt: Any) -> str:
    return dt.astimezone(VN_TZ).strftime("%H:%M %d/%m/%Y") if dt is not None else "—"


def build_router(rt: Runtime) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def categories(lang: str) -> list[dict[str, str]]:
        tiers = catalog.sla_tiers()
        return [
            {
                "code": c.code,
                "name": c.name_en if lang == "en" else c.name,
                "expected": tiers[c.tier].describe(lang),
                "private": "1" if c.private else "",
            }
            for c in catalog.categories().values()
        ]

    def report_page(
        request: Request, principal: Principal | None, *, status_code: int = 200, **ctx: Any
    ) -> HTMLResponse:
        lang = negotiate_language(request)
        config = {"map": _map_config(request), "nearbyUrl": api.PREFIX + "/nearby", "maxPhotos": rt.settings.max_photos}
        response = render_page(
            request,
            "reports/report.html",
            principal=principal,
            categories=categories(lang),
            page_config=config,
            assets=ASSETS,
            form=ctx.pop("form", {}),
            **ctx,
        )
        response.status_code = status_code
        return response

    @router.get("/bao-cao", response_class=HTMLResponse)
    def report_form(request: Request, session: DbSession) -> HTMLResponse:
        """Vinh Smart: report a problem (map pick or GPS, photos, optional contact)."""
        return report_page(request, web_principal(request, session))

    def _create(fields: dict[str, Any], photos: list[bytes], client: str) -> CreatedReport:
        data = api.parse_create(fields)
        with rt.db.session() as session:
            _, created = service.create_report(session, rt, data, photos=photos, client=client, source="web")
            return created

    @router.post("/bao-cao", response_class=HTMLResponse)
    async def report_submit(request: Request) -> HTMLResponse:
        fields, photos = await api.read_submission(request, rt.settings.max_photos)
        form = await request.form()
        token = form.get("csrf_token")

        def principal_now() -> Principal | None:
            with rt.db.session() as session:
                return web_principal(request, session)

        principal = await run_in_threadpool(principal_now)
        try:
            check_csrf(request, token if isinstance(token, str) else None)
            created = await run_in_threadpool(_create, fields, photos, api.client_of(request))
        except Problem as exc:
            return report_page(request, principal, status_code=exc.status, error=exc.detail, form=fields)
        return render_page(
            request,
            "reports/sent.html",
            principal=principal,
            created=created,
            expected=_local(created.expected_at),
            assets=ASSETS,
        )

    @router.get("/theo-doi", response_class=HTMLResponse)
    def follow(request: Request, session: DbSession, code: Annotated[str, Query(max_length=32)] = "") -> HTMLResponse:
        """Follow my report by its tracking code: status, public replies, rating, reopen."""
        principal = web_principal(request, session)
        lang = negotiate_language(request)
        report, error = None, None
        if code.strip():
            try:
                report = service.tracked(session, service.get_by_code(session, code), lang)
            except Problem as exc:
                error = exc.detail
        response = render_page(
            request,
            "reports/follow.html",
            principal=principal,
            code=code,
            report=report,
            error=error,
            local=_local,
            assets=ASSETS,
        )
        if error:
            response.status_code = 404
        return response

    def _back(code: str) -> RedirectResponse:
        return RedirectResponse("/theo-doi?" + urlencode({"code": code}), status_code=303)

    @router.post("/theo-doi/danh-gia")
    def follow_rate(
        request: Request,
        session: DbSession,
        code: Annotated[str, Form(max_length=32)],
        rating: Annotated[int, Form(ge=1, le=5)],
        csrf_token: Annotated[str | None, Form()] = None,
    ) -> Response:
        check_csrf(request, csrf_token)
        service.rate(session, service.get_by_code(session, code), rating, None)
        session.commit()
        return _back(code)

    @router.post("/theo-doi/mo-lai")
    def follow_reopen(
        request: Request,
        session: DbSession,
        code: Annotated[str, Form(max_length=32)],
        reason: Annotated[str, Form(max_length=2000)],
        csrf_token: Annotated[str | None, Form()] = None,
    ) -> Response:
        check_csrf(request, csrf_token)
        body = ReopenIn(reason=reason)
        service.reopen_after_close(session, rt, service.get_by_code(session, code), None, body.reason)
        session.commit()
        return _back(code)

    @router.get("/ban-do-phan-anh", response_class=HTMLResponse)
    def public_map(request: Request, session: DbSession) -> HTMLResponse:
        """The public map of reports."""
        config = {"map": _map_config(request), "reportsUrl": api.PREFIX + "/public.geojson"}
        return render_page(
            request, "reports/map.html", principal=web_principal(request, session), page_config=config, assets=ASSETS
        )

    @router.get("/workspace", response_class=HTMLResponse, response_model=None)
    def workspace(
        request: Request,
        session: DbSession,
        sla: Annotated[str | None, Query(pattern="^(overdue|open|closed)$")] = "open",
        ward_code: Annotated[str | None, Query(pattern=r"^(\d{5})?$")] = None,
        category: Annotated[str | None, Query(max_length=64)] = None,
        q: Annotated[str | None, Query(max_length=200)] = None,
        page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    ) -> Response:
        """The officers' work queue: their agency's or ward's reports, SLA colours."""
        principal = _staff(request, session)
        if principal is None:
            return _login_redirect(request)
        service.maybe_escalate(rt)
        lang = negotiate_language(request)
        flt = QueueFilter(sla=sla, ward_code=ward_code or None, category=category or None, q=q or None)
        rows, total = service.queue(session, principal, flt, limit=50, offset=(page - 1) * 50)
        items = service.to_staff(session, rows, lang)
        return render_page(
            request,
            "reports/queue.html",
            principal=principal,
            items=items,
            total=total,
            page=page,
            filters={"sla": sla or "", "ward_code": ward_code or "", "category": category or "", "q": q or ""},
            wards=WARD_NAMES,
            categories=categories(lang),
            local=_local,
            assets=ASSETS,
        )

    @router.get("/workspace/tong-quan", response_class=HTMLResponse, response_model=None)
    def overview(request: Request, session: DbSession) -> Response:
        """The operators' city-wide overview."""
        principal = _staff(request, session)
        if principal is None:
            return _login_redirect(request)
        data = service.overview(session, principal)
        lo, hi = api._vn_range(None, None)
        indicators = kpis.breakdown(session, rt, lo, hi, "agency")
        names = dict(session.execute(select(Agency.id, Agency.name)).all())
        return render_page(
            request,
            "reports/overview.html",
            principal=principal,
            data=data,
            indicators=indicators,
            agencies=names,
            wards=WARD_NAMES,
            assets=ASSETS,
        )

    @router.get("/workspace/{report_id:int}", response_class=HTMLResponse, response_model=None)
    def workspace_detail(request: Request, session: DbSession, report_id: int) -> Response:
        """One report with its history and the workflow actions (audited view)."""
        principal = _staff(request, session)
        if principal is None:
            return _login_redirect(request)
        report = service.get_for_staff(session, principal, report_id)
        lang = negotiate_language(request)
        detail = service.detail(session, rt, report, principal, lang)
        session.commit()  # the audit row of this view
        targets = [
            (s.value, label(s, lang)) for s in sorted(TRANSITIONS[Status(report.status)], key=list(Status).index)
        ]
        agencies = list(session.execute(select(Agency.id, Agency.name).order_by(Agency.kind, Agency.name)))
        config = {
            "reportId": report.id,
            "api": f"{api.PREFIX}/{report.id}",
            "map": _map_config(request),
            "lat": report.lat,
            "lon": report.lon,
        }
        return render_page(
            request,
            "reports/detail.html",
            principal=principal,
            report=detail,
            targets=targets,
            agencies=agencies,
            can_handle=principal.has("reports:handle"),
            can_route=principal.has("reports:route"),
            can_reveal=rt.may_see_identity(principal),
            wards=WARD_NAMES,
            local=_local,
            page_config=config,
            assets=ASSETS,
        )

    return router
