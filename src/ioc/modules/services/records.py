"""Dossier and procedure records: validation of one row, the upsert that makes re-imports idempotent.

Every way in (file import, HTTP polling, push API) turns its input into plain ``dict`` rows and
goes through :func:`validate_dossier` / :func:`validate_procedure` and :func:`upsert`: a batch
with any invalid row writes nothing, and a row identical to what is stored changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ioc.core.auth import Agency
from ioc.core.db import utcnow

from .models import CLOSED_STATUSES, Dossier, ImportBatch, Procedure

#: Vietnam has kept +07:00 all year since 1975: a fixed offset needs no tz database.
VN = timezone(timedelta(hours=7), "Asia/Ho_Chi_Minh")
MAX_ERRORS = 200

DOSSIER_FIELDS = (
    "code",
    "procedure_code",
    "procedure_name",
    "agency_id",
    "ward_code",
    "service_level",
    "channel",
    "received_at",
    "due_at",
    "resolved_at",
    "status",
)
PROCEDURE_FIELDS = ("code", "name", "agency_id", "partial_since", "full_since", "valid_from", "valid_to")


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return "_".join(plain.lower().replace("-", " ").replace("/", " ").split())


#: Accepted spellings (accent-folded) of each coded value: English codes, Vietnamese words, old levels.
LEVEL_WORDS = {
    "full": "full",
    "toan_trinh": "full",
    "muc_do_4": "full",
    "level_4": "full",
    "4": "full",
    "partial": "partial",
    "mot_phan": "partial",
    "muc_do_3": "partial",
    "level_3": "partial",
    "3": "partial",
    "direct": "direct",
    "truc_tiep": "direct",
    "khong_truc_tuyen": "direct",
    "2": "direct",
    "1": "direct",
}
CHANNEL_WORDS = {
    "online": "online",
    "truc_tuyen": "online",
    "in_person": "in_person",
    "truc_tiep": "in_person",
    "one_stop": "in_person",
    "mot_cua": "in_person",
    "post": "post",
    "buu_chinh": "post",
    "buu_chinh_cong_ich": "post",
}
STATUS_WORDS = {
    "received": "received",
    "moi_tiep_nhan": "received",
    "da_tiep_nhan": "received",
    "tiep_nhan": "received",
    "in_progress": "in_progress",
    "dang_xu_ly": "in_progress",
    "dang_giai_quyet": "in_progress",
    "resolved": "resolved",
    "da_giai_quyet": "resolved",
    "hoan_thanh": "resolved",
    "da_tra_ket_qua": "resolved",
    "returned": "returned",
    "tra_lai": "returned",
    "khong_du_dieu_kien": "returned",
    "withdrawn": "withdrawn",
    "rut_ho_so": "withdrawn",
    "cong_dan_rut": "withdrawn",
}


class RowError(ValueError):
    """A problem with one field of one row."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.message = message


@dataclass
class Issue:
    """A row-level error: the line in the file (or index in a push), the column, what is wrong."""

    line: int
    column: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "message": self.message}


def _text(row: dict[str, Any], name: str, *, required: bool, max_len: int) -> str | None:
    value = row.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RowError(name, "bắt buộc (required)")
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if "\x00" in text:
        raise RowError(name, "chứa ký tự NUL (NUL character)")
    if len(text) > max_len:
        raise RowError(name, f"dài quá {max_len} ký tự (too long)")
    return text


def parse_instant(value: Any, column: str, *, end_of_day: bool = False) -> datetime | None:
    """A time from ISO 8601, ``dd/mm/yyyy[ HH:MM[:SS]]`` or a spreadsheet value; naive means +07:00.

    A date without a time is the start of that local day, or its last second when ``end_of_day``
    (a due date given as a day is due until the end of it).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime.combine(value, time(23, 59, 59) if end_of_day else time())
    else:
        text = str(value).strip()
        parsed_opt: datetime | None = None
        try:
            parsed_opt = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if len(text) == 10 and end_of_day:
                parsed_opt = parsed_opt.replace(hour=23, minute=59, second=59)
        except ValueError:
            for fmt in ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y"):
                try:
                    parsed_opt = datetime.strptime(text, fmt)
                except ValueError:
                    continue
                if fmt == "%d/%m/%Y" and end_of_day:
                    parsed_opt = parsed_opt.replace(hour=23, minute=59, second=59)
                break
        if parsed_opt is None:
            raise RowError(column, f"thời gian không hợp lệ '{text[:40]}' (expected ISO 8601 or dd/mm/yyyy HH:MM)")
        parsed = parsed_opt
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=VN)
    if not 1990 <= parsed.year <= 2100:
        raise RowError(column, "năm ngoài khoảng 1990–2100 (year out of range)")
    return parsed.astimezone(UTC)


def parse_day(value: Any, column: str) -> date | None:
    """A calendar date from ISO ``yyyy-mm-dd``, ``dd/mm/yyyy`` or a spreadsheet value."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    for fmt in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise RowError(column, f"ngày không hợp lệ '{text[:40]}' (expected yyyy-mm-dd or dd/mm/yyyy)")


