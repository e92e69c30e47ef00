"""Reports logic, no HTTP: create, route, SLA, workflow, duplicates, privacy-aware views.

Every write records an audit row and publishes an event in the caller's transaction; a
refused action raises :class:`~ioc.core.problems.Problem` before anything is written.
"""

from __future__ import annotations

import functools
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, false, func, or_, select, true
from sqlalchemy.orm import Session

from ioc.core import alarms, audit
from ioc.core.admin_units import CITY_WARD_CODES, ward_locator
from ioc.core.alarms import AlarmCreate, Severity
from ioc.core.auth import Agency, Principal, Role
from ioc.core.db import Database, utcnow
from ioc.core.events import Topic, publish
from ioc.core.geo import haversine_m
from ioc.core.group_commit import GroupCommit
from ioc.core.problems import Problem
from ioc.core.text import fold

from . import catalog, privacy
from .calendar import WorkingCalendar
from .models import Report, Reporter, ReportPhoto, ReportUpdate
from .schemas import (
    CreatedReport,
    Duplicate,
    PhotoRef,
    ReportCreate,
    ReportDetail,
    ReporterMasked,
    ReportEvent,
    ReportPublic,
    ReportStaff,
    ReportTracked,
    SlaState,
    TransitionIn,
    UpdatePublic,
    UpdateStaff,
)
from .settings import ReportsSettings
from .workflow import CLOSED_STATUSES, OPEN_STATUSES, Status, allowed, is_open, label, open311_status

REPORT_CREATED = Topic("report.created", ReportEvent, "Phản ánh mới / a new report")
REPORT_STATUS_CHANGED = Topic("report.status_changed", ReportEvent, "Phản ánh đổi trạng thái / status changed")
REPORT_ROUTED = Topic("report.routed", ReportEvent, "Phản ánh được chuyển đơn vị / re-routed")
REPORT_UPDATED = Topic(
    "report.updated", ReportEvent, "Phản ánh có trả lời, ghi chú, phân công / reply, note, assignment"
)
REPORT_ESCALATED = Topic("report.escalated", ReportEvent, "Phản ánh quá hạn được báo cấp trên / overdue, escalated")

OPEN_VALUES = tuple(s.value for s in OPEN_STATUSES)
CLOSED_VALUES = tuple(s.value for s in CLOSED_STATUSES)
_CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
OVERDUE_ALARM_TYPE = "report.overdue"
#: The queue's ``total`` stops counting here (the answer says ``total_capped``).
COUNT_CAP = 10_000


@dataclass
class Runtime:
    """What the module's routes share for one app: settings, calendar, database, rate limiter."""

    settings: ReportsSettings
    db: Database
    secret: str
    calendar: WorkingCalendar = field(init=False)
    limiter: privacy.RateLimiter = field(init=False)
    #: Citizens' submissions through the API, written by group commit (see :mod:`ioc.core.group_commit`).
    intake: GroupCommit[CheckedReport, CreatedReport] = field(init=False)
    last_escalation: float = 0.0

    def __post_init__(self) -> None:
        self.calendar = WorkingCalendar(
            self.settings.working_hours,
            make_up_days=self.settings.make_up_days,
            extra_days_off=self.settings.extra_days_off,
        )
        self.limiter = privacy.RateLimiter(self.settings.rate_limit_per_hour)
        self.intake = GroupCommit(
            self.db, lambda session, batch: [created for _, created in store_reports(session, self, batch)]
        )

    def may_see_identity(self, principal: Principal | None) -> bool:
        if principal is None or principal.kind != "user":
            return False
        return "*" in principal.permissions or (
            principal.role is not None and principal.role.value in self.settings.personal_data_roles
        )


# --------------------------------------------------------------------------- helpers


def new_code() -> str:
    """A tracking code, ``PA-`` and 10 Crockford base32 characters (50 random bits)."""
    return "PA-" + "".join(secrets.choice(_CODE_ALPHABET) for _ in range(10))


def normalize_code(code: str) -> str:
    code = code.strip().upper().replace(" ", "")
    return code if code.startswith("PA-") else "PA-" + code.removeprefix("PA")


def category_or_422(code: str) -> catalog.Category:
    cat = catalog.categories().get(code)
    if cat is None:
        known = ", ".join(catalog.categories())
        raise Problem(422, f"Lĩnh vực '{code}' không tồn tại. Có (known): {known}.", code="unknown-category")
    return cat


