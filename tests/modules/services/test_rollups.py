"""The roll-ups give exactly what a raw recomputation over the dossiers gives, for any period.

The reference below is the monitor as it was computed before the roll-ups: conditional counts over
every dossier relevant to the period. Random dossiers (times snapped to local midnights and due
times now and then, to hit every boundary), written every way the module writes them (ORM adds,
updates and deletes; ORM bulk insert; a bulk UPDATE through the session), are compared over many
random periods, evaluation times, windows, filters and breakdowns.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from ioc.core.db import Database
from ioc.modules.services import rollups
from ioc.modules.services.models import Dossier
from ioc.modules.services.monitor import MEASURES, day_bounds, dossier_monitor, monitor_breakdown
from ioc.modules.services.records import VN, Reference, validate_dossier
from ioc.modules.services.rollups import DossierRollup

AGENCIES = {"ubnd-thanh-vinh": "16681", "ubnd-truong-vinh": "16690", "so-xay-dung": None}
PROCEDURES = ("1.001193", "1.004227", "2.000889")
FIRST = date(2025, 10, 1)
DAYS = 150

# --------------------------------------------------------------------------- the raw reference


def _sum(cond: ColumnElement[bool]) -> Any:
    return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)


def _raw_rows(
    session: Session, start: date, end: date, now: datetime, hours: int, by: str | None, filters: dict[str, Any]
) -> dict[Any, dict[str, int]]:
    d = Dossier
    s, e = day_bounds(start, end)
    t = min(e, now)
    nearly = timedelta(hours=hours)
    in_period = and_(d.received_at >= s, d.received_at < e)
    closed_in = and_(d.resolved_at.is_not(None), d.resolved_at >= s, d.resolved_at < e)
    resolved = and_(closed_in, d.status == "resolved")
    open_at_end = or_(d.resolved_at.is_(None), d.resolved_at >= e)
    columns = [
        _sum(in_period).label("received"),
        _sum(d.received_at < s).label("carried_over"),
        _sum(resolved).label("resolved"),
        _sum(and_(resolved, d.due_day_start.is_not(None), d.resolved_at < d.due_day_start)).label("early"),
        _sum(and_(resolved, d.due_at.is_not(None), d.resolved_at > d.due_at)).label("late"),
        _sum(and_(closed_in, d.status != "resolved")).label("closed_other"),
        _sum(open_at_end).label("pending"),
        _sum(and_(open_at_end, d.due_at.is_not(None), d.due_at < t)).label("pending_late"),
        _sum(and_(open_at_end, d.due_at.is_not(None), d.due_at >= t, d.due_at < t + nearly)).label("pending_nearly"),
        _sum(and_(in_period, d.channel == "online")).label("online"),
        _sum(and_(in_period, d.service_level == "full")).label("full"),
        _sum(and_(in_period, d.channel == "online", d.service_level.in_(("partial", "full")))).label("online_service"),
    ]
    relevant = or_(
        and_(d.received_at >= s, d.received_at < e),
        and_(d.received_at < s, or_(d.resolved_at.is_(None), d.resolved_at >= s)),
    )
    where = [relevant, *(getattr(d, k) == v for k, v in filters.items() if v)]
    key = {"agency": d.agency_id, "ward": d.ward_code, "procedure": d.procedure_code}.get(by or "")
    if key is None:
        row = session.execute(select(*columns).where(*where)).one()
        return {None: dict(row._mapping)}
    rows = session.execute(select(key.label("key"), *columns).where(*where).group_by(key))
    return {r.key: {k: v for k, v in r._mapping.items() if k != "key"} for r in rows}


def _figures(m: Any) -> dict[str, int]:
    return {
        "received": m.received,
        "carried_over": m.carried_over,
        "resolved": m.resolved.total,
        "early": m.resolved.early,
        "late": m.resolved.late,
        "closed_other": m.closed_other,
        "pending": m.in_progress.total,
        "pending_late": m.in_progress.late,
        "pending_nearly": m.in_progress.nearly_late,
        "online": m.received_online,
        "full": m.received_full,
        "online_service": m.received_online_service,
    }


# --------------------------------------------------------------------------- random dossiers


def _instant(rng: random.Random, day: date) -> datetime:
    roll = rng.random()
    if roll < 0.15:  # a local midnight
        local = datetime.combine(day, time(), VN)
    elif roll < 0.25:  # the last second of a local day
        local = datetime.combine(day, time(23, 59, 59), VN)
    else:
        local = datetime.combine(day, time(), VN) + timedelta(minutes=rng.randrange(24 * 60))
    return local.astimezone(UTC)


def _dossier(rng: random.Random, code: str) -> dict[str, Any]:
    agency = rng.choice(list(AGENCIES))
    received = _instant(rng, FIRST + timedelta(days=rng.randrange(DAYS)))
    due: datetime | None = None
    if rng.random() < 0.85:
        due = _instant(rng, (received.astimezone(VN) + timedelta(days=rng.randrange(0, 15))).date())
        if due < received:
            due = received + timedelta(hours=rng.choice((0, 1, 48)))
    resolved: datetime | None = None
    if rng.random() < 0.75:
        pick = rng.random()
        if due is not None and pick < 0.2:
            resolved = due + timedelta(seconds=rng.choice((-1, 0, 1)))  # right at the deadline
        else:
            resolved = _instant(rng, (received.astimezone(VN) + timedelta(days=rng.randrange(0, 25))).date())
        if resolved < received:
            resolved = received
    online = rng.random() < 0.5
    status = (
        rng.choice(("resolved", "resolved", "resolved", "returned", "withdrawn"))
        if resolved
        else rng.choice(("received", "in_progress"))
    )
    return {
        "code": code,
        "procedure_code": rng.choice(PROCEDURES),
        "procedure_name": "",
        "agency_id": agency,
        "ward_code": AGENCIES[agency] or rng.choice(("16681", "16690", "16702")),
        "service_level": rng.choice(("full", "partial")) if online else rng.choice(("direct", "partial")),
        "channel": "online" if online else rng.choice(("in_person", "post")),
        "received_at": received,
        "due_at": due,
        "resolved_at": resolved,
        "status": status,
    }


def _stored(session: Session) -> dict[tuple[Any, ...], tuple[int, ...]]:
    r = DossierRollup
    rows = session.execute(
        select(
            r.level,
            r.grain,
            r.bucket,
            r.agency_id,
            r.ward_code,
            r.procedure_code,
            *[getattr(r, c) for c in rollups.COUNTERS],
        )
    )
    return {tuple(row[:6]): tuple(row[6:]) for row in rows if any(row[6:])}


def _write(db: Database, rng: random.Random) -> None:
    with db.session() as s:
        ref = Reference.load(s)
        for i in range(260):  # ORM adds, as imports and pushes do
            s.add(Dossier(**validate_dossier(_dossier(rng, f"A{i}"), ref), source="import", source_ref="t"))
    with db.session() as s:  # ORM bulk insert, as the demo seeder does
        rows = [dict(validate_dossier(_dossier(rng, f"B{i}"), ref), source="demo", source_ref="t") for i in range(140)]
        s.execute(insert(Dossier), rows)
    with db.session() as s:  # updates (an import of changed records), then deletes
        for obj in s.scalars(select(Dossier).where(Dossier.code.like("A1%"))):
            fresh = validate_dossier(_dossier(rng, obj.code), ref)
            for key in ("received_at", "due_at", "due_day_start", "resolved_at", "status", "channel", "service_level"):
                setattr(obj, key, fresh[key])
            if rng.random() < 0.3:
                obj.ward_code = "16702"
        for obj in s.scalars(select(Dossier).where(Dossier.code.like("B2%"))):
            s.delete(obj)
    with db.session() as s:  # a bulk UPDATE through the session: recounted
        s.execute(update(Dossier).where(Dossier.code.like("A2%")).values(procedure_code="9.999999"))


# --------------------------------------------------------------------------- tests


def test_rollups_equal_a_raw_recount_for_random_periods(db: Database) -> None:
    rng = random.Random(20251001)
    _write(db, rng)
    with db.session() as s:
        incremental = _stored(s)
        rollups.rebuild(s)
        assert _stored(s) == incremental  # maintained on write == rebuilt from scratch
    checked = 0
    with db.session() as s:
        for _ in range(70):
            start = FIRST - timedelta(days=20) + timedelta(days=rng.randrange(DAYS + 30))
            end = start + timedelta(days=rng.choice((0, 1, 6, 30, 45, 90, 200)))
            s_, e_ = day_bounds(start, end)
            now = rng.choice(
                (
                    e_ + timedelta(days=3),  # a past period
                    e_,
                    s_ + (e_ - s_) * rng.random(),  # a running period
                    datetime.combine(start + timedelta(days=1), time(), VN).astimezone(UTC),
                )
            )
            hours = rng.choice((48, 48, 24, 36, 72))
            agency, procedure, ward = (
                rng.choice((None, None, *AGENCIES)),
                rng.choice((None, None, None, *PROCEDURES, "9.999999")),
                rng.choice((None, None, "16681", "16702")),
            )
            filters: dict[str, Any] = {"agency_id": agency, "procedure_code": procedure, "ward_code": ward}
            m = dossier_monitor(s, start, end, now=now, nearly_late_hours=hours, **filters)
            raw = _raw_rows(s, start, end, now, hours, None, filters)[None]
            assert _figures(m) == raw, (start, end, now, hours, filters)
            assert m.to_handle == m.resolved.total + m.closed_other + m.in_progress.total
            by = rng.choice(("agency", "ward", "procedure"))
            got = {
                b.key: _figures(b)
                for b in monitor_breakdown(s, start, end, by, now=now, nearly_late_hours=hours, **filters)
            }
            assert got == _raw_rows(s, start, end, now, hours, by, filters), (start, end, now, hours, by, filters)
            checked += 1
    assert checked == 70


def test_kpi_measures_equal_raw_counts(db: Database) -> None:
    rng = random.Random(7)
    _write(db, rng)
    d = Dossier
    with db.session() as s:
        for _ in range(25):
            start = FIRST + timedelta(days=rng.randrange(DAYS))
            end = start + timedelta(days=rng.choice((0, 30, 91)))
            ward = rng.choice((None, "16681", "16702"))
            lo, hi = day_bounds(start, end)
            where = [*([d.ward_code == ward] if ward else [])]
            got = {name: fn(s, start, end, ward) for name, (fn, _unit) in MEASURES.items() if "dossiers" in name}

            def count(*conds: ColumnElement[bool], where: list[ColumnElement[bool]] = where) -> float:
                return float(s.scalar(select(func.count()).select_from(d).where(*where, *conds)) or 0)

            received = [d.received_at >= lo, d.received_at < hi]
            closed = [d.resolved_at >= lo, d.resolved_at < hi, d.status == "resolved"]
            assert got == {
                "services.dossiers_received": count(*received),
                "services.dossiers_online_service": count(
                    *received, d.channel == "online", d.service_level.in_(("partial", "full"))
                ),
                "services.dossiers_full": count(*received, d.service_level == "full"),
                "services.dossiers_resolved": count(*closed),
                "services.dossiers_resolved_on_time": count(
                    *closed, or_(d.due_at.is_(None), d.resolved_at <= d.due_at)
                ),
            }


def test_rebuild_after_writes_that_bypass_the_session(db: Database) -> None:
    rng = random.Random(3)
    with db.session() as s:
        ref = Reference.load(s)
        rows = [dict(validate_dossier(_dossier(rng, f"C{i}"), ref), source="poll", source_ref="t") for i in range(50)]
    with db.engine.begin() as conn:  # plain Core on a connection: no session event sees it
        conn.execute(insert(Dossier), rows)
    with db.session() as s:
        assert rollups.rebuild(s) == 50
        m = dossier_monitor(s, FIRST, FIRST + timedelta(days=DAYS), now=datetime(2030, 1, 1, tzinfo=UTC))
        assert m.received == 50 and m.to_handle == 50
    with db.session() as s:
        s.execute(delete(Dossier))  # a bulk DELETE through the session: recounted
        assert _stored(s) == {}
