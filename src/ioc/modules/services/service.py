"""Imports and pushes of dossier and procedure records: all or nothing, idempotent, audited."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from ioc.core import audit
from ioc.core.auth import Principal
from ioc.core.problems import Problem
from ioc.core.tabular import Row, read_table

from .models import ImportBatch
from .records import (
    DOSSIER_FIELDS,
    PROCEDURE_FIELDS,
    Checked,
    Reference,
    UpsertCounts,
    check_rows,
    record_batch,
    upsert,
)
from .schemas import ImportResult

KINDS = ("dossiers", "procedures")

DOSSIER_HELP = [
    ("code", "có", "Mã hồ sơ, duy nhất (dossier code, unique) — khoá để nhập lại không tạo bản trùng"),
    ("procedure_code", "có", "Mã thủ tục hành chính (procedure code, e.g. 1.001234)"),
    ("procedure_name", "không", "Tên thủ tục (procedure name)"),
    ("agency_id", "có", "Mã cơ quan giải quyết: so-… hoặc ubnd-… (agency id)"),
    (
        "ward_code",
        "không",
        "Mã phường (GSO) — mặc định là phường của UBND phường; 16681, 16690, 16702, 16708, 16732, 17920",
    ),
    ("service_level", "có", "toàn trình | một phần | trực tiếp (full | partial | direct; old levels 4 | 3 | 2)"),
    ("channel", "có", "trực tuyến | trực tiếp | bưu chính (online | in_person | post)"),
    ("received_at", "có", "Ngày giờ tiếp nhận: 2025-06-02 08:30 hoặc 02/06/2025 08:30 (giờ Việt Nam)"),
    ("due_at", "không", "Hạn xử lý (ngày không giờ = hết ngày đó)"),
    ("resolved_at", "không", "Ngày giờ giải quyết xong / trả lại / rút"),
    (
        "status",
        "không",
        "đang xử lý | đã giải quyết | trả lại | rút hồ sơ (in_progress | resolved | returned | withdrawn)",
    ),
]
PROCEDURE_HELP = [
    ("code", "có", "Mã thủ tục hành chính (procedure code)"),
    ("name", "có", "Tên thủ tục (name)"),
    ("agency_id", "không", "Cơ quan thực hiện (agency id)"),
    ("partial_since", "không", "Cung cấp trực tuyến một phần (mức độ 3) từ ngày (yyyy-mm-dd)"),
    ("full_since", "không", "Cung cấp trực tuyến toàn trình (mức độ 4) từ ngày (yyyy-mm-dd)"),
    ("valid_from", "không", "Có hiệu lực từ ngày"),
    ("valid_to", "không", "Hết hiệu lực từ ngày (bãi bỏ)"),
]


def columns(kind: str) -> tuple[str, ...]:
    return DOSSIER_FIELDS if kind == "dossiers" else PROCEDURE_FIELDS


def _refuse(checked: Checked) -> Problem:
    first = checked.issues[0]
    return Problem(
        422,
        f"{checked.total_issues} dòng không hợp lệ, không ghi dữ liệu nào (invalid rows, nothing written); "
        f"dòng {first.line}, cột '{first.column}': {first.message}",
        code="invalid-rows",
        error_count=checked.total_issues,
        errors=[i.as_dict() for i in checked.issues],
    )


def _scope(principal: Principal, checked: Checked, kind: str) -> None:
    """An agency-bound key or officer may only write its own agency's (or ward's) dossiers."""
    if kind != "dossiers" or not principal.scoped:
        return
    for line, row in checked.rows:
        if not principal.can_access(ward_code=row["ward_code"], agency_id=row["agency_id"]):
            raise Problem(
                403,
                f"Dòng {line}: hồ sơ của '{row['agency_id']}' ngoài phạm vi của bạn (outside your remit).",
                code="out-of-remit",
                errors=[{"line": line, "column": "agency_id", "message": "outside your remit"}],
            )


def apply_rows(
    session: Session,
    principal: Principal,
    kind: str,
    rows: list[Row],
    *,
    source: str,
    filename: str = "",
    sha256: str = "",
) -> ImportResult:
    """Validate every row, then write them all — or nothing, with the row-level errors (422)."""
    if kind not in KINDS:
        raise Problem(422, f"Loại dữ liệu không hợp lệ '{kind}' (kind: dossiers | procedures).", code="bad-kind")
    if not rows:
        raise Problem(422, "Không có dòng dữ liệu nào (no data rows).", code="empty-file")
    checked = check_rows(kind, rows, Reference.load(session))
    if checked.issues:
        raise _refuse(checked)
    _scope(principal, checked, kind)
    batch = record_batch(
        session, kind, source, UpsertCounts(), len(rows), filename=filename, sha256=sha256, actor=principal.name
    )
    where = "line" if source == "file" else "item"
    counts = upsert(
        session,
        kind,
        checked.rows,
        source="import" if source == "file" else source,
        source_ref=f"{source}:{batch.id}:{where} {{line}}",
    )
    if not (counts.inserted or counts.updated):
        session.execute(delete(ImportBatch).where(ImportBatch.id == batch.id))
        session.expunge(batch)
        return ImportResult(kind=kind, rows=len(rows), import_id=None, **counts.as_dict())
    batch.inserted, batch.updated, batch.unchanged = counts.inserted, counts.updated, counts.unchanged
    audit.record(
        session,
        principal,
        f"services.{source}",
        "import",
        batch.id,
        after={"kind": kind, "filename": filename, "sha256": sha256, "rows": len(rows), **counts.as_dict()},
    )
    return ImportResult(kind=kind, rows=len(rows), import_id=batch.id, **counts.as_dict())


def import_file(session: Session, principal: Principal, kind: str, filename: str, content: bytes) -> ImportResult:
    """Import a CSV or XLSX file of dossiers or procedures (see :func:`apply_rows`)."""
    rows = read_table(filename, content)
    sha = hashlib.sha256(content).hexdigest()
    return apply_rows(session, principal, kind, rows, source="file", filename=filename, sha256=sha)


def push(session: Session, principal: Principal, records: list[dict[str, Any]]) -> ImportResult:
    """Dossiers pushed through the API; errors name the item (1-based) in ``line``."""
    rows = [(i + 1, r) for i, r in enumerate(records)]
    return apply_rows(session, principal, "dossiers", rows, source="push")
