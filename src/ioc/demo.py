"""The Vinh demo: agencies, one user per role, and a few alarms — for trying the IOC out."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ioc.core import alarms
from ioc.core.alarms import AlarmCreate, Severity
from ioc.core.auth import Agency, Role, User, create_user


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    role: Role
    agency_id: str | None
    full_name: str


WARDS = [
    ("ubnd-thanh-vinh", "UBND phường Thành Vinh", "Thanh Vinh Ward People's Committee", "16681"),
    ("ubnd-truong-vinh", "UBND phường Trường Vinh", "Truong Vinh Ward People's Committee", "16690"),
    ("ubnd-vinh-phu", "UBND phường Vinh Phú", "Vinh Phu Ward People's Committee", "16702"),
    ("ubnd-vinh-loc", "UBND phường Vinh Lộc", "Vinh Loc Ward People's Committee", "16708"),
    ("ubnd-cua-lo", "UBND phường Cửa Lò", "Cua Lo Ward People's Committee", "16732"),
    ("ubnd-vinh-hung", "UBND phường Vinh Hưng", "Vinh Hung Ward People's Committee", "17920"),
]

DEPARTMENTS = [
    ("so-khcn", "Sở Khoa học và Công nghệ Nghệ An", "Department of Science and Technology"),
    ("so-nnmt", "Sở Nông nghiệp và Môi trường Nghệ An", "Department of Agriculture and Environment"),
    ("so-xay-dung", "Sở Xây dựng Nghệ An", "Department of Construction"),
    ("cong-an-tinh", "Công an tỉnh Nghệ An", "Nghe An Provincial Police"),
    ("so-y-te", "Sở Y tế Nghệ An", "Department of Health"),
    ("so-gddt", "Sở Giáo dục và Đào tạo Nghệ An", "Department of Education and Training"),
    ("so-vhttdl", "Sở Văn hoá, Thể thao và Du lịch Nghệ An", "Department of Culture, Sports and Tourism"),
]

DEMO_LOGINS = [
    DemoLogin("admin", "admin-demo-2025", Role.ADMIN, "so-khcn", "Quản trị hệ thống"),
    DemoLogin("operator", "operator-demo-2025", Role.OPERATOR, "so-khcn", "Trực ban IOC"),
    DemoLogin("moitruong", "officer-demo-2025", Role.AGENCY_OFFICER, "so-nnmt", "Cán bộ Sở NN&MT"),
    DemoLogin("thanhvinh", "ward-demo-2025", Role.WARD_OFFICER, "ubnd-thanh-vinh", "Cán bộ phường Thành Vinh"),
    DemoLogin("lanhdao", "viewer-demo-2025", Role.VIEWER, None, "Lãnh đạo (xem)"),
]


def seed_agencies(session: Session) -> int:
    """The city's departments and the six wards' People's Committees (idempotent)."""
    added = 0
    for agency_id, name, name_en, ward_code in WARDS:
        if session.get(Agency, agency_id) is None:
            session.add(Agency(id=agency_id, name=name, name_en=name_en, kind="ward", ward_code=ward_code))
            added += 1
    for agency_id, name, name_en in DEPARTMENTS:
        if session.get(Agency, agency_id) is None:
            session.add(Agency(id=agency_id, name=name, name_en=name_en, kind="department"))
            added += 1
    session.flush()
    return added


def is_empty(session: Session) -> bool:
    """True when no user exists yet (a fresh installation)."""
    return (session.scalar(select(func.count()).select_from(User)) or 0) == 0


def seed_demo(session: Session) -> list[DemoLogin]:
    """Agencies, the demo users and a few demo alarms; returns the logins created."""
    seed_agencies(session)
    created = []
    for login in DEMO_LOGINS:
        if session.scalar(select(User.id).where(User.username == login.username)) is None:
            create_user(
                session,
                username=login.username,
                password=login.password,
                role=login.role,
                full_name=login.full_name,
                agency_id=login.agency_id,
            )
            created.append(login)
    demo_alarms = [
        AlarmCreate(
            source="demo:gauge:song-vinh-cau-cua-tien",
            type="flood.level",
            severity=Severity.MAJOR,
            title="Mực nước sông Vinh (cầu Cửa Tiền) vượt báo động 2",
            ward_code="16690",
            agency_id="ubnd-truong-vinh",
            details={"level_m": 2.6, "alert_level": 2},
        ),
        AlarmCreate(
            source="demo:station:aq-quang-truong-hcm",
            type="device.offline",
            severity=Severity.WARNING,
            title="Trạm quan trắc không khí Quảng trường Hồ Chí Minh mất kết nối",
            ward_code="16681",
            agency_id="so-nnmt",
            details={"last_seen_minutes": 47},
        ),
    ]
    for data in demo_alarms:
        alarms.raise_alarm(session, data, module="demo")
    return created