def _coded(row: dict[str, Any], name: str, words: dict[str, str], default: str | None = None) -> str:
    raw = _text(row, name, required=default is None, max_len=64)
    if raw is None:
        assert default is not None
        return default
    code = words.get(_fold(raw))
    if code is None:
        allowed = ", ".join(sorted(set(words.values())))
        raise RowError(name, f"giá trị không hợp lệ '{raw}' (allowed: {allowed})")
    return code


def local_day_start(moment: datetime) -> datetime:
    """The UTC instant at which the local (+07:00) day of ``moment`` starts."""
    local = moment.astimezone(VN)
    return datetime.combine(local.date(), time(), VN).astimezone(UTC)


@dataclass
class Reference:
    """What rows are checked against: known agencies and their wards, known ward codes."""

    agencies: dict[str, str | None]
    wards: set[str]

    @classmethod
    def load(cls, session: Session) -> Reference:
        rows = session.execute(select(Agency.id, Agency.ward_code)).all()
        agencies = {r[0]: r[1] for r in rows}
        return cls(agencies, {w for w in agencies.values() if w})


def validate_dossier(row: dict[str, Any], ref: Reference) -> dict[str, Any]:
    """One dossier row, normalised; raises :class:`RowError` at the first bad field."""
    unknown = sorted(k for k in row if k not in DOSSIER_FIELDS and not str(k).startswith("_"))
    if unknown:
        raise RowError(unknown[0], f"cột không được hỗ trợ '{unknown[0]}' (unknown column)")
    code = _text(row, "code", required=True, max_len=64)
    procedure_code = _text(row, "procedure_code", required=True, max_len=64)
    procedure_name = _text(row, "procedure_name", required=False, max_len=500) or ""
    agency_id = _text(row, "agency_id", required=True, max_len=64)
    assert agency_id is not None
    if agency_id not in ref.agencies:
        raise RowError("agency_id", f"cơ quan không tồn tại '{agency_id}' (unknown agency)")
    ward_code = _text(row, "ward_code", required=False, max_len=8) or ref.agencies[agency_id]
    if ward_code is not None and ward_code not in ref.wards:
        raise RowError("ward_code", f"mã phường không thuộc sáu phường '{ward_code}' (unknown ward)")
    level = _coded(row, "service_level", LEVEL_WORDS)
    channel = _coded(row, "channel", CHANNEL_WORDS)
    received_at = parse_instant(row.get("received_at"), "received_at")
    if received_at is None:
        raise RowError("received_at", "bắt buộc (required)")
    due_at = parse_instant(row.get("due_at"), "due_at", end_of_day=True)
    resolved_at = parse_instant(row.get("resolved_at"), "resolved_at")
    status = _coded(row, "status", STATUS_WORDS, default="resolved" if resolved_at else "in_progress")
    if level == "direct" and channel == "online":
        raise RowError("channel", "dịch vụ trực tiếp không nộp trực tuyến (a direct service has no online channel)")
    if due_at is not None and due_at < received_at:
        raise RowError("due_at", "hạn xử lý trước ngày tiếp nhận (due before received)")
    if status in CLOSED_STATUSES and resolved_at is None:
        raise RowError("resolved_at", f"trạng thái '{status}' cần ngày kết thúc (closed dossier needs resolved_at)")
    if status not in CLOSED_STATUSES and resolved_at is not None:
        raise RowError("status", f"trạng thái '{status}' mà đã có ngày kết thúc (open dossier has resolved_at)")
    if resolved_at is not None and resolved_at < received_at:
        raise RowError("resolved_at", "kết thúc trước khi tiếp nhận (resolved before received)")
    if received_at > utcnow() + timedelta(days=1):
        raise RowError("received_at", "ngày tiếp nhận ở tương lai (received in the future)")
    clean = {
        "code": code,
        "procedure_code": procedure_code,
        "procedure_name": procedure_name,
        "agency_id": agency_id,
        "ward_code": ward_code,
        "service_level": level,
        "channel": channel,
        "received_at": received_at,
        "due_at": due_at,
        "resolved_at": resolved_at,
        "status": status,
    }
    clean["due_day_start"] = local_day_start(due_at) if due_at else None
    clean["fingerprint"] = fingerprint(clean, DOSSIER_FIELDS)
    return clean


