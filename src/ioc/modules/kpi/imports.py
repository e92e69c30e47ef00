"""Imports of indicator values (CSV, XLSX, API push): every row valid or nothing written; idempotent."""

from __future__ import annotations

import hashlib
import math
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ioc.core import audit
from ioc.core.auth import Agency, Principal
from ioc.core.db import utcnow
from ioc.core.problems import Problem
from ioc.core.tabular import Row, read_table

from .definitions import load_indicators
from .models import IndicatorImport, IndicatorValue
from .periods import parse_period

COLUMNS = ("measure", "period", "ward_code", "value", "note")
MAX_ERRORS = 200
HELP = [
    ("measure", "có", "Mã chỉ tiêu (indicator), ví dụ health.ehr_citizens — xem danh sách ở docs/KPI.md"),
    ("period", "có", "Kỳ: 2026-06 hoặc 06/2026 (tháng), 2026-Q2 (quý), 2026 (năm), 2026-06-30 (một ngày)"),
    ("ward_code", "không", "Mã phường (GSO); để trống = toàn khu vực Vinh"),
    ("value", "có", "Giá trị số (dấu thập phân là dấu chấm), không âm"),
    ("note", "không", "Ghi chú, nguồn số liệu"),
]


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("không phải số")
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = str(value).strip().replace(" ", "")
        if "," in text and "." not in text:
            text = text.replace(",", ".")
        number = float(text)
    if not math.isfinite(number) or number < 0:
        raise ValueError("phải là số hữu hạn, không âm (finite, not negative)")
    return number


def check(session: Session, rows: list[Row]) -> tuple[list[tuple[int, dict[str, Any]]], list[dict[str, Any]], int]:
    """Clean rows, the first row-level errors (line, column, message) and how many errors in all."""
    indicators = load_indicators()
    wards = {w for w in session.scalars(select(Agency.ward_code).where(Agency.ward_code.is_not(None))) if w}
    clean: list[tuple[int, dict[str, Any]]] = []
    errors: list[dict[str, Any]] = []
    total = 0
    seen: dict[tuple[str, Any, Any, str], int] = {}

    def fail(line: int, column: str, message: str) -> None:
        nonlocal total
        total += 1
        if len(errors) < MAX_ERRORS:
            errors.append({"line": line, "column": column, "message": message})

    for line, row in rows:
        unknown = [k for k in row if k not in COLUMNS]
        if unknown:
            fail(line, unknown[0], f"cột không được hỗ trợ '{unknown[0]}' (unknown column)")
            continue
        measure = str(row.get("measure") or "").strip()
        if measure not in indicators:
            fail(line, "measure", f"chỉ tiêu không có trong danh mục '{measure[:60]}' (unknown indicator)")
            continue
        try:
            period = parse_period(str(row.get("period") or ""))
        except ValueError as exc:
            fail(line, "period", str(exc))
            continue
        ward = str(row.get("ward_code") or "").strip()
        if ward and ward not in wards:
            fail(line, "ward_code", f"mã phường không thuộc sáu phường '{ward[:10]}' (unknown ward)")
            continue
        raw = row.get("value")
        if raw is None or str(raw).strip() == "":
            fail(line, "value", "bắt buộc (required)")
            continue
        try:
            value = _number(raw)
        except ValueError as exc:
            fail(line, "value", f"giá trị không hợp lệ '{str(raw)[:30]}': {exc}")
            continue
        note = str(row.get("note") or "").strip()
        if "\x00" in note or len(note) > 500:
            fail(line, "note", "ghi chú quá dài hoặc có ký tự NUL (note too long or NUL)")
            continue
        key = (measure, period.start, period.end, ward)
        if key in seen:
            fail(line, "period", f"trùng với dòng {seen[key]} (same indicator, period and ward)")
            continue
        seen[key] = line
        clean.append(
            (
                line,
                {
                    "measure": measure,
                    "period_start": period.start,
                    "period_end": period.end,
                    "ward_code": ward,
                    "value": value,
                    "note": note,
                },
            )
        )
    return clean, errors, total


def apply(
    session: Session,
    principal: Principal | None,
    rows: list[Row],
    *,
    source: str,
    filename: str = "",
    sha256: str = "",
) -> dict[str, Any]:
    """Validate then upsert indicator values; 422 with every bad line when any is wrong (nothing written)."""
    if not rows:
        raise Problem(422, "Không có dòng dữ liệu nào (no data rows).", code="empty-file")
    clean, errors, total = check(session, rows)
    if errors:
        first = errors[0]
        raise Problem(
            422,
            f"{total} dòng không hợp lệ, không ghi dữ liệu nào (invalid rows, nothing written); "
            f"dòng {first['line']}, cột '{first['column']}': {first['message']}",
            code="invalid-rows",
            error_count=total,
            errors=errors,
        )
    batch = IndicatorImport(
        source=source,
        filename=filename[:300],
        sha256=sha256,
        rows=len(rows),
        actor=principal.name if principal else "system",
        at=utcnow(),
    )
    session.add(batch)
    session.flush()
    iv = IndicatorValue
    inserted = updated = unchanged = 0
    touched: set[str] = set()
    now = utcnow()
    for line, item in clean:
        row = session.scalar(
            select(iv).where(
                iv.measure == item["measure"],
                iv.period_start == item["period_start"],
                iv.period_end == item["period_end"],
                iv.ward_code == item["ward_code"],
            )
        )
        if row is None:
            session.add(iv(**item, import_id=batch.id, line=line, updated_at=now))
            inserted += 1
            touched.add(item["measure"])
        elif row.value == item["value"] and row.note == item["note"]:
            unchanged += 1
        else:
            row.value, row.note, row.import_id, row.line, row.updated_at = (
                item["value"],
                item["note"],
                batch.id,
                line,
                now,
            )
            updated += 1
            touched.add(item["measure"])
    counts = {"rows": len(rows), "inserted": inserted, "updated": updated, "unchanged": unchanged}
    if not (inserted or updated):
        session.execute(delete(IndicatorImport).where(IndicatorImport.id == batch.id))
        session.expunge(batch)
        return {**counts, "import_id": None, "measures": []}
    batch.inserted, batch.updated, batch.unchanged = inserted, updated, unchanged
    session.flush()
    audit.record(
        session,
        principal,
        f"kpi.import.{source}",
        "kpi_import",
        batch.id,
        after={"filename": filename, "sha256": sha256, **counts},
    )
    return {**counts, "import_id": batch.id, "measures": sorted(touched)}


def import_file(
    session: Session, principal: Principal | None, filename: str, content: bytes, source: str = "file"
) -> dict[str, Any]:
    """Import a CSV or XLSX file of indicator values (see :func:`apply`)."""
    return apply(
        session,
        principal,
        read_table(filename, content),
        source=source,
        filename=filename,
        sha256=hashlib.sha256(content).hexdigest(),
    )