def ward_from_address(address: str) -> str | None:
    """The city ward named in a free-text address ("… phường Vinh Phú …"), if exactly one is."""
    text = fold(address)
    names = {
        "16681": "thanh vinh",
        "16690": "truong vinh",
        "16702": "vinh phu",
        "16708": "vinh loc",
        "16732": "cua lo",
        "17920": "vinh hung",
    }
    found = [code for code, name in names.items() if name in text]
    return found[0] if len(found) == 1 else None


def sla_state(report: Report, now: datetime | None = None) -> SlaState:
    """On time, nearly due, overdue — or, once closed, met or missed."""
    now = now or utcnow()
    if not is_open(report.status):
        closed = report.closed_at or report.updated_at
        return "met" if closed <= report.resolve_due else "missed"
    waiting = report.status == Status.FOR_TRIAGE and report.accepted_at is None
    due = min(report.accept_due, report.resolve_due) if waiting else report.resolve_due
    if now > due or now > report.resolve_due:
        return "overdue"
    start = report.created_at
    if now >= start + (due - start) * catalog.nearly_due_fraction():
        return "nearly_due"
    return "on_time"


def overdue_condition(now: datetime) -> ColumnElement[bool]:
    """SQL: open and past a deadline (mirrors :func:`sla_state`)."""
    return and_(
        Report.status.in_(OPEN_VALUES),
        or_(
            Report.resolve_due < now,
            and_(Report.status == Status.FOR_TRIAGE.value, Report.accepted_at.is_(None), Report.accept_due < now),
        ),
    )


def visible_to(principal: Principal) -> ColumnElement[bool]:
    """SQL condition limiting reports to the principal's remit (mirrors ``Principal.can_access``)."""
    if not principal.scoped:
        return true()
    if principal.role == Role.WARD_OFFICER:
        return Report.ward_code == principal.ward_code if principal.ward_code else false()
    return Report.agency_id == principal.agency_id if principal.agency_id else false()


def publicly_visible() -> ColumnElement[bool]:
    return and_(Report.public.is_(True), Report.abuse.is_(False))


def get_for_staff(session: Session, principal: Principal, report_id: int) -> Report:
    """The report if it exists and is in the principal's remit; 404 otherwise."""
    report = session.get(Report, report_id)
    if report is None or not principal.can_access(ward_code=report.ward_code, agency_id=report.agency_id):
        raise Problem(404, f"Không tìm thấy phản ánh {report_id} (report not found).", code="report-not-found")
    return report


def get_public(session: Session, report_id: int) -> Report:
    report = session.get(Report, report_id)
    if report is None or not report.public or report.abuse:
        raise Problem(404, f"Không tìm thấy phản ánh {report_id} (report not found).", code="report-not-found")
    return report


def get_by_code(session: Session, code: str) -> Report:
    report = session.scalar(select(Report).where(Report.code == normalize_code(code)))
    if report is None:
        raise Problem(404, "Không tìm thấy mã theo dõi (tracking code not found).", code="code-not-found")
    return report


def _photo_refs(session: Session, report_ids: Sequence[int]) -> dict[int, list[PhotoRef]]:
    if not report_ids:
        return {}
    rows = session.execute(
        select(ReportPhoto.id, ReportPhoto.report_id)
        .where(ReportPhoto.report_id.in_(report_ids))
        .order_by(ReportPhoto.report_id, ReportPhoto.position)
    ).all()
    out: dict[int, list[PhotoRef]] = {}
    for photo_id, report_id in rows:
        out.setdefault(report_id, []).append(PhotoRef(id=photo_id, url=f"/api/v1/reports/photos/{photo_id}"))
    return out


def _public_fields(report: Report, lang: str, photos: list[PhotoRef] | None) -> dict[str, Any]:
    cat = catalog.categories().get(report.category)
    return {
        "id": report.id,
        "category": report.category,
        "category_name": (cat.name_en if lang == "en" else cat.name) if cat else report.category,
        "status": report.status,
        "status_label": label(report.status, lang),
        "open311_status": open311_status(report.status),
        "description": privacy.redact(report.description) or "",
        "lat": report.lat,
        "lon": report.lon,
        "address": privacy.redact(report.address) or "",
        "ward_code": report.ward_code,
        "agency_id": report.agency_id,
        "created_at": report.created_at,
        "updated_at": report.updated_at,
        "expected_at": report.resolve_due if is_open(report.status) else None,
        "status_notes": privacy.redact(report.status_notes),
        "duplicate_of": report.duplicate_of,
        "responsible_unit": report.responsible_unit,
        "photos": photos or [],
    }


