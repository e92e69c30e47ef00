"""Daily and monthly roll-ups of dossier events, maintained on write, so the monitor never scans raw history.

Each dossier contributes counts to a few **local (+07:00) days**:

* the day it was received ``R``: ``received``, ``online``, ``full`` (toàn trình), ``online_service``
  (online at một phần or toàn trình);
* the day it was closed ``C`` (``resolved_at``): ``closed``; as resolved ``resolved``, ``early``
  (before the local day of the due date), ``late`` (after the due time); otherwise ``closed_other``;
* **interval events** for what is open at a day boundary: a dossier is open at the start of day
  ``E`` when ``R < E <= C`` (``C`` empty: still open). It is open *and overdue* there when also its
  due day ``D < E``, i.e. ``max(R, D) < E <= C``: ``late_open`` on ``max(R, D)``, ``late_close`` on
  ``C`` (only when ``C > max(R, D)``). It is open and due before ``E`` + 48 h when
  ``max(R, D - 2) < E <= C``: ``nearly_open`` / ``nearly_close`` likewise.

So for a period ``[S, E]`` of local days: carried over = Σ before ``S`` of (received − closed);
in progress at its end = carried over + Σ in the period of (received − closed); and when the
evaluation time is the period's end (a past period), the overdue and nearly-due dossiers among
them are the same prefix sums of the interval events. Only a period that has not ended yet (its
evaluation time is *now*, not a day boundary) reads raw rows — the dossiers still open, a narrow
index range.

Rows are kept at two grains (``d`` day, ``m`` month: a year is 12 month rows plus the edge days)
and three levels: ``all`` (no dimension), ``aw`` (agency × ward) and ``apw`` (agency × ward ×
procedure). Every flush of :class:`Dossier` objects, and every ORM bulk insert of dossiers, updates
them in the same transaction; a bulk UPDATE or DELETE of dossiers through the session rebuilds
them; a write that bypasses the session (plain Core on a connection) must call :func:`rebuild`.

Invariant relied upon (enforced by :func:`~.records.validate_dossier`): ``resolved_at >= received_at``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Date,
    Delete,
    Index,
    Insert,
    Integer,
    String,
    Table,
    Update,
    delete,
    event,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, ORMExecuteState, Session, UOWTransaction, mapped_column
from sqlalchemy.orm.base import NO_VALUE

from ioc.core.db import Base

from .models import Dossier

Count = BigInteger().with_variant(Integer(), "sqlite")
LOCAL = timedelta(hours=7)
#: The in-progress "nearly late" window the interval events are kept for (the monitor's default).
NEARLY_DAYS = 2

COUNTERS = (
    "received",
    "online",
    "full",
    "online_service",
    "closed",
    "resolved",
    "early",
    "late",
    "closed_other",
    "late_open",
    "late_close",
    "nearly_open",
    "nearly_close",
)
LEVELS = ("all", "aw", "apw")
KEY = ("level", "grain", "bucket", "agency_id", "ward_code", "procedure_code")
#: Columns a dossier's contribution depends on (a change elsewhere changes no roll-up).
SOURCE_FIELDS = (
    "agency_id",
    "ward_code",
    "procedure_code",
    "service_level",
    "channel",
    "received_at",
    "due_at",
    "due_day_start",
    "resolved_at",
    "status",
)


class DossierRollup(Base):
    """Counts of dossier events per local day (or month), agency, ward and procedure (see the module)."""

    __tablename__ = "svc_dossier_rollups"
    __table_args__ = (Index("ix_svc_dossier_rollups_procedure", "procedure_code", "level", "grain", "bucket"),)

    level: Mapped[str] = mapped_column(String(3), primary_key=True)  # all | aw | apw
    grain: Mapped[str] = mapped_column(String(1), primary_key=True)  # d | m
    bucket: Mapped[date] = mapped_column(Date, primary_key=True)  # the day, or the month's first day
    agency_id: Mapped[str] = mapped_column(String(64), primary_key=True)  # "" at level all
    ward_code: Mapped[str] = mapped_column(String(8), primary_key=True)  # "" at level all, or no ward
    procedure_code: Mapped[str] = mapped_column(String(64), primary_key=True)  # "" below level apw
    received: Mapped[int] = mapped_column(Count, default=0)
    online: Mapped[int] = mapped_column(Count, default=0)
    full: Mapped[int] = mapped_column(Count, default=0)
    online_service: Mapped[int] = mapped_column(Count, default=0)
    closed: Mapped[int] = mapped_column(Count, default=0)
    resolved: Mapped[int] = mapped_column(Count, default=0)
    early: Mapped[int] = mapped_column(Count, default=0)
    late: Mapped[int] = mapped_column(Count, default=0)
    closed_other: Mapped[int] = mapped_column(Count, default=0)
    late_open: Mapped[int] = mapped_column(Count, default=0)
    late_close: Mapped[int] = mapped_column(Count, default=0)
    nearly_open: Mapped[int] = mapped_column(Count, default=0)
    nearly_close: Mapped[int] = mapped_column(Count, default=0)


# --------------------------------------------------------------------------- contributions


def local_day(moment: datetime) -> date:
    """The local (+07:00) calendar day of an instant."""
    if moment.tzinfo is None:  # as read back from SQLite by Core
        moment = moment.replace(tzinfo=UTC)
    return (moment.astimezone(UTC) + LOCAL).date()


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def events(row: Mapping[str, Any]) -> Iterator[tuple[date, str]]:
    """The (local day, counter) pairs one dossier adds 1 to."""
    received_at = _aware(row["received_at"])
    assert received_at is not None
    resolved_at, due_at = _aware(row.get("resolved_at")), _aware(row.get("due_at"))
    due_day_start = _aware(row.get("due_day_start"))
    r = local_day(received_at)
    yield r, "received"
    online = row["channel"] == "online"
    level = row["service_level"]
    if online:
        yield r, "online"
    if level == "full":
        yield r, "full"
    if online and level in ("partial", "full"):
        yield r, "online_service"
    c = local_day(resolved_at) if resolved_at is not None else None
    if c is not None and resolved_at is not None:
        yield c, "closed"
        if row["status"] == "resolved":
            yield c, "resolved"
            if due_day_start is not None and resolved_at < due_day_start:
                yield c, "early"
            if due_at is not None and resolved_at > due_at:
                yield c, "late"
        else:
            yield c, "closed_other"
    if due_at is not None:
        d = local_day(due_at)
        for name, begin in (("late", max(r, d)), ("nearly", max(r, d - timedelta(days=NEARLY_DAYS)))):
            if c is None or c > begin:
                yield begin, f"{name}_open"
                if c is not None:
                    yield c, f"{name}_close"


Deltas = dict[tuple[str, str, date, str, str, str], dict[str, int]]


def add_row(deltas: Deltas, row: Mapping[str, Any], sign: int) -> None:
    """Add (``sign`` = 1) or take away (-1) one dossier's contribution at every level and grain."""
    agency = row["agency_id"] or ""
    ward = row.get("ward_code") or ""
    procedure = row["procedure_code"] or ""
    dims = (("all", "", "", ""), ("aw", agency, ward, ""), ("apw", agency, ward, procedure))
    for day, counter in events(row):
        for grain, bucket in (("d", day), ("m", day.replace(day=1))):
            for level, a, w, p in dims:
                counts = deltas.setdefault((level, grain, bucket, a, w, p), {})
                counts[counter] = counts.get(counter, 0) + sign


