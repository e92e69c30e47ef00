"""The KPI wall and the dossier monitor over 1,000,000 dossiers and 1,000,000 citizen reports (SQLite).

Setup (not timed): a migrated throw-away database; 1,000,000 dossiers over four years bulk-inserted
with the services module's columns; the demo indicator imports; 1,000,000 rows in the reports
module's ``reports`` table when that table exists (filled through the shared metadata: the bench
imports no module code for it); then the stored KPI history, as the scheduler keeps it.

Timed, each from a cold start of the query (a new engine and connection, no in-process cache):
* ``kpi_wall_cold_ms``: what ``GET /api/v1/kpis`` computes — every KPI's current period computed
  live from the registered measures, its stored history, trend and status (median of 3);
* ``dossier_monitor_year_ms``: the monitor of the last 365 days (median of 3);
* ``kpi_recompute_all_ms``: for information, recomputing and storing 12 periods of every KPI.

Baselines in the same run, for before/after comparison (the computations the roll-ups replaced):
* ``dossier_monitor_year_raw_ms``: the same monitor by conditional counts over the raw dossiers;
* ``reports_rates_rowload_ms``: the two reports rates of the current month by loading every closed
  report of the month into Python (how ``reports.on_time_rate``/``satisfaction_rate`` were computed);
* ``rollup_rebuild_s``: rebuilding the dossier roll-ups from the 1,000,000 dossiers (the bulk load
  writes with plain Core, which the session's write hooks do not see).
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, insert, or_, select
from sqlalchemy.orm import Session

from ioc.core import migrate
from ioc.core.db import Base, Database
from ioc.demo import seed_agencies
from ioc.models import import_all_models

DOSSIERS = 1_000_000
REPORTS = 1_000_000
WARDS = ["16681", "16690", "16702", "16708", "16732", "17920"]
AGENCIES = [
    "ubnd-thanh-vinh",
    "ubnd-truong-vinh",
    "ubnd-vinh-phu",
    "ubnd-vinh-loc",
    "ubnd-cua-lo",
    "ubnd-vinh-hung",
    "so-xay-dung",
]


def _dossiers(db: Database, today: date) -> None:
    from ioc.modules.services.demo import seed_demo
    from ioc.modules.services.models import Dossier

    with db.session() as s:
        seed_demo(s, today=today, per_day=1)  # the procedure catalogue (and a few demo dossiers)
    rng = random.Random(7)
    start = datetime.combine(today - timedelta(days=4 * 365), datetime.min.time(), UTC)
    span = 4 * 365 * 86400
    now = datetime.now(UTC)
    batch: list[dict[str, Any]] = []
    with db.engine.begin() as conn:
        for i in range(DOSSIERS):
            received = start + timedelta(seconds=rng.randrange(span))
            due = received + timedelta(days=rng.choice((1, 3, 5, 10, 20)))
            resolved: datetime | None = received + (due - received) * rng.uniform(0.1, 1.4)
            if resolved is not None and resolved > now:
                resolved = None
            online = rng.random() < 0.5
            batch.append(
                {
                    "code": f"B{i:08d}",
                    "procedure_code": f"1.{i % 40:06d}",
                    "procedure_name": "",
                    "agency_id": AGENCIES[i % 7],
                    "ward_code": WARDS[i % 6],
                    "service_level": rng.choice(("full", "partial")) if online else "direct",
                    "channel": "online" if online else "in_person",
                    "received_at": received,
                    "due_at": due,
                    "due_day_start": due.replace(hour=0, minute=0, second=0),
                    "resolved_at": resolved,
                    "status": "resolved" if resolved else "in_progress",
                    "source": "import",
                    "source_ref": "bench",
                    "fingerprint": "",
                    "updated_at": now,
                }
            )
            if len(batch) == 50_000:
                conn.execute(insert(Dossier), batch)
                batch = []
        if batch:
            conn.execute(insert(Dossier), batch)


def _reports(db: Database, today: date) -> bool:
    table = Base.metadata.tables.get("reports")
    if table is None:
        return False
    rng = random.Random(11)
    start = datetime.combine(today - timedelta(days=4 * 365), datetime.min.time(), UTC)
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    with db.engine.begin() as conn:
        for i in range(REPORTS):
            created = start + timedelta(seconds=rng.randrange(4 * 365 * 86400))
            closed = created + timedelta(hours=rng.randrange(1, 200))
            rows.append(
                {
                    "code": f"PA-{i:09d}",
                    "category": "road",
                    "description": "bench",
                    "ward_code": WARDS[i % 6],
                    "agency_id": AGENCIES[i % 7],
                    "status": "fixed" if closed < now else "in_progress",
                    "public": True,
                    "anonymous": False,
                    "source": "web",
                    "sla_tier": "standard",
                    "created_at": created,
                    "updated_at": created,
                    "accept_due": created + timedelta(hours=8),
                    "resolve_due": created + timedelta(hours=120),
                    "closed_at": closed if closed < now else None,
                    "reopen_count": 0,
                    "abuse": False,
                    "rating": rng.randint(1, 5),
                    "address": "",
                    "lat": None,
                    "lon": None,
                }
            )
            if len(rows) == 50_000:
                conn.execute(insert(table), rows)
                rows = []
        if rows:
            conn.execute(insert(table), rows)
    return True


def _raw_monitor(session: Session, start: date, end: date) -> dict[str, int]:
    """The monitor as computed before the roll-ups: conditional counts over every relevant dossier."""
    from ioc.core.db import utcnow
    from ioc.modules.services.models import Dossier
    from ioc.modules.services.monitor import day_bounds

    d = Dossier

    def count(cond: ColumnElement[bool]) -> Any:
        return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)

    s, e = day_bounds(start, end)
    t = min(e, utcnow())
    in_period = and_(d.received_at >= s, d.received_at < e)
    closed_in = and_(d.resolved_at.is_not(None), d.resolved_at >= s, d.resolved_at < e)
    resolved = and_(closed_in, d.status == "resolved")
    open_at_end = or_(d.resolved_at.is_(None), d.resolved_at >= e)
    columns = [
        count(in_period),
        count(d.received_at < s),
        count(resolved),
        count(and_(resolved, d.due_day_start.is_not(None), d.resolved_at < d.due_day_start)),
        count(and_(resolved, d.due_at.is_not(None), d.resolved_at > d.due_at)),
        count(and_(closed_in, d.status != "resolved")),
        count(open_at_end),
        count(and_(open_at_end, d.due_at.is_not(None), d.due_at < t)),
        count(and_(open_at_end, d.due_at.is_not(None), d.due_at >= t, d.due_at < t + timedelta(hours=48))),
        count(and_(in_period, d.channel == "online")),
        count(and_(in_period, d.service_level == "full")),
        count(and_(in_period, d.channel == "online", d.service_level.in_(("partial", "full")))),
    ]
    parts = [
        and_(d.received_at >= s, d.received_at < e),
        and_(d.resolved_at >= s, d.resolved_at < e, d.received_at < s),
        and_(d.resolved_at >= e, d.received_at < s),
        and_(d.resolved_at.is_(None), d.received_at < s),
    ]
    totals = [0] * len(columns)
    for part in parts:
        row = session.execute(select(*columns).where(part)).one()
        totals = [a + int(b) for a, b in zip(totals, row, strict=True)]
    names = "received carried resolved early late other pending p_late p_nearly online full service"
    return dict(zip(names.split(), totals, strict=True))


def _median_ms(fn: Any, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


def run() -> dict[str, float]:
    os.environ.setdefault("IOC_KPI__SCHEDULER", "false")
    os.environ.setdefault("IOC_SERVICES__SCHEDULER", "false")
    from ioc.app import create_app
    from ioc.modules.kpi.api import overview, visible
    from ioc.modules.kpi.compute import Resolver, refresh
    from ioc.modules.kpi.definitions import load_definitions
    from ioc.modules.kpi.demo import seed_demo as kpi_demo
    from ioc.modules.kpi.periods import today
    from ioc.modules.services.models import Dossier
    from ioc.modules.services.monitor import dossier_monitor
    from ioc.settings import Settings

    import_all_models()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        migrate.upgrade(url)
        db = Database(url)
        with db.session() as s:
            seed_agencies(s)
        day = today()
        _dossiers(db, day)
        has_reports = _reports(db, day)
        from ioc.modules.services.rollups import rebuild

        started = time.perf_counter()
        with db.session() as s:
            rebuild(s)
        rebuild_s = round(time.perf_counter() - started, 1)
        with db.session() as s:
            kpi_demo(s)
        with db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
        app = create_app(Settings(database_url=url, var_dir=Path(tmp), secret_key="b" * 40))
        measures = app.state.registry.measures
        started = time.perf_counter()
        with db.session() as s:
            refresh(s, Resolver(measures), force=True)
        recompute_ms = round((time.perf_counter() - started) * 1000, 1)
        with db.session() as s:
            count = int(s.scalar(select(func.count()).select_from(Dossier)) or 0)
        db.dispose()

        def wall() -> None:
            cold = Database(url)
            with cold.session() as s:
                res = Resolver(measures)
                for k in visible(None):
                    overview(s, res, k)
            cold.dispose()

        def wall_all() -> None:
            cold = Database(url)
            with cold.session() as s:
                res = Resolver(measures)
                for k in load_definitions().values():
                    overview(s, res, k)
            cold.dispose()

        def monitor() -> None:
            cold = Database(url)
            with cold.session() as s:
                dossier_monitor(s, day - timedelta(days=364), day)
            cold.dispose()

        def monitor_raw() -> None:
            cold = Database(url)
            with cold.session() as s:
                _raw_monitor(s, day - timedelta(days=364), day)
            cold.dispose()

        def reports_rowload() -> None:
            table = Base.metadata.tables.get("reports")
            if table is None:
                return
            from ioc.modules.kpi.periods import period_of

            current = period_of(day, "month")
            lo, hi = current.start, current.end
            cold = Database(url)
            with cold.session() as s:
                lo_t = datetime.combine(lo, datetime.min.time(), UTC) - timedelta(hours=7)
                hi_t = datetime.combine(hi + timedelta(days=1), datetime.min.time(), UTC) - timedelta(hours=7)
                closed = table.c.closed_at
                rows = s.execute(
                    select(table).where(
                        table.c.status.in_(("fixed", "no_further_action", "not_councils_responsibility")),
                        closed >= lo_t,
                        closed < hi_t,
                    )
                ).all()
                _ = [r for r in rows if r.closed_at <= r.resolve_due], [r.rating for r in rows if r.rating]
            cold.dispose()

        with Database(url).session() as s:
            from ioc.modules.services.monitor import dossier_monitor as dm

            m = dm(s, day - timedelta(days=364), day)
            raw = _raw_monitor(s, day - timedelta(days=364), day)
            same = (m.received, m.carried_over, m.resolved.total, m.in_progress.total, m.in_progress.late) == (
                raw["received"],
                raw["carried"],
                raw["resolved"],
                raw["pending"],
                raw["p_late"],
            )

        figures = {
            "dossiers": float(count),
            "reports_rows": float(REPORTS if has_reports else 0),
            "reports_table_present": 1.0 if has_reports else 0.0,
            "kpi_wall_cold_ms": _median_ms(wall_all),
            "kpi_wall_public_cold_ms": _median_ms(wall),
            "dossier_monitor_year_ms": _median_ms(monitor),
            "kpi_recompute_all_ms": recompute_ms,
            "dossier_monitor_year_raw_ms": _median_ms(monitor_raw),
            "reports_rates_rowload_ms": _median_ms(reports_rowload),
            "rollup_rebuild_s": rebuild_s,
            "monitor_rollup_equals_raw": 1.0 if same else 0.0,
        }
        return figures


if __name__ == "__main__":
    print(run())