def to_public(session: Session, reports: Sequence[Report], lang: str = "vi") -> list[ReportPublic]:
    photos = _photo_refs(session, [r.id for r in reports])
    return [ReportPublic(**_public_fields(r, lang, photos.get(r.id))) for r in reports]


def _staff_fields(report: Report, lang: str, photos: list[PhotoRef] | None, now: datetime) -> dict[str, Any]:
    fields = _public_fields(report, lang, photos)
    fields["description"] = report.description  # staff see the text as written
    fields["address"] = report.address
    fields["status_notes"] = report.status_notes
    fields.update(
        public=report.public,
        anonymous=report.anonymous,
        source=report.source,
        sla_tier=report.sla_tier,
        sla_state=sla_state(report, now),
        accept_due=report.accept_due,
        resolve_due=report.resolve_due,
        accepted_at=report.accepted_at,
        closed_at=report.closed_at,
        escalated_at=report.escalated_at,
        assignee=report.assignee,
        abuse=report.abuse,
        rating=report.rating,
        reopen_count=report.reopen_count,
    )
    return fields


def to_staff(session: Session, reports: Sequence[Report], lang: str = "vi") -> list[ReportStaff]:
    photos = _photo_refs(session, [r.id for r in reports])
    now = utcnow()
    return [ReportStaff(**_staff_fields(r, lang, photos.get(r.id), now)) for r in reports]


def detail(session: Session, rt: Runtime, report: Report, principal: Principal, lang: str = "vi") -> ReportDetail:
    """The staff view of one report (reporter masked); audited as a view of personal data."""
    photos = _photo_refs(session, [report.id])
    updates = session.scalars(select(ReportUpdate).where(ReportUpdate.report_id == report.id).order_by(ReportUpdate.id))
    reporter = session.get(Reporter, report.id)
    masked: ReporterMasked | None = None
    if reporter is not None and rt.may_see_identity(principal) and not report.anonymous:
        masked = ReporterMasked(
            name=privacy.mask_name(reporter.name),
            phone=privacy.mask_phone(reporter.phone),
            email=privacy.mask_email(reporter.email),
        )
    audit.record(session, principal, "report.view", "report", report.id)
    return ReportDetail(
        **_staff_fields(report, lang, photos.get(report.id), utcnow()),
        updates=[UpdateStaff.model_validate(u) for u in updates],
        reporter=masked,
    )


def reveal_reporter(session: Session, rt: Runtime, report: Report, principal: Principal) -> dict[str, str | None]:
    """The reporter's full identity, for roles allowed to see it; every reveal is audited."""
    if not rt.may_see_identity(principal):
        raise Problem(
            403,
            "Vai trò của bạn không được xem thông tin cá nhân người phản ánh (personal data not allowed).",
            code="personal-data-forbidden",
        )
    reporter = session.get(Reporter, report.id)
    audit.record(session, principal, "report.reporter_view", "report", report.id)
    if reporter is None or report.anonymous:
        return {"name": None, "phone": None, "email": None}
    return {"name": reporter.name, "phone": reporter.phone, "email": reporter.email}


def tracked(session: Session, report: Report, lang: str = "vi") -> ReportTracked:
    photos = _photo_refs(session, [report.id])
    updates = session.scalars(
        select(ReportUpdate)
        .where(ReportUpdate.report_id == report.id, ReportUpdate.public.is_(True))
        .order_by(ReportUpdate.id)
    )
    fields = _public_fields(report, lang, photos.get(report.id))
    closed = not is_open(report.status)
    return ReportTracked(
        **fields,
        code=report.code,
        updates=[
            UpdatePublic(id=u.id, at=u.at, kind=u.kind, status=u.status, text=privacy.redact(u.text)) for u in updates
        ],
        rating=report.rating,
        can_rate=closed and report.rating is None,
        can_reopen=closed,
    )


def event_payload(report: Report, previous: str | None = None, note: str | None = None) -> ReportEvent:
    return ReportEvent(
        id=report.id,
        category=report.category,
        status=report.status,
        previous_status=previous,
        ward_code=report.ward_code,
        agency_id=report.agency_id,
        public=report.public,
        lat=report.lat,
        lon=report.lon,
        created_at=report.created_at,
        updated_at=report.updated_at,
        note=note,
    )


def _snapshot(report: Report) -> dict[str, Any]:
    return {
        "status": report.status,
        "agency_id": report.agency_id,
        "ward_code": report.ward_code,
        "assignee": report.assignee,
        "duplicate_of": report.duplicate_of,
        "responsible_unit": report.responsible_unit,
        "abuse": report.abuse,
        "public": report.public,
    }