def apply(session: Session, deltas: Deltas) -> None:
    """Add the deltas to the stored roll-ups (an atomic upsert per key, keys in a fixed order)."""
    table = DossierRollup.__table__
    assert isinstance(table, Table)
    rows = []
    for key in sorted(deltas):
        counts = deltas[key]
        if not any(counts.values()):
            continue
        values = dict(zip(KEY, key, strict=True))
        values.update({c: counts.get(c, 0) for c in COUNTERS})
        rows.append(values)
    if not rows:
        return
    conn = session.connection()
    dialect = conn.dialect.name
    ins: Any = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    stmt = ins.on_conflict_do_update(index_elements=list(KEY), set_={c: table.c[c] + ins.excluded[c] for c in COUNTERS})
    for i in range(0, len(rows), 5000):
        conn.execute(stmt, rows[i : i + 5000])


def _values(obj: Dossier) -> dict[str, Any]:
    return {f: getattr(obj, f) for f in SOURCE_FIELDS}


def _old_values(obj: Dossier) -> dict[str, Any] | None:
    """The values as loaded from the database (before this flush's changes), or None if unknown."""
    from sqlalchemy import inspect

    state = inspect(obj)
    out = {}
    for f in SOURCE_FIELDS:
        old = state.committed_state[f] if f in state.committed_state else getattr(obj, f)
        if old is NO_VALUE:
            return None
        out[f] = old
    return out


@event.listens_for(Session, "before_flush")
def _on_flush(session: Session, _flush: UOWTransaction, _instances: Any) -> None:
    deltas: Deltas = {}
    stale = False
    for obj in session.new:
        if isinstance(obj, Dossier):
            add_row(deltas, _values(obj), 1)
    for obj in session.dirty:
        if isinstance(obj, Dossier) and session.is_modified(obj):
            old = _old_values(obj)
            if old is None:
                stale = True
                continue
            add_row(deltas, old, -1)
            add_row(deltas, _values(obj), 1)
    for obj in session.deleted:
        if isinstance(obj, Dossier):
            old = _old_values(obj)
            if old is None:
                stale = True
                continue
            add_row(deltas, old, -1)
    if stale:
        session.info["svc_rollups_stale"] = True
    if deltas:
        apply(session, deltas)


@event.listens_for(Session, "after_flush_postexec")
def _after_flush(session: Session, _flush: UOWTransaction) -> None:
    if session.info.pop("svc_rollups_stale", False):
        rebuild(session)


