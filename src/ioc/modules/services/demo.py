"""Demo data: Vinh's procedure catalogue and a year of dossiers in the six wards and the departments."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from ioc.core.db import utcnow

from .models import Dossier, Procedure
from .records import DOSSIER_FIELDS, VN, fingerprint, local_day_start

WARD_AGENCIES = {
    "ubnd-thanh-vinh": "16681",
    "ubnd-truong-vinh": "16690",
    "ubnd-vinh-phu": "16702",
    "ubnd-vinh-loc": "16708",
    "ubnd-cua-lo": "16732",
    "ubnd-vinh-hung": "17920",
}
#: (code, name, agency or "ward", working days allowed, relative volume)
PROCEDURES: list[tuple[str, str, str, int, int]] = [
    ("1.001193", "Đăng ký khai sinh", "ward", 1, 30),
    ("1.000894", "Đăng ký kết hôn", "ward", 1, 8),
    ("1.000656", "Đăng ký khai tử", "ward", 1, 5),
    ("2.000908", "Chứng thực bản sao từ bản chính giấy tờ, văn bản", "ward", 1, 60),
    ("2.000884", "Chứng thực chữ ký trong các giấy tờ, văn bản", "ward", 1, 25),
    ("1.004227", "Cấp bản sao trích lục hộ tịch", "ward", 1, 12),
    ("1.001022", "Đăng ký thay đổi, cải chính, bổ sung thông tin hộ tịch", "ward", 3, 4),
    ("1.000689", "Xác nhận tình trạng hôn nhân", "ward", 3, 10),
    ("2.001263", "Đăng ký hộ kinh doanh", "ward", 3, 9),
    ("2.001266", "Đăng ký thay đổi nội dung đăng ký hộ kinh doanh", "ward", 3, 4),
    ("1.011608", "Cấp giấy phép xây dựng nhà ở riêng lẻ", "ward", 15, 6),
    ("1.012817", "Đăng ký đất đai, tài sản gắn liền với đất lần đầu", "ward", 20, 5),
    ("1.004873", "Đăng ký biến động quyền sử dụng đất", "ward", 10, 8),
    ("1.003608", "Hỗ trợ chi phí mai táng cho đối tượng bảo trợ xã hội", "ward", 5, 2),
    ("1.001776", "Trợ cấp xã hội hằng tháng", "ward", 10, 3),
    ("1.010938", "Cấp giấy xác nhận thông tin về cư trú", "ward", 3, 7),
    ("2.002226", "Đăng ký bảo hộ lao động cho người làm việc tại hộ gia đình", "ward", 7, 1),
    ("1.008004", "Cấp phép sử dụng tạm thời hè phố", "ward", 5, 2),
    ("1.009972", "Cấp giấy phép xây dựng công trình", "so-xay-dung", 20, 2),
    ("1.009974", "Cấp giấy phép sửa chữa, cải tạo công trình", "so-xay-dung", 15, 1),
    ("1.009794", "Thẩm định báo cáo nghiên cứu khả thi đầu tư xây dựng", "so-xay-dung", 30, 1),
    ("1.011477", "Cấp chứng chỉ hành nghề hoạt động xây dựng", "so-xay-dung", 20, 1),
    ("1.004236", "Cấp giấy phép môi trường", "so-nnmt", 30, 1),
    ("1.010727", "Đăng ký môi trường", "so-nnmt", 10, 1),
    ("1.004283", "Cấp giấy phép khai thác nước dưới đất", "so-nnmt", 30, 1),
    ("1.000778", "Giao đất, cho thuê đất", "so-nnmt", 20, 1),
    ("1.002256", "Cấp chứng chỉ hành nghề khám bệnh, chữa bệnh", "so-y-te", 20, 2),
    ("1.003005", "Cấp giấy phép hoạt động phòng khám tư nhân", "so-y-te", 30, 1),
    ("1.004614", "Cấp giấy chứng nhận đủ điều kiện kinh doanh dược (nhà thuốc)", "so-y-te", 20, 2),
    ("1.005092", "Xác nhận nội dung quảng cáo thực phẩm", "so-y-te", 10, 1),
    ("1.005120", "Cấp phép thành lập trường mầm non tư thục", "so-gddt", 20, 1),
    ("1.004894", "Cấp bản sao văn bằng, chứng chỉ từ sổ gốc", "so-gddt", 3, 3),
    ("1.005088", "Công nhận trường đạt chuẩn quốc gia", "so-gddt", 30, 1),
    ("1.003654", "Cấp giấy phép kinh doanh dịch vụ lữ hành nội địa", "so-vhttdl", 10, 1),
    ("1.004628", "Công nhận cơ sở lưu trú du lịch hạng sao", "so-vhttdl", 30, 1),
    ("1.001029", "Cấp giấy phép tổ chức lễ hội", "so-vhttdl", 15, 1),
    ("1.008366", "Cấp giấy phép sử dụng tần số vô tuyến điện nghiệp dư", "so-khcn", 10, 1),
    ("1.002459", "Đăng ký hợp đồng chuyển giao công nghệ", "so-khcn", 15, 1),
    ("2.001159", "Cấp căn cước", "cong-an-tinh", 7, 20),
    ("1.001612", "Đăng ký, cấp biển số xe", "cong-an-tinh", 2, 15),
]
DOSSIERS_PER_DAY = 90


def _months_back(today: date, n: int) -> date:
    year, month = today.year, today.month - n
    while month <= 0:
        month += 12
        year -= 1
    return date(year, month, 1)


def _add_working_days(day: date, n: int) -> date:
    while n > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            n -= 1
    return day


def seed_demo(session: Session, *, today: date | None = None, per_day: int = DOSSIERS_PER_DAY) -> int:
    """A procedure catalogue that goes online step by step and a year of dossiers (idempotent)."""
    if session.scalar(select(func.count()).select_from(Dossier).where(Dossier.source == "demo")):
        return 0
    rng = random.Random(2025)  # noqa: S311 - reproducible demo data, not security
    today = today or utcnow().astimezone(VN).date()
    start = _months_back(today, 12)
    span = (today - start).days
    for index, (code, name, agency, _days, _weight) in enumerate(PROCEDURES):
        # Early adopters went online before the demo year; the rest one by one during it.
        partial = start - timedelta(days=400) if index % 10 < 7 else start + timedelta(days=(index * 37) % span)
        full = (
            start - timedelta(days=200)
            if index % 10 < 3
            else (start + timedelta(days=(index * 53) % span) if index % 10 < 5 else None)
        )
        row: dict[str, Any] = {
            "code": code,
            "name": name,
            "agency_id": None if agency == "ward" else agency,
            "partial_since": partial if index % 10 != 9 else None,
            "full_since": full,
            "valid_from": date(2020, 1, 1),
            "valid_to": None,
        }
        row["fingerprint"] = fingerprint(row, tuple(k for k in row if k != "fingerprint"))
        session.add(Procedure(**row, source_ref="demo", updated_at=utcnow()))
    session.flush()
    procedures = {code: (code, name, agency, days, weight) for code, name, agency, days, weight in PROCEDURES}
    catalogue = {p.code: p for p in session.scalars(select(Procedure))}
    weights = [p[4] for p in PROCEDURES]
    now = utcnow()
    rows: list[dict[str, Any]] = []
    serial = 0
    for offset in range(span + 1):
        day = start + timedelta(days=offset)
        if day.weekday() == 6:
            continue
        progress = offset / max(span, 1)
        count = per_day // 3 if day.weekday() == 5 else per_day
        for _ in range(rng.randint(int(count * 0.8), int(count * 1.2))):
            code, name, agency, days, _w = procedures[rng.choices(list(procedures), weights)[0]]
            proc = catalogue[code]
            if agency == "ward":
                agency = rng.choice(list(WARD_AGENCIES))
            ward = WARD_AGENCIES.get(agency) or rng.choice(list(WARD_AGENCIES.values()))
            is_full = proc.full_since is not None and proc.full_since <= day
            is_partial = is_full or (proc.partial_since is not None and proc.partial_since <= day)
            online = rng.random() < (0.35 + 0.35 * progress if is_partial else 0.0)
            level = "full" if is_full and online else "partial" if is_partial and online else "direct"
            channel = "online" if online else ("post" if rng.random() < 0.05 else "in_person")
            received = datetime.combine(day, time(7, 30), VN) + timedelta(minutes=rng.randint(0, 540))
            due = datetime.combine(_add_working_days(day, days), time(17, 0), VN)
            # Most resolve early or on time; a few late; the latest ones still in progress.
            roll = rng.random()
            if roll < 0.55:
                resolved: datetime | None = received + (due - received) * rng.uniform(0.2, 0.9)
            elif roll < 0.88:
                resolved = due - timedelta(minutes=rng.randint(10, 400))
            elif roll < 0.97 or day < today - timedelta(days=45):
                resolved = due + timedelta(hours=rng.randint(2, 24 * 6))
            else:
                resolved = None
            status = "in_progress"
            if resolved is not None and resolved.astimezone(UTC) > now:
                resolved = None
            if resolved is not None:
                status = "withdrawn" if rng.random() < 0.01 else "resolved"
            serial += 1
            clean: dict[str, Any] = {
                "code": f"H{day:%y%m%d}-{serial:06d}",
                "procedure_code": code,
                "procedure_name": name,
                "agency_id": agency,
                "ward_code": ward,
                "service_level": level,
                "channel": channel,
                "received_at": received.astimezone(UTC),
                "due_at": due.astimezone(UTC),
                "resolved_at": resolved.astimezone(UTC) if resolved else None,
                "status": status,
            }
            clean["due_day_start"] = local_day_start(clean["due_at"])
            clean["fingerprint"] = fingerprint(clean, DOSSIER_FIELDS)
            rows.append(dict(clean, source="demo", source_ref="demo", updated_at=now))
    for i in range(0, len(rows), 2000):
        session.execute(insert(Dossier), rows[i : i + 2000])
    session.flush()
    return len(rows)