def _announce(session: Session, topic: Topic[ReportEvent], report: Report, previous: str | None = None) -> None:
    publish(session, topic, event_payload(report, previous), ward_code=report.ward_code, agency_id=report.agency_id)


def _history(
    session: Session,
    report: Report,
    kind: str,
    actor: str,
    *,
    text: str | None = None,
    public: bool = False,
    at: datetime | None = None,
) -> None:
    session.add(
        ReportUpdate(
            report_id=report.id,
            at=at or utcnow(),
            kind=kind,
            status=report.status,
            public=public,
            text=text,
            actor=actor,
            agency_id=report.agency_id,
        )
    )


def _actor(principal: Principal | None) -> str:
    return principal.name if principal else "citizen"


# --------------------------------------------------------------------------- duplicates


@functools.cache
def _nearby_statement(
    exclude: bool, public_only: bool, rows: int
) -> Select[int, str, str, str, float | None, float | None, datetime]:
    """The duplicate lookup, built once per shape (a new statement per call costs more than the query)."""
    stmt = select(
        Report.id, Report.category, Report.status, Report.description, Report.lat, Report.lon, Report.created_at
    ).where(
        Report.category == bindparam("category"),
        Report.status.in_(OPEN_VALUES),
        Report.lat.between(bindparam("lat_lo"), bindparam("lat_hi")),
        Report.lon.between(bindparam("lon_lo"), bindparam("lon_hi")),
    )
    if exclude:
        stmt = stmt.where(Report.id != bindparam("exclude"))
    if public_only:
        stmt = stmt.where(publicly_visible())
    # Newest first, bounded: a hot spot with hundreds of open reports must not slow every submission.
    return stmt.order_by(Report.id.desc()).limit(rows)


def nearby(
    session: Session,
    category: str,
    lat: float,
    lon: float,
    radius_m: float,
    *,
    exclude: int | None = None,
    public_only: bool = True,
    limit: int = 10,
) -> list[Duplicate]:
    """Open reports of ``category`` within ``radius_m`` of the point, nearest first."""
    dlat = radius_m / 111_320.0
    dlon = radius_m / (111_320.0 * max(math.cos(math.radians(lat)), 0.01))
    params: dict[str, Any] = {
        "category": category,
        "lat_lo": lat - dlat,
        "lat_hi": lat + dlat,
        "lon_lo": lon - dlon,
        "lon_hi": lon + dlon,
    }
    if exclude is not None:
        params["exclude"] = exclude
    stmt = _nearby_statement(exclude is not None, public_only, max(limit * 5, 50))
    found: list[Duplicate] = []
    for rid, cat, status, text, r_lat, r_lon, created in session.execute(stmt, params):
        if r_lat is None or r_lon is None:
            continue
        distance = haversine_m(lat, lon, r_lat, r_lon)
        if distance <= radius_m:
            found.append(
                Duplicate(
                    id=rid,
                    category=cat,
                    status=status,
                    status_label=label(status),
                    description=privacy.redact(text) or "",
                    distance_m=round(distance, 1),
                    created_at=created,
                )
            )
    found.sort(key=lambda d: d.distance_m)
    return found[:limit]


# --------------------------------------------------------------------------- create


@dataclass(frozen=True)
class CheckedReport:
    """A submission that passed every check (:func:`check_report`): ready to store, nothing written yet."""

    data: ReportCreate
    category: catalog.Category
    ward_code: str
    photos: list[privacy.CleanPhoto]
    principal: Principal | None
    client: str
    source: str


def create_report(
    session: Session,
    rt: Runtime,
    data: ReportCreate,
    *,
    photos: Sequence[bytes] = (),
    principal: Principal | None = None,
    client: str = "?",
    source: str = "web",
    now: datetime | None = None,
) -> tuple[Report, CreatedReport]:
    """Validate, locate, route and store a report with its SLA deadlines; nothing is written on refusal."""
    checked = check_report(rt, data, photos=photos, principal=principal, client=client, source=source)
    return store_report(session, rt, checked, now=now)