def validate_procedure(row: dict[str, Any], ref: Reference) -> dict[str, Any]:
    """One catalogue row, normalised; raises :class:`RowError` at the first bad field."""
    unknown = sorted(k for k in row if k not in PROCEDURE_FIELDS and not str(k).startswith("_"))
    if unknown:
        raise RowError(unknown[0], f"cột không được hỗ trợ '{unknown[0]}' (unknown column)")
    agency_id = _text(row, "agency_id", required=False, max_len=64)
    if agency_id is not None and agency_id not in ref.agencies:
        raise RowError("agency_id", f"cơ quan không tồn tại '{agency_id}' (unknown agency)")
    valid_from = parse_day(row.get("valid_from"), "valid_from")
    valid_to = parse_day(row.get("valid_to"), "valid_to")
    if valid_from and valid_to and valid_to <= valid_from:
        raise RowError("valid_to", "hết hiệu lực trước khi có hiệu lực (valid_to before valid_from)")
    clean: dict[str, Any] = {
        "code": _text(row, "code", required=True, max_len=64),
        "name": _text(row, "name", required=True, max_len=500),
        "agency_id": agency_id,
        "partial_since": parse_day(row.get("partial_since"), "partial_since"),
        "full_since": parse_day(row.get("full_since"), "full_since"),
        "valid_from": valid_from,
        "valid_to": valid_to,
    }
    clean["fingerprint"] = fingerprint(clean, PROCEDURE_FIELDS)
    return clean


def fingerprint(clean: dict[str, Any], fields: Sequence[str]) -> str:
    """A digest of a row's content: the same record always gives the same digest."""
    doc = {f: (clean[f].isoformat() if isinstance(clean[f], date) else clean[f]) for f in fields}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass
class Checked:
    """The outcome of validating a batch: clean rows (with their line numbers) or the issues."""

    rows: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    total_issues: int = 0


def check_rows(kind: str, rows: Iterable[tuple[int, dict[str, Any]]], ref: Reference) -> Checked:
    """Validate every row; a duplicated code inside the batch is an error on its second line."""
    validate = validate_dossier if kind == "dossiers" else validate_procedure
    out = Checked()
    seen: dict[str, int] = {}
    for line, row in rows:
        try:
            clean = validate(row, ref)
        except RowError as exc:
            out.total_issues += 1
            if len(out.issues) < MAX_ERRORS:
                out.issues.append(Issue(line, exc.column, exc.message))
            continue
        first = seen.setdefault(clean["code"], line)
        if first != line:
            out.total_issues += 1
            if len(out.issues) < MAX_ERRORS:
                out.issues.append(Issue(line, "code", f"mã '{clean['code']}' trùng với dòng {first} (duplicate code)"))
            continue
        out.rows.append((line, clean))
    return out


@dataclass
class UpsertCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    changed_codes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {"inserted": self.inserted, "updated": self.updated, "unchanged": self.unchanged}


def upsert(
    session: Session,
    kind: str,
    rows: list[tuple[int, dict[str, Any]]],
    *,
    source: str,
    source_ref: str,
) -> UpsertCounts:
    """Insert new records, update changed ones, leave identical ones alone (idempotent).

    ``source_ref`` may contain ``{line}``, filled with each row's line: a record points back
    to the file line (or push index) it last came from.
    """
    model: type[Dossier] | type[Procedure] = Dossier if kind == "dossiers" else Procedure
    counts = UpsertCounts()
    now = utcnow()
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        codes = [clean["code"] for _, clean in chunk]
        existing: dict[str, Any] = (
            {r.code: r for r in session.scalars(select(Dossier).where(Dossier.code.in_(codes)))}
            if kind == "dossiers"
            else {r.code: r for r in session.scalars(select(Procedure).where(Procedure.code.in_(codes)))}
        )
        for line, clean in chunk:
            current = existing.get(clean["code"])
            ref = source_ref.replace("{line}", str(line))
            if current is None:
                values = dict(clean, source_ref=ref, updated_at=now)
                if kind == "dossiers":
                    values["source"] = source
                session.add(model(**values))
                counts.inserted += 1
                counts.changed_codes.append(clean["code"])
            elif current.fingerprint == clean["fingerprint"]:
                counts.unchanged += 1
            else:
                for key, value in clean.items():
                    setattr(current, key, value)
                current.source_ref = ref
                current.updated_at = now
                if kind == "dossiers":
                    current.source = source
                counts.updated += 1
                counts.changed_codes.append(clean["code"])
        session.flush()
    return counts


def record_batch(
    session: Session,
    kind: str,
    source: str,
    counts: UpsertCounts,
    rows: int,
    *,
    filename: str = "",
    sha256: str = "",
    actor: str = "system",
) -> ImportBatch:
    """Log a batch that changed something (kept as the lineage of the records it wrote)."""
    batch = ImportBatch(
        kind=kind,
        source=source,
        filename=filename[:300],
        sha256=sha256,
        rows=rows,
        inserted=counts.inserted,
        updated=counts.updated,
        unchanged=counts.unchanged,
        actor=actor[:200],
        at=utcnow(),
    )
    session.add(batch)
    session.flush()
    return batch
