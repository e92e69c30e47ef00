"""Demo reports for ``ioc seed --demo``: about 200 realistic reports across the six wards."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from shapely.geometry import Point
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ioc.core.admin_units import city_wards
from ioc.core.db import utcnow
from ioc.core.geo import shape_from_geojson

from . import catalog
from .calendar import WorkingCalendar
from .models import Report, Reporter, ReportUpdate
from .service import new_code
from .workflow import Status, label

DEMO_COUNT = 200

TEXTS: dict[str, list[str]] = {
    "giao-thong": [
        "Đèn tín hiệu giao thông ngã tư không hoạt động, xe cộ đi lại lộn xộn.",
        "Xe tải đỗ lấn làn gây ùn tắc giờ cao điểm.",
    ],
    "an-ninh-trat-tu": [
        "Nhóm thanh niên tụ tập gây ồn ào, đánh nhau lúc khuya.",
        "Có dấu hiệu tụ tập cờ bạc tại khu đất trống.",
    ],
    "o-nhiem": ["Khói đốt rác thải bốc mùi khó chịu cả buổi chiều.", "Nước thải từ cơ sở sản xuất xả thẳng ra mương."],
    "rac-thai": ["Rác thải tồn đọng nhiều ngày chưa được thu gom.", "Có người đổ trộm phế thải xây dựng ven đường."],
    "ngap-ung": [
        "Sau mưa lớn đường ngập sâu 30–40 cm, xe máy chết máy.",
        "Nắp cống bị vỡ, rất nguy hiểm cho người đi đường.",
    ],
    "chieu-sang": ["Cả dãy đèn đường không sáng từ tối qua.", "Đèn đường vẫn sáng vào ban ngày, lãng phí điện."],
    "duong-via-he": [
        "Ổ gà lớn giữa đường, đã có người ngã xe.",
        "Vỉa hè bị lấn chiếm để bán hàng, người đi bộ phải xuống lòng đường.",
    ],
    "trat-tu-xay-dung": [
        "Công trình xây dựng để vật liệu tràn ra lòng đường.",
        "Nhà đang xây thêm tầng, nghi không có giấy phép.",
    ],
    "cay-xanh": ["Cây lớn bị nghiêng sau bão, có nguy cơ đổ.", "Cành cây gãy vướng vào dây điện."],
    "dien-nuoc": ["Đường ống nước bị vỡ, nước chảy lênh láng.", "Dây điện võng thấp qua đường."],
    "bien-quang-cao": ["Biển quảng cáo bị gió làm xô lệch, sắp rơi.", "Rao vặt dán kín cột điện và tường."],
    "khac": ["Chó thả rông không rọ mõm trong công viên.", "Ghế đá công viên bị hỏng."],
}
STREETS = [
    "Lê Lợi",
    "Quang Trung",
    "Nguyễn Du",
    "Trường Thi",
    "Lê Duẩn",
    "Phan Đình Phùng",
    "Nguyễn Sinh Sắc",
    "Bình Minh",
    "Hồ Tùng Mậu",
]
NAMES = ["Nguyễn Văn An", "Trần Thị Bình", "Lê Văn Cường", "Phạm Thị Dung", "Hoàng Văn Em", "Võ Thị Hoa"]
REPLIES = {
    Status.FIXED: "Đơn vị đã xử lý xong. Cảm ơn người dân đã phản ánh.",
    Status.IN_PROGRESS: "Đã cử cán bộ xuống hiện trường kiểm tra, xử lý.",
    Status.ACTION_SCHEDULED: "Đã đưa vào kế hoạch sửa chữa trong tuần tới.",
    Status.NO_FURTHER_ACTION: "Qua kiểm tra không phát hiện vi phạm như phản ánh.",
}


def _points(session: Session) -> dict[str, tuple[object, tuple[float, float, float, float]]]:
    out: dict[str, tuple[object, tuple[float, float, float, float]]] = {}
    for unit in city_wards(session):
        if unit.geometry is not None:
            geom = shape_from_geojson(unit.geometry)
            out[unit.code] = (geom, geom.bounds)
    return out


def seed_demo(session: Session) -> int:
    """Add the demo reports unless reports exist already; returns how many were added."""
    if (session.scalar(select(func.count()).select_from(Report)) or 0) > 0:
        return 0
    rnd = random.Random(2025)  # noqa: S311 - demo data, not secrets
    cal = WorkingCalendar()
    wards = _points(session)
    if not wards:
        return 0
    now = utcnow()
    cats = list(catalog.categories().values())
    tiers = catalog.sla_tiers()
    added = 0
    for _ in range(DEMO_COUNT):
        ward = rnd.choice(sorted(wards))
        geom, (x0, y0, x1, y1) = wards[ward]
        for _try in range(100):
            lon, lat = rnd.uniform(x0, x1), rnd.uniform(y0, y1)
            if geom.contains(Point(lon, lat)):  # type: ignore[attr-defined]
                break
        cat = rnd.choice(cats)
        tier = tiers[cat.tier]
        created = now - timedelta(hours=rnd.uniform(1, 24 * 60))
        status = rnd.choices(
            [Status.FOR_TRIAGE, Status.INVESTIGATING, Status.IN_PROGRESS, Status.ACTION_SCHEDULED, Status.FIXED,
             Status.NO_FURTHER_ACTION, Status.NOT_RESPONSIBLE],
            weights=[12, 10, 14, 6, 45, 6, 7],
        )[0]  # fmt: skip
        if created > now - timedelta(hours=4):
            status = Status.FOR_TRIAGE
        accept_due, resolve_due = tier.accept_due(cal, created), tier.resolve_due(cal, created)
        accepted = None if status == Status.FOR_TRIAGE else created + timedelta(hours=rnd.uniform(0.5, 20))
        closed: datetime | None = None
        if status in (Status.FIXED, Status.NO_FURTHER_ACTION, Status.NOT_RESPONSIBLE):
            closed = min(created + timedelta(hours=rnd.uniform(2, 24 * 6)), now)
        report = Report(
            code=new_code(),
            category=cat.code,
            description=rnd.choice(TEXTS.get(cat.code, TEXTS["khac"])),
            lat=round(lat, 6),
            lon=round(lon, 6),
            address=f"{rnd.randint(1, 200)} đường {rnd.choice(STREETS)}",
            ward_code=ward,
            agency_id=catalog.route(cat.code, ward),
            status=status.value,
            public=not cat.private,
            anonymous=rnd.random() < 0.2,
            source=rnd.choice(["web", "web", "app", "open311"]),
            sla_tier=tier.code,
            created_at=created,
            updated_at=closed or accepted or created,
            accept_due=accept_due,
            resolve_due=resolve_due,
            accepted_at=accepted,
            closed_at=closed,
            status_notes=REPLIES.get(status, label(status)),
            responsible_unit="Công ty Điện lực Nghệ An" if status == Status.NOT_RESPONSIBLE else None,
            reopen_count=0,
            rating=rnd.choice([5, 5, 4, 4, 3, 2]) if status == Status.FIXED and rnd.random() < 0.6 else None,
            abuse=False,
        )
        session.add(report)
        session.flush()
        if not report.anonymous:
            session.add(
                Reporter(
                    report_id=report.id,
                    name=rnd.choice(NAMES),
                    phone=f"09{rnd.randint(10_000_000, 99_999_999)}",
                    email=None,
                )
            )
        session.add(
            ReportUpdate(
                report_id=report.id, at=created, kind="created", status="for_triage", public=True, actor="citizen"
            )
        )
        if status != Status.FOR_TRIAGE:
            session.add(
                ReportUpdate(
                    report_id=report.id,
                    at=closed or accepted or created,
                    kind="status",
                    status=status.value,
                    public=True,
                    text=report.status_notes,
                    actor="demo",
                    agency_id=report.agency_id,
                )
            )
        added += 1
    session.flush()
    return added