def check_report(
    rt: Runtime,
    data: ReportCreate,
    *,
    photos: Sequence[bytes] = (),
    principal: Principal | None = None,
    client: str = "?",
    source: str = "web",
) -> CheckedReport:
    """Every check of a submission, without the database: category, place (ward), photos (stripped),
    rate limit (counts the submission). Raises :class:`Problem` on refusal."""
    cat = category_or_422(data.category)
    if data.lat is not None and data.lon is not None:
        ward = ward_locator(rt.db).locate(data.lat, data.lon)
        if ward is None:
            raise Problem(
                422,
                "Vị trí nằm ngoài địa bàn sáu phường của Vinh cũ; vui lòng phản ánh với địa phương nơi xảy ra "
                "(location outside the city's six wards).",
                code="outside-city",
            )
    else:
        ward = ward_from_address(data.address)
        if ward is None:
            raise Problem(
                422,
                "Không xác định được phường từ địa chỉ; hãy chọn vị trí trên bản đồ hoặc ghi rõ tên phường "
                "(cannot locate the address: send lat/long or name the ward).",
                code="unlocatable-address",
            )
    if len(photos) > rt.settings.max_photos:
        raise Problem(
            422,
            f"Tối đa {rt.settings.max_photos} ảnh (at most {rt.settings.max_photos} photos).",
            code="too-many-photos",
        )
    clean = [privacy.strip_photo(raw, rt.settings.max_photo_bytes) for raw in photos]
    rt.limiter.check(principal.id if principal and principal.kind == "apikey" else client)
    return CheckedReport(data, cat, ward, clean, principal, client, source)


def store_report(
    session: Session, rt: Runtime, checked: CheckedReport, *, now: datetime | None = None
) -> tuple[Report, CreatedReport]:
    """Write a checked report, its history, audit row and ``report.created`` event in ``session``."""
    return store_reports(session, rt, [checked], now=now)[0]


def store_reports(
    session: Session, rt: Runtime, batch: Sequence[CheckedReport], *, now: datetime | None = None
) -> list[tuple[Report, CreatedReport]]:
    """Write checked reports in ``session``, in order, as :func:`store_report` would one by one.

    Done in a few round trips whatever the number: the reports in one flush, their reporters,
    photos, history and audit rows in another, then the events. A report's duplicate suggestions
    include the reports before it in ``batch``.
    """
    radius = rt.settings.duplicate_radius_m
    # Open reports of the same category nearby, offered as possible duplicates; looked up before the
    # first write (on SQLite the one-at-a-time write transaction starts at the first write).
    found = [
        nearby(session, c.category.code, c.data.lat, c.data.lon, radius)
        if c.data.lat is not None and c.data.lon is not None
        else []
        for c in batch
    ]
    reports: list[Report] = []
    for checked in batch:
        data, cat, ward = checked.data, checked.category, checked.ward_code
        at = now or utcnow()
        tier = catalog.sla_tiers()[cat.tier]
        reports.append(
            Report(
                code=new_code(),
                category=cat.code,
                description=data.description,
                lat=data.lat,
                lon=data.lon,
                address=data.address.strip(),
                ward_code=ward,
                agency_id=catalog.route(cat.code, ward),
                status=Status.FOR_TRIAGE.value,
                public=data.public and not cat.private,
                anonymous=data.anonymous,
                source=checked.source,
                media_url=data.media_url,
                sla_tier=tier.code,
                created_at=at,
                updated_at=at,
                accept_due=tier.accept_due(rt.calendar, at),
                resolve_due=tier.resolve_due(rt.calendar, at),
                reopen_count=0,
                abuse=False,
            )
        )
    session.add_all(reports)
    session.flush()
    for checked, report in zip(batch, reports, strict=True):
        data, principal, client = checked.data, checked.principal, checked.client
        if not data.anonymous or data.device_id or data.account_id:
            session.add(
                Reporter(
                    report_id=report.id,
                    name=data.name,
                    phone=data.phone,
                    email=data.email,
                    device_id=data.device_id,
                    account_id=data.account_id,
                    client_hash=privacy.client_hash(rt.secret, client),
                )
            )
        for position, photo in enumerate(checked.photos):
            session.add(
                ReportPhoto(
                    report_id=report.id,
                    position=position,
                    content_type=photo.content_type,
                    width=photo.width,
                    height=photo.height,
                    data=photo.data,
                    created_at=report.created_at,
                )
            )
        _history(session, report, "created", _actor(principal), public=True, at=report.created_at)
        audit.record(
            session,
            principal,
            "report.create",
            "report",
            report.id,
            after=_snapshot(report) | {"category": report.category, "source": checked.source},
            ip=principal.ip if principal else (client if client != "?" else None),
        )
    for report in reports:
        _announce(session, REPORT_CREATED, report)
    out: list[tuple[Report, CreatedReport]] = []
    for i, (checked, report) in enumerate(zip(batch, reports, strict=True)):
        duplicates = found[i] + _duplicates_among(reports[:i], report, radius)
        duplicates.sort(key=lambda d: d.distance_m)
        out.append(
            (
                report,
                CreatedReport(
                    id=report.id,
                    code=report.code,
                    status=report.status,
                    ward_code=report.ward_code,
                    agency_id=report.agency_id,
                    expected_at=report.resolve_due,
                    service_notice=catalog.sla_tiers()[checked.category.tier].describe(),
                    duplicates=duplicates[:_DUPLICATES_SHOWN],
                ),
            )
        )
    return out


