"""Open311 GeoReport v2 at ``/open311/v2``, with FixMyStreet's ``servicerequestupdates`` extension.

Every resource answers in XML (``.xml``, required by the spec) and JSON (``.json``, the Spark
convention: the XML root becomes an array of objects). Errors are the spec's list of
``{code, description}`` under ``<errors>``, with HTTP 400 (bad request), 403 (missing or
invalid ``api_key``) or 404 (unknown resource, service_code or jurisdiction_id).

Only public reports are served; personal data (names, phones, e-mails, device and account
ids) is accepted on POST but never returned. Times are ISO 8601 with the +07:00 offset.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from lxml import etree
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from ioc.core.admin_units import VN_TZ
from ioc.core.auth import Agency, Principal, api_key_principal
from ioc.core.db import DbSession, utcnow
from ioc.core.problems import Problem

from . import catalog, privacy, service
from .api import client_of, parse_create
from .models import Report, ReportPhoto, ReportUpdate
from .schemas import TransitionIn
from .service import Runtime
from .workflow import FMS_STATUS, Status, is_open, open311_status

PREFIX = "/open311/v2"
SPEC_URL = "http://wiki.open311.org/GeoReport_v2"
SCOPE = "open311:write"
MAX_PAGE_SIZE = 1000
MAX_SPAN = timedelta(days=90)
XML_TYPE = "text/xml; charset=utf-8"
JSON_TYPE = "application/json; charset=utf-8"
_ITEM = {
    "services": "service",
    "service_requests": "request",
    "errors": "error",
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
    "service_requests_updates": "request_update",
    "service_request_updates": "request_update",
}


class Open311Error(Exception):
    """An error answered in the spec's format."""

    def __init__(self, status: int, description: str, code: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.code = code if code is not None else status


# --------------------------------------------------------------------------- rendering


def w3(dt: datetime | None) -> str | None:
    """ISO 8601 (W3C profile) with the Vietnamese offset: ``2026-01-05T10:00:00+07:00``."""
    return dt.astimezone(VN_TZ).isoformat(timespec="seconds") if dt is not None else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fill(parent: etree._Element, name: str, value: Any) -> None:
    el = etree.SubElement(parent, name)
    if isinstance(value, dict):
        for k, v in value.items():
            _fill(el, k, v)
    elif isinstance(value, list):
        item = _ITEM.get(name, "item")
        for v in value:
            _fill(el, item, v)
    else:
        text = _text(value)
        if text is not None:
            el.text = text


def to_xml(root: str, body: list[dict[str, Any]] | dict[str, Any]) -> bytes:
    el = etree.Element(root)
    if isinstance(body, list):
        for item in body:
            _fill(el, _ITEM[root], item)
    else:
        for k, v in body.items():
            _fill(el, k, v)
    body_bytes: bytes = etree.tostring(el, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + body_bytes


def respond(fmt: str, root: str, body: list[dict[str, Any]] | dict[str, Any], status: int = 200) -> Response:
    if fmt == "json":
        return Response(json.dumps(body, ensure_ascii=False), status_code=status, media_type=JSON_TYPE)
    return Response(to_xml(root, body), status_code=status, media_type=XML_TYPE)


def error_response(fmt: str, errors: Sequence[Open311Error]) -> Response:
    status = errors[0].status if errors else 400
    body = [{"code": e.code, "description": e.description} for e in errors]
    headers = {"Cache-Control": "no-store"}
    response = respond(fmt if fmt in ("xml", "json") else "xml", "errors", body, status)
    response.headers.update(headers)
    return response


def from_problem(problem: Problem) -> Open311Error:
    status = problem.status
    if status in (401, 403):
        status = 403
    elif status not in (404, 413, 429):
        status = 400
    return Open311Error(status, problem.detail)


# --------------------------------------------------------------------------- parsing


def parse_when(value: str, name: str, *, end: bool = False) -> datetime:
    """A W3C date-time (``Z`` or offset; without a zone: Vietnam time) or a date."""
    value = value.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime.combine(day + timedelta(days=1) if end else day, time(0), VN_TZ)
            return moment
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError as exc:
        raise Open311Error(
            400, f"{name} không đúng định dạng W3C, ví dụ 2026-01-01T00:00:00Z ({name}: bad date)."
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=VN_TZ)


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _int(value: str | None, name: str, default: int, lo: int, hi: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError as exc:
        raise Open311Error(400, f"{name} phải là số nguyên ({name} must be an integer).") from exc
    if not lo <= number <= hi:
        raise Open311Error(400, f"{name} phải trong khoảng {lo}–{hi} ({name} out of range).")
    return number


# --------------------------------------------------------------------------- views


def service_entry(cat: catalog.Category) -> dict[str, Any]:
    return {
        "service_code": cat.code,
        "service_name": cat.name,
        "description": cat.description,
        "metadata": False,
        "type": "realtime",
        "keywords": ", ".join(cat.keywords),
        "group": cat.group,
    }


def request_entry(report: Report, agencies: dict[str, str], media: str | None) -> dict[str, Any]:
    cat = catalog.categories().get(report.category)
    tier = catalog.sla_tiers().get(report.sla_tier)
    return {
        "service_request_id": str(report.id),
        "status": open311_status(report.status),
        "status_notes": privacy.redact(report.status_notes),
        "service_name": cat.name if cat else report.category,
        "service_code": report.category,
        "description": privacy.redact(report.description),
        "agency_responsible": agencies.get(report.agency_id, report.agency_id),
        "service_notice": tier.describe() if tier else None,
        "requested_datetime": w3(report.created_at),
        "updated_datetime": w3(
            report.closed_at if not is_open(report.status) and report.closed_at else report.updated_at
        ),
        "expected_datetime": w3(report.resolve_due) if is_open(report.status) else None,
        "address": privacy.redact(report.address) or None,
        "address_id": None,
        "zipcode": None,
        "lat": report.lat,
        "long": report.lon,
        "media_url": media,
    }


def build_router(rt: Runtime) -> APIRouter:
    """GeoReport v2 routes bound to this app's runtime."""
    router = APIRouter(prefix=PREFIX, tags=["open311"])

    def check_jurisdiction(request: Request, form: dict[str, str] | None = None) -> None:
        given = request.query_params.get("jurisdiction_id") or (form or {}).get("jurisdiction_id")
        if given and given != rt.settings.jurisdiction_id:
            raise Open311Error(
                404, f"jurisdiction_id '{given}' không tồn tại (not found); dùng '{rt.settings.jurisdiction_id}'."
            )

    def guarded(fmt: str, fn: Callable[[], Response]) -> Response:
        if fmt not in ("xml", "json"):
            return error_response("xml", [Open311Error(404, f"Định dạng '{fmt}' không hỗ trợ; dùng .xml hoặc .json.")])
        try:
            return fn()
        except Open311Error as exc:
            return error_response(fmt, [exc])
        except Problem as exc:
            return error_response(fmt, [from_problem(exc)])

    def agencies(session: Session) -> dict[str, str]:
        return dict(session.execute(select(Agency.id, Agency.name)).all())

    def media_urls(session: Session, request: Request, reports: Sequence[Report]) -> dict[int, str]:
        if not reports:
            return {}
        base = str(request.base_url).rstrip("/")
        out: dict[int, str] = {}
        rows = session.execute(
            select(ReportPhoto.report_id, ReportPhoto.id)
            .where(ReportPhoto.report_id.in_([r.id for r in reports]))
            .order_by(ReportPhoto.report_id, ReportPhoto.position)
        ).all()
        for report_id, photo_id in rows:
            out.setdefault(report_id, f"{base}/api/v1/reports/photos/{photo_id}")
        for r in reports:
            if r.id not in out and r.media_url:
                out[r.id] = r.media_url
        return out

    def entries(session: Session, request: Request, reports: Sequence[Report]) -> list[dict[str, Any]]:
        names, media = agencies(session), media_urls(session, request, reports)
        return [request_entry(r, names, media.get(r.id)) for r in reports]

    @router.get("/discovery.{fmt}")
    def discovery(request: Request, fmt: str) -> Response:
        def run() -> Response:
            base = str(request.base_url).rstrip("/") + PREFIX
            changeset = "2026-01-01T00:00:00+07:00"
            body = {
                "changeset": changeset,
                "contact": "Trung tâm điều hành đô thị thông minh Vinh (IOC), Nghệ An",
                "key_service": "Khoá API do quản trị IOC cấp: ioc apikey create --scopes open311:write",
                "endpoints": [
                    {
                        "specification": SPEC_URL,
                        "url": base,
                        "changeset": changeset,
                        "type": "production",
                        "formats": ["text/xml", "application/json"],
                    }
                ],
            }
            return respond(fmt, "discovery", body)

        return guarded(fmt, run)

    @router.get("/services.{fmt}")
    def services(request: Request, fmt: str) -> Response:
        def run() -> Response:
            check_jurisdiction(request)
            return respond(fmt, "services", [service_entry(c) for c in catalog.categories().values()])

        return guarded(fmt, run)

    @router.get("/services/{code}.{fmt}")
    def service_definition(request: Request, code: str, fmt: str) -> Response:
        def run() -> Response:
            check_jurisdiction(request)
            if code not in catalog.categories():
                raise Open311Error(404, f"service_code '{code}' không tồn tại (not found).")
            return respond(fmt, "service_definition", {"service_code": code, "attributes": []})

        return guarded(fmt, run)

    @router.get("/requests.{fmt}")
    def list_requests(request: Request, session: DbSession, fmt: str) -> Response:
        def run() -> Response:
            check_jurisdiction(request)
            params = request.query_params
            stmt = select(Report).where(service.publicly_visible())
            ids = _csv(params.get("service_request_id"))
            if ids:  # overrides all other arguments
                if not all(i.isdigit() and len(i) < 12 for i in ids):
                    raise Open311Error(400, "service_request_id phải là số (must be numeric).")
                stmt = stmt.where(Report.id.in_([int(i) for i in ids[:MAX_PAGE_SIZE]]))
                rows = list(session.scalars(stmt.order_by(Report.id)))
                return respond(fmt, "service_requests", entries(session, request, rows))
            codes = _csv(params.get("service_code"))
            unknown = [c for c in codes if c not in catalog.categories()]
            if unknown:
                raise Open311Error(404, f"service_code không tồn tại (not found): {', '.join(unknown)}.")
            if codes:
                stmt = stmt.where(Report.category.in_(codes))
            statuses = _csv(params.get("status"))
            bad = [s for s in statuses if s not in ("open", "closed")]
            if bad:
                raise Open311Error(400, f"status chỉ nhận open, closed (got {', '.join(bad)}).")
            if statuses and set(statuses) != {"open", "closed"}:
                stmt = stmt.where(
                    Report.status.in_(service.OPEN_VALUES if statuses[0] == "open" else service.CLOSED_VALUES)
                )
            start_s, end_s = params.get("start_date"), params.get("end_date")
            end = parse_when(end_s, "end_date", end=True) if end_s else None
            start = parse_when(start_s, "start_date") if start_s else None
            if start is None and end is None:
                end = utcnow()
            if start is None:
                assert end is not None
                start = end - MAX_SPAN
            if end is None:
                end = start + MAX_SPAN
            if end < start:
                raise Open311Error(400, "end_date trước start_date (end_date before start_date).")
            if end - start > MAX_SPAN + timedelta(days=1):
                raise Open311Error(
                    400, "Khoảng thời gian không quá 90 ngày (the range may not span more than 90 days)."
                )
            stmt = stmt.where(Report.created_at >= start, Report.created_at <= end)
            page_size = _int(params.get("page_size"), "page_size", MAX_PAGE_SIZE, 1, MAX_PAGE_SIZE)
            page = _int(params.get("page"), "page", 1, 1, 1_000_000)
            rows = list(
                session.scalars(
                    stmt.order_by(Report.created_at.desc(), Report.id.desc())
                    .limit(page_size)
                    .offset((page - 1) * page_size)
                )
            )
            return respond(fmt, "service_requests", entries(session, request, rows))

        return guarded(fmt, run)

    @router.get("/requests/{request_id}.{fmt}")
    def one_request(request: Request, session: DbSession, request_id: str, fmt: str) -> Response:
        def run() -> Response:
            check_jurisdiction(request)
            report = session.get(Report, int(request_id)) if request_id.isdigit() and len(request_id) < 12 else None
            if report is None or not report.public or report.abuse:
                raise Open311Error(404, f"service_request_id '{request_id}' không tồn tại (not found).")
            return respond(fmt, "service_requests", entries(session, request, [report]))

        return guarded(fmt, run)

    @router.get("/tokens/{token}.{fmt}")
    def token(request: Request, session: DbSession, token: str, fmt: str) -> Response:
        def run() -> Response:
            check_jurisdiction(request)
            try:
                report = service.get_by_code(session, token)
            except Problem as exc:
                raise Open311Error(404, f"token '{token}' không tồn tại (not found).") from exc
            return respond(fmt, "service_requests", [{"service_request_id": str(report.id), "token": report.code}])

        return guarded(fmt, run)

    @router.get("/servicerequestupdates.{fmt}")
    def list_updates(request: Request, session: DbSession, fmt: str) -> Response:
        """FixMyStreet extension: public updates of public reports in a time range."""

        def run() -> Response:
            check_jurisdiction(request)
            params = request.query_params
            end = parse_when(params["end_date"], "end_date", end=True) if params.get("end_date") else utcnow()
            start = parse_when(params["start_date"], "start_date") if params.get("start_date") else end - MAX_SPAN
            if end < start:
                raise Open311Error(400, "end_date trước start_date (end_date before start_date).")
            page_size = _int(params.get("page_size"), "page_size", MAX_PAGE_SIZE, 1, MAX_PAGE_SIZE)
            page = _int(params.get("page"), "page", 1, 1, 1_000_000)
            rows = session.execute(
                select(ReportUpdate)
                .join(Report, Report.id == ReportUpdate.report_id)
                .where(
                    service.publicly_visible(),
                    ReportUpdate.public.is_(True),
                    ReportUpdate.at >= start,
                    ReportUpdate.at <= end,
                )
                .order_by(ReportUpdate.at, ReportUpdate.id)
                .limit(page_size)
                .offset((page - 1) * page_size)
            ).scalars()
            body = [
                {
                    "update_id": str(u.id),
                    "service_request_id": str(u.report_id),
                    "status": FMS_STATUS[Status(u.status)],
                    "updated_datetime": w3(u.at),
                    "description": privacy.redact(u.text) or "",
                    "media_url": None,
                }
                for u in rows
            ]
            return respond(fmt, "service_requests_updates", body)

        return guarded(fmt, run)

    async def read_form(request: Request) -> dict[str, str]:
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            raise Open311Error(400, "POST phải là application/x-www-form-urlencoded (form-encoded body required).")
        form = await request.form(max_files=0, max_fields=200)
        return {k: v for k, v in form.items() if isinstance(v, str)}

    def authorise(session: Session, request: Request, form: dict[str, str]) -> Principal:
        key = form.get("api_key") or request.query_params.get("api_key") or request.headers.get("x-api-key")
        if not key:
            raise Open311Error(403, "Thiếu api_key (api_key missing).")
        try:
            principal = api_key_principal(session, key.strip(), client_of(request))
        except Problem as exc:
            raise Open311Error(403, "api_key không hợp lệ hoặc đã thu hồi (invalid api_key).") from exc
        if not principal.has(SCOPE):
            raise Open311Error(403, f"api_key thiếu phạm vi '{SCOPE}' (scope {SCOPE} required).")
        return principal

    def create_sync(request: Request, form: dict[str, str], client: str) -> list[dict[str, Any]]:
        with rt.db.session() as session:
            check_jurisdiction(request, form)
            principal = authorise(session, request, form)
            session.commit()  # last_used_at of the key, even if the report is refused
            code = (form.get("service_code") or "").strip()
            if not code:
                raise Open311Error(400, "Thiếu service_code (service_code required).")
            cat = catalog.categories().get(code)
            if cat is None:
                raise Open311Error(404, f"service_code '{code}' không tồn tại (not found).")
            lat, lon = form.get("lat", "").strip(), form.get("long", "").strip()
            address = (form.get("address_string") or form.get("address_id") or "").strip()
            if not (lat and lon) and not address:
                raise Open311Error(400, "Cần lat & long hoặc address_string (a location parameter is required).")
            name = " ".join(p for p in (form.get("first_name", "").strip(), form.get("last_name", "").strip()) if p)
            fields = {
                "category": code,
                "description": (form.get("description") or "").strip() or cat.name,
                "lat": lat or None,
                "lon": lon or None,
                "address": address,
                "name": name or None,
                "phone": form.get("phone"),
                "email": form.get("email"),
                "device_id": form.get("device_id"),
                "account_id": form.get("account_id"),
                "media_url": form.get("media_url"),
            }
            data = parse_create(fields)
            report, created = service.create_report(
                session, rt, data, principal=principal, client=client, source="open311"
            )
            return [
                {
                    "service_request_id": str(report.id),
                    "service_notice": created.service_notice,
                    "account_id": data.account_id,
                }
            ]

    @router.post("/requests.{fmt}")
    async def post_request(request: Request, fmt: str) -> Response:
        if fmt not in ("xml", "json"):
            return error_response("xml", [Open311Error(404, f"Định dạng '{fmt}' không hỗ trợ.")])
        try:
            form = await read_form(request)
            body = await run_in_threadpool(create_sync, request, form, client_of(request))
        except Open311Error as exc:
            return error_response(fmt, [exc])
        except Problem as exc:
            return error_response(fmt, [from_problem(exc)])
        return respond(fmt, "service_requests", body)

    def update_sync(request: Request, form: dict[str, str]) -> list[dict[str, Any]]:
        with rt.db.session() as session:
            check_jurisdiction(request, form)
            principal = authorise(session, request, form)
            rid = (form.get("service_request_id") or "").strip()
            if not rid:
                raise Open311Error(400, "Thiếu service_request_id (service_request_id required).")
            report = session.get(Report, int(rid)) if rid.isdigit() and len(rid) < 12 else None
            if report is None or report.abuse:
                raise Open311Error(404, f"service_request_id '{rid}' không tồn tại (not found).")
            text = (form.get("description") or "").strip()
            if not text or len(text) > 4000:
                raise Open311Error(400, "Cần description (1–4000 ký tự) (description required).")
            status = (form.get("status") or "").strip().upper()
            if status and status not in ("OPEN", "CLOSED", *FMS_STATUS.values()):
                raise Open311Error(400, f"status '{status}' không hợp lệ (invalid status).")
            if status == "OPEN" and not is_open(report.status):
                service.transition(session, report, TransitionIn(status=Status.REOPENED, note=text), principal)
                tier = catalog.sla_tiers()[report.sla_tier]
                report.resolve_due = tier.resolve_due(rt.calendar, report.updated_at)
            else:
                service.comment(session, report, principal, text, public=True)
            session.flush()
            last = session.scalar(
                select(ReportUpdate.id)
                .where(ReportUpdate.report_id == report.id)
                .order_by(ReportUpdate.id.desc())
                .limit(1)
            )
            return [{"update_id": str(last)}]

    @router.post("/servicerequestupdates.{fmt}")
    async def post_update(request: Request, fmt: str) -> Response:
        """FixMyStreet extension: a citizen's update from an app (``status=OPEN`` reopens a closed report)."""
        if fmt not in ("xml", "json"):
            return error_response("xml", [Open311Error(404, f"Định dạng '{fmt}' không hỗ trợ.")])
        try:
            form = await read_form(request)
            body = await run_in_threadpool(update_sync, request, form)
        except Open311Error as exc:
            return error_response(fmt, [exc])
        except Problem as exc:
            return error_response(fmt, [from_problem(exc)])
        return respond(fmt, "service_request_updates", body)

    @router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    def not_found(rest: str) -> Response:
        fmt = "json" if rest.endswith(".json") else "xml"
        return error_response(fmt, [Open311Error(404, f"Không có tài nguyên '{rest}' (no such resource).")])

    return router