@event.listens_for(Session, "do_orm_execute")
def _on_execute(state: ORMExecuteState) -> Any:
    stmt = state.statement
    if not isinstance(stmt, Insert | Update | Delete) or getattr(stmt.table, "name", None) != Dossier.__tablename__:
        return None
    params = state.parameters
    rows: list[Mapping[str, Any]] | None = None
    if isinstance(stmt, Insert) and not stmt._values and not stmt._multi_values:
        if isinstance(params, Mapping) and params:
            rows = [params]
        elif isinstance(params, list | tuple) and params and all(isinstance(p, Mapping) for p in params):
            rows = list(params)
    result = state.invoke_statement()
    if rows is not None and all("received_at" in r for r in rows):
        deltas: Deltas = {}
        for row in rows:
            add_row(deltas, {f: row.get(f) for f in SOURCE_FIELDS}, 1)
        apply(state.session, deltas)
    else:  # a bulk UPDATE or DELETE (or an INSERT we cannot read): recount everything
        rebuild(state.session)
    return result


def rebuild(session: Session, *, chunk: int = 20_000) -> int:
    """Recompute every roll-up from the dossiers (after writes that bypassed the session); the count read."""
    conn = session.connection()
    conn.execute(delete(DossierRollup))
    columns = [Dossier.__table__.c[f] for f in SOURCE_FIELDS]
    n = 0
    last = -1
    while True:
        batch = conn.execute(
            select(Dossier.__table__.c.id, *columns)
            .where(Dossier.__table__.c.id > last)
            .order_by(Dossier.__table__.c.id)
            .limit(chunk)
        ).all()
        if not batch:
            return n
        deltas: Deltas = {}
        for row in batch:
            add_row(deltas, dict(row._mapping), 1)
        apply(session, deltas)
        n += len(batch)
        last = batch[-1].id


# --------------------------------------------------------------------------- reading


def _month(day: date) -> date:
    return day.replace(day=1)


def _next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def cover(lo: date | None, hi: date) -> list[tuple[str, date | None, date]]:
    """Segments ``(grain, from, to)`` (``to`` exclusive) whose buckets exactly tile the days ``[lo, hi)``:
    whole months at the month grain, the days at either edge at the day grain."""
    first_month = None if lo is None else (lo if lo.day == 1 else _next_month(lo))
    last_month = _month(hi)
    if first_month is not None and first_month >= last_month:
        return [("d", lo, hi)] if lo is not None and lo < hi else []
    out: list[tuple[str, date | None, date]] = []
    if lo is not None and lo < first_month:  # type: ignore[operator]
        out.append(("d", lo, first_month))  # type: ignore[arg-type]
    out.append(("m", first_month, last_month))
    if last_month < hi:
        out.append(("d", last_month, hi))
    return out


@dataclass
class Sums:
    """Summed counters (attribute per counter)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))

    def add(self, row: Any) -> None:
        for c in COUNTERS:
            self.counts[c] += int(getattr(row, c) or 0)

    def __getattr__(self, name: str) -> int:
        try:
            return int(self.__dict__["counts"][name])
        except KeyError as exc:
            raise AttributeError(name) from exc


def level_for(agency_id: str | None, procedure_code: str | None, ward_code: str | None, by: str | None) -> str:
    if procedure_code or by == "procedure":
        return "apw"
    if agency_id or ward_code or by in ("agency", "ward"):
        return "aw"
    return "all"


def sums(
    session: Session,
    lo: date | None,
    hi: date,
    *,
    agency_id: str | None = None,
    procedure_code: str | None = None,
    ward_code: str | None = None,
    by: str | None = None,
) -> dict[str | None, Sums]:
    """The counters summed over the local days ``[lo, hi)`` (``lo`` None: since the beginning), per
    ``by`` (agency | ward | procedure) or under the key None."""
    r = DossierRollup
    level = level_for(agency_id, procedure_code, ward_code, by)
    conds: list[ColumnElement[bool]] = [r.level == level]
    if agency_id:
        conds.append(r.agency_id == agency_id)
    if procedure_code:
        conds.append(r.procedure_code == procedure_code)
    if ward_code:
        conds.append(r.ward_code == ward_code)
    key_col = {"agency": r.agency_id, "ward": r.ward_code, "procedure": r.procedure_code}.get(by or "")
    aggregates = [func.sum(getattr(r, c)).label(c) for c in COUNTERS]
    out: dict[str | None, Sums] = {}
    for grain, a, b in cover(lo, hi):
        where = [*conds, r.grain == grain, r.bucket < b]
        if a is not None:
            where.append(r.bucket >= a)
        if key_col is None:
            stmt = select(*aggregates).where(*where)
            out.setdefault(None, Sums()).add(session.execute(stmt).one())
        else:
            stmt = select(key_col.label("key"), *aggregates).where(*where).group_by(key_col)
            for row in session.execute(stmt):
                key = None if by == "ward" and row.key == "" else row.key
                out.setdefault(key, Sums()).add(row)
    return out