#: Duplicate suggestions given with a new report (the default ``limit`` of :func:`nearby`).
_DUPLICATES_SHOWN = 10


def _duplicates_among(earlier: Sequence[Report], report: Report, radius_m: float) -> list[Duplicate]:
    """What :func:`nearby` would find for ``report`` among ``earlier`` reports (new, so open)."""
    if report.lat is None or report.lon is None:
        return []
    found: list[Duplicate] = []
    for other in earlier:
        if other.category != report.category or not other.public or other.abuse:
            continue
        if other.lat is None or other.lon is None:
            continue
        distance = haversine_m(report.lat, report.lon, other.lat, other.lon)
        if distance <= radius_m:
            found.append(
                Duplicate(
                    id=other.id,
                    category=other.category,
                    status=other.status,
                    status_label=label(other.status),
                    description=privacy.redact(other.description) or "",
                    distance_m=round(distance, 1),
                    created_at=other.created_at,
                )
            )
    return found


# --------------------------------------------------------------------------- workflow


def transition(session: Session, report: Report, data: TransitionIn, principal: Principal | None) -> Report:
    """Move ``report`` to ``data.status`` if the workflow allows it, with what that status needs."""
    target = data.status
    if report.status == target.value:
        raise Problem(409, f"Phản ánh đã ở trạng thái '{label(target)}' (already in that status).", code="same-status")
    if not allowed(report.status, target.value):
        raise Problem(
            409,
            f"Không thể chuyển từ '{label(report.status)}' sang '{label(target)}' (transition not allowed).",
            code="bad-transition",
        )
    if target == Status.DUPLICATE:
        if data.duplicate_of is None:
            raise Problem(422, "Cần mã phản ánh gốc (duplicate_of required).", code="duplicate-of-required")
        original = session.get(Report, data.duplicate_of)
        if original is None or original.id == report.id:
            raise Problem(422, "Phản ánh gốc không hợp lệ (invalid original report).", code="bad-duplicate-of")
        if original.duplicate_of is not None:
            raise Problem(
                422, "Phản ánh gốc cũng là bản trùng (original is itself a duplicate).", code="bad-duplicate-of"
            )
        report.duplicate_of = original.id
    if target == Status.NOT_RESPONSIBLE and not (data.responsible_unit and data.responsible_unit.strip()):
        raise Problem(
            422, "Cần nêu đơn vị có thẩm quyền (responsible_unit required).", code="responsible-unit-required"
        )
    if target == Status.NO_FURTHER_ACTION and not (data.note and data.note.strip()):
        raise Problem(422, "Cần nêu lý do từ chối (a public reason is required).", code="reason-required")
    before = _snapshot(report)
    previous = report.status
    now = utcnow()
    if target == Status.NOT_RESPONSIBLE:
        report.responsible_unit = (data.responsible_unit or "").strip()
    if previous == Status.FOR_TRIAGE and report.accepted_at is None:
        report.accepted_at = now
    if target == Status.REOPENED:
        report.closed_at = None
        report.duplicate_of = None
        report.reopen_count += 1
        report.escalated_at = None
    elif target in CLOSED_STATUSES:
        report.closed_at = now
    report.status = target.value
    report.updated_at = now
    note = data.note.strip() if data.note and data.note.strip() else None
    if target == Status.NOT_RESPONSIBLE and note is None:
        note = f"Không thuộc thẩm quyền; đơn vị có thẩm quyền: {report.responsible_unit}."
    if target == Status.DUPLICATE and note is None:
        note = f"Trùng với phản ánh #{report.duplicate_of}."
    report.status_notes = note or label(target)
    _history(session, report, "status", _actor(principal), text=report.status_notes, public=True, at=now)
    if data.internal_note and data.internal_note.strip():
        _history(session, report, "note", _actor(principal), text=data.internal_note.strip(), at=now)
    audit.record(session, principal, "report.status", "report", report.id, before=before, after=_snapshot(report))
    _announce(session, REPORT_STATUS_CHANGED, report, previous)
    if target in CLOSED_STATUSES:
        alarms.clear_condition(session, f"report:{report.id}", OVERDUE_ALARM_TYPE, note="Phản ánh đã đóng")
    return report


def reopen_after_close(
    session: Session, rt: Runtime, report: Report, principal: Principal | None, reason: str
) -> Report:
    """Reopen a closed report ("not really fixed"); its resolution deadline starts again."""
    if is_open(report.status):
        raise Problem(409, "Phản ánh đang mở (report is still open).", code="not-closed")
    transition(session, report, TransitionIn(status=Status.REOPENED, note=reason), principal)
    tier = catalog.sla_tiers()[report.sla_tier]
    report.resolve_due = tier.resolve_due(rt.calendar, report.updated_at)
    return report


def comment(session: Session, report: Report, principal: Principal, text: str, public: bool) -> Report:
    now = utcnow()
    report.updated_at = now
    if public:
        report.status_notes = text.strip()
    _history(
        session, report, "reply" if public else "note", _actor(principal), text=text.strip(), public=public, at=now
    )
    audit.record(session, principal, "report.reply" if public else "report.note", "report", report.id)
    _announce(session, REPORT_UPDATED, report)
    return report


def reroute(session: Session, report: Report, principal: Principal, agency_id: str, note: str | None) -> Report:
    """Send the report to another agency (operators); audited and announced."""
    agency = session.get(Agency, agency_id)
    if agency is None:
        raise Problem(422, f"Không có cơ quan '{agency_id}' (unknown agency).", code="unknown-agency")
    if agency_id == report.agency_id:
        raise Problem(409, "Phản ánh đã thuộc cơ quan này (already with that agency).", code="same-agency")
    before = _snapshot(report)
    report.agency_id = agency_id
    report.assignee = None
    report.updated_at = utcnow()
    text = f"Chuyển đến {agency.name}" + (f": {note.strip()}" if note and note.strip() else "")
    _history(session, report, "route", _actor(principal), text=text, public=True)
    audit.record(session, principal, "report.route", "report", report.id, before=before, after=_snapshot(report))
    _announce(session, REPORT_ROUTED, report)
    return report


def assign(session: Session, report: Report, principal: Principal, assignee: str | None) -> Report:
    before = _snapshot(report)
    report.assignee = assignee
    report.updated_at = utcnow()
    _history(session, report, "assign", _actor(principal), text=assignee or "—")
    audit.record(session, principal, "report.assign", "report", report.id, before=before, after=_snapshot(report))
    _announce(session, REPORT_UPDATED, report)
    return report


def flag_abuse(session: Session, report: Report, principal: Principal, abuse: bool, note: str | None) -> Report:
    """Mark a report as abusive (hidden from every public answer) or clear the mark."""
    before = _snapshot(report)
    report.abuse = abuse
    report.updated_at = utcnow()
    _history(session, report, "abuse", _actor(principal), text=note)
    audit.record(session, principal, "report.abuse", "report", report.id, before=before, after=_snapshot(report))
    _announce(session, REPORT_UPDATED, report)
    return report


def rate(session: Session, report: Report, rating: int, comment_text: str | None) -> Report:
    """The reporter's satisfaction rating (1–5) of a closed report, once."""
    if is_open(report.status):
        raise Problem(409, "Chỉ đánh giá được phản ánh đã đóng (rate a closed report).", code="not-closed")
    if report.rating is not None:
        raise Problem(409, "Phản ánh đã được đánh giá (already rated).", code="already-rated")
    report.rating = rating
    report.rating_comment = comment_text
    _history(session, report, "rating", "citizen", text=f"{rating}/5")
    audit.record(session, None, "report.rate", "report", report.id, after={"rating": rating})
    _announce(session, REPORT_UPDATED, report)
    return report


# --------------------------------------------------------------------------- escalation


def escalate_overdue(session: Session, now: datetime | None = None, limit: int = 500) -> int:
    """Flag open reports past a deadline, once each, and raise an alarm to the supervisors."""
    now = now or utcnow()
    stmt = (
        select(Report)
        .where(overdue_condition(now), Report.escalated_at.is_(None))
        .order_by(Report.resolve_due)
        .limit(limit)
    )
    count = 0
    for report in session.scalars(stmt):
        report.escalated_at = now
        cat = catalog.categories().get(report.category)
        alarms.raise_alarm(
            session,
            AlarmCreate(
                source=f"report:{report.id}",
                type=OVERDUE_ALARM_TYPE,
                severity=Severity.MAJOR if report.sla_tier == "urgent" else Severity.MINOR,
                title=f"Phản ánh #{report.id} ({cat.name if cat else report.category}) quá hạn xử lý",
                ward_code=report.ward_code,
                agency_id=report.agency_id,
                details={
                    "report_id": report.id,
                    "status": report.status,
                    "resolve_due": report.resolve_due.isoformat(),
                },
            ),
            module="reports",
        )
        _history(session, report, "escalate", "system", text="Quá hạn: đã báo cấp trên")
        audit.record(session, None, "report.escalate", "report", report.id)
        _announce(session, REPORT_ESCALATED, report)
        count += 1
    return count


# --------------------------------------------------------------------------- queries


@dataclass
class QueueFilter:
    status: list[str] | None = None
    ward_code: str | None = None
    agency_id: str | None = None
    category: str | None = None
    sla: str | None = None  # overdue | open | closed
    q: str | None = None


def queue(
    session: Session, principal: Principal, flt: QueueFilter, *, limit: int = 50, offset: int = 0
) -> tuple[list[Report], int]:
    """Reports in the principal's remit, newest first, and how many match."""
    conds: list[ColumnElement[bool]] = [visible_to(principal)]
    if flt.status:
        conds.append(Report.status.in_(flt.status))
    if flt.ward_code:
        conds.append(Report.ward_code == flt.ward_code)
    if flt.agency_id:
        conds.append(Report.agency_id == flt.agency_id)
    if flt.category:
        conds.append(Report.category == flt.category)
    if flt.sla == "overdue":
        conds.append(overdue_condition(utcnow()))
    elif flt.sla == "open":
        conds.append(Report.status.in_(OPEN_VALUES))
    elif flt.sla == "closed":
        conds.append(Report.status.in_(CLOSED_VALUES))
    if flt.q:
        like = f"%{flt.q.strip()}%"
        id_match = Report.id == int(flt.q) if flt.q.strip().isdigit() else false()
        conds.append(or_(id_match, Report.description.ilike(like), Report.address.ilike(like)))
    where = and_(*conds)
    rows = list(
        session.scalars(
            select(Report).where(where).order_by(Report.created_at.desc(), Report.id.desc()).limit(limit).offset(offset)
        )
    )
    # Counting a million rows costs more than the page itself: count at most COUNT_CAP + 1.
    capped = select(Report.id).where(where).limit(COUNT_CAP + 1).subquery()
    total = int(session.scalar(select(func.count()).select_from(capped)) or 0)
    return rows, total


def overview(session: Session, principal: Principal) -> dict[str, Any]:
    """Counts for the operators' overview: by status, by ward, by agency, overdue."""
    now = utcnow()
    remit = visible_to(principal)
    by_status = dict(session.execute(select(Report.status, func.count()).where(remit).group_by(Report.status)).all())
    open_by_ward = dict(
        session.execute(
            select(Report.ward_code, func.count())
            .where(remit, Report.status.in_(OPEN_VALUES))
            .group_by(Report.ward_code)
        ).all()
    )
    open_by_agency = dict(
        session.execute(
            select(Report.agency_id, func.count())
            .where(remit, Report.status.in_(OPEN_VALUES))
            .group_by(Report.agency_id)
        ).all()
    )
    overdue = int(session.scalar(select(func.count()).select_from(Report).where(remit, overdue_condition(now))) or 0)
    return {
        "by_status": {k: int(v) for k, v in by_status.items()},
        "open": sum(int(v) for k, v in by_status.items() if k in OPEN_VALUES),
        "closed": sum(int(v) for k, v in by_status.items() if k in CLOSED_VALUES),
        "overdue": overdue,
        "open_by_ward": {w: int(open_by_ward.get(w, 0)) for w in CITY_WARD_CODES},
        "open_by_agency": {k: int(v) for k, v in open_by_agency.items()},
    }


def maybe_escalate(rt: Runtime, every_seconds: float = 60.0) -> None:
    """Run the overdue escalation at most once a minute per process (piggy-backing on staff reads)."""
    import time

    now = time.monotonic()
    if now - rt.last_escalation < every_seconds:
        return
    rt.last_escalation = now
    with rt.db.session() as session:
        escalate_overdue(session)


def working_hours_between(rt: Runtime, start: datetime, end: datetime) -> float:
    return rt.calendar.between(start, end) / timedelta(hours=1)
