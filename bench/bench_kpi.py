"""The KPI wall and the dossier monitor over 1,000,000 dossiers and 1,000,000 citizen reports.

SQLite, and PostgreSQL on the server ``bench.postgres_url`` names (in a database of its own,
``ioc_bench_kpi``, which this bench creates and keeps).

Setup (not timed): a migrated database; 1,000,000 dossiers over four years bulk-inserted with the
services module's columns; 1,000,000 rows in the reports module's ``reports`` table when that
table exists (filled through the shared metadata: the bench imports no module code for it); the
dossier roll-ups rebuilt; the demo indicator imports; then the stored KPI history, as the
scheduler keeps it.

The built dataset is kept between runs (``var/bench/kpi/bench.db`` for SQLite, the
``ioc_bench_kpi`` database for PostgreSQL, described by ``var/bench/kpi/<dialect>.json``) and
reused when the generator is unchanged (``DATA_VERSION``, row counts, the services demo), it is
less than ``MAX_AGE_DAYS`` old and every migration applied to it is still there unchanged; newer
migrations (e.g. an added index) are applied to it in place, and a change of the roll-up code
rebuilds the roll-ups only. ``IOC_BENCH_KPI_REBUILD=1`` forces a
rebuild.

Timed, each from a cold start of the query (a new engine and connection, no in-process cache):
* ``kpi_wall_cold_ms``: what ``GET /api/v1/kpis`` computes for staff — every KPI's current period
  computed live from the registered measures, its stored history, trend and status (median of 3);
* ``kpi_wall_public_cold_ms``: the same for an anonymous visitor (public KPIs only);
* ``kpi_wall_no_history_cold_ms``: the wall of a fresh install, without any stored value: all 12
  periods of every KPI computed live (imported indicators read once per KPI for all periods);
* ``kpi_wall_cpu_ms``, ``kpi_wall_no_history_cpu_ms``: the CPU time of the same (this process plus
  the PostgreSQL backend that served it), which a busy shared machine inflates far less than the
  elapsed time; ``load_average_1m`` when they were measured;
* ``dossier_monitor_year_ms``: the monitor of the last 365 days (median of 3);
* ``kpi_recompute_all_ms``: for information, recomputing and storing 12 periods of every KPI.

Baselines in the same run, for before/after comparison (the computations the roll-ups replaced):
* ``dossier_monitor_year_raw_ms``: the same monitor by conditional counts over the raw dossiers;
* ``reports_rates_rowload_ms``: the two reports rates of the current month by loading every closed
  report of the month into Python (how ``reports.on_time_rate``/``satisfaction_rate`` were computed);
* ``rollup_rebuild_s``: rebuilding the dossier roll-ups from the 1,000,000 dossiers (the bulk load
  writes with plain Core, which the session's write hooks do not see), measured when the dataset
  was built.
PostgreSQL figures carry the prefix ``pg_``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import random
import statistics
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, case, delete, func, insert, make_url, or_, select, text
from sqlalchemy.orm import Session

from bench import postgres_leg, postgres_url, recreate_database, vacuum_analyze
from ioc.core import migrate
from ioc.core.db import Base, Database
from ioc.demo import seed_agencies
from ioc.models import import_all_models

DOSSIERS = 1_000_000
REPORTS = 1_000_000
#: Bump when the generated data changes (the cached datasets are then rebuilt).
DATA_VERSION = 1
MAX_AGE_DAYS = 30
ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "var" / "bench" / "kpi"
MIGRATIONS = ROOT / "src" / "ioc" / "migrations" / "versions"
PG_DATABASE = "ioc_bench_kpi"
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


# --------------------------------------------------------------------------- the kept dataset


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _migrations() -> dict[str, str]:
    return {p.name: _sha(p) for p in sorted(MIGRATIONS.glob("*.py")) if p.name != "__init__.py"}


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _data_key() -> str:
    """What the generated rows depend on (not the schema: migrations are checked apart)."""
    from ioc.modules.services import demo as services_demo

    return _key(
        str(DATA_VERSION),
        str(DOSSIERS),
        str(REPORTS),
        inspect.getsource(_dossiers),
        inspect.getsource(_reports),
        inspect.getsource(services_demo),
    )


def _rollup_key() -> str:
    """What the dossier roll-ups depend on: a change only rebuilds them, not the rows."""
    from ioc.modules.services import rollups

    return _key(inspect.getsource(rollups))


def _reusable(meta_path: Path, key: str, count: Any) -> dict[str, Any] | None:
    """The description of the kept dataset if it can be reused as it is (plus newer migrations)."""
    if os.environ.get("IOC_BENCH_KPI_REBUILD") or not meta_path.exists():
        return None
    meta: dict[str, Any] = json.loads(meta_path.read_text())
    if meta.get("data_key") != key or not meta.get("complete"):
        return None
    if (date.today() - date.fromisoformat(meta["built"])).days > MAX_AGE_DAYS:
        return None
    current = _migrations()
    if any(current.get(name) != sha for name, sha in meta.get("migrations", {}).items()):
        return None  # a migration applied to it changed or went away
    try:
        if count() != DOSSIERS + int(meta.get("demo_dossiers", 0)):
            return None
    except Exception:  # no database, no table: build anew
        return None
    return meta


def _analyze(db: Database) -> None:
    if db.dialect == "postgresql":
        vacuum_analyze(db)
    else:
        with db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")


def _dossier_count(url: str) -> int:
    from ioc.modules.services.models import Dossier

    db = Database(url)
    try:
        with db.session() as s:
            return int(s.scalar(select(func.count()).select_from(Dossier)) or 0)
    finally:
        db.dispose()


def prepare(url: str, dialect: str, day: date) -> tuple[dict[str, Any], bool]:
    """Build the dataset at ``url``, or reuse the kept one; its description and whether it was reused."""
    from ioc.modules.services.rollups import rebuild

    CACHE.mkdir(parents=True, exist_ok=True)
    meta_path = CACHE / f"{dialect}.json"
    key = _data_key()
    meta = _reusable(meta_path, key, lambda: _dossier_count(url))
    if meta is not None:
        applied = _migrations()
        migrate.upgrade(url)  # migrations added since the build (indexes …), applied in place
        db = Database(url)
        if meta.get("rollup_key") != _rollup_key():  # the roll-up code changed: rebuild them only
            started = time.perf_counter()
            with db.session() as s:
                rebuild(s)
            meta["rollup_rebuild_s"] = round(time.perf_counter() - started, 1)
            meta["rollup_key"] = _rollup_key()
        _analyze(db)
        db.dispose()
        meta["migrations"] = applied
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")
        return meta, True
    started = time.perf_counter()
    applied = _migrations()  # as they are when applied
    meta_path.unlink(missing_ok=True)
    if dialect == "postgresql":
        recreate_database(url)
    else:
        Path(make_url(url).database or "").unlink(missing_ok=True)
    migrate.upgrade(url)
    db = Database(url)
    with db.session() as s:
        seed_agencies(s)
    _dossiers(db, day)
    has_reports = _reports(db, day)
    rebuild_started = time.perf_counter()
    with db.session() as s:
        rebuild(s)
    rebuild_s = round(time.perf_counter() - rebuild_started, 1)
    _analyze(db)
    db.dispose()
    meta = {
        "data_key": key,
        "rollup_key": _rollup_key(),
        "built": date.today().isoformat(),
        "day": day.isoformat(),
        "migrations": applied,
        "reports": has_reports,
        "demo_dossiers": _dossier_count(url) - DOSSIERS,
        "rollup_rebuild_s": rebuild_s,
        "build_s": round(time.perf_counter() - started, 1),
        "complete": True,
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return meta, False


# --------------------------------------------------------------------------- timing


def _server_cpu_ms(session: Session) -> float:
    """CPU time used so far by the PostgreSQL backend serving ``session`` (0 for SQLite, which runs
    in this process and is counted in its CPU time); from /proc, so in 10 ms ticks."""
    if session.get_bind().dialect.name != "postgresql":
        return 0.0
    pid = session.scalar(text("SELECT pg_backend_pid()"))
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # a server on another machine: not measurable here
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks * 1000 / os.sysconf("SC_CLK_TCK")


def bench_database(url: str, dialect: str) -> dict[str, float]:
    from ioc.app import create_app
    from ioc.modules.kpi.api import overview, visible
    from ioc.modules.kpi.compute import Resolver, refresh
    from ioc.modules.kpi.definitions import load_definitions
    from ioc.modules.kpi.demo import seed_demo as kpi_demo
    from ioc.modules.kpi.periods import period_of, today
    from ioc.modules.services.monitor import dossier_monitor
    from ioc.settings import Settings

    day = today()
    meta, reused = prepare(url, dialect, day)
    db = Database(url)
    with db.session() as s:
        kpi_demo(s)  # idempotent: imports once
    CACHE.joinpath("var").mkdir(exist_ok=True)
    app = create_app(Settings(database_url=url, var_dir=CACHE / "var", secret_key="b" * 40))
    measures = app.state.registry.measures
    started = time.perf_counter()
    with db.session() as s:
        refresh(s, Resolver(measures), force=True)
    recompute_ms = round((time.perf_counter() - started) * 1000, 1)
    count = _dossier_count(url)
    db.dispose()

    cpu_ms: dict[str, list[float]] = {"wall": [], "no_history": []}

    def wall(kpis: Any, cpu: str | None = None) -> Any:
        def run_wall() -> None:
            cold = Database(url)
            client = time.process_time()
            with cold.session() as s:
                res = Resolver(measures)
                for k in kpis():
                    overview(s, res, k)
                if cpu:
                    cpu_ms[cpu].append((time.process_time() - client) * 1000 + _server_cpu_ms(s))
            cold.dispose()

        return run_wall

    def wall_no_history() -> float:
        """The wall of a fresh install: no stored value, all 12 periods of every KPI computed live (the
        stored history deleted in the same transaction, rolled back; timed from the first KPI)."""
        from ioc.modules.kpi.models import KpiValue

        cold = Database(url)
        with cold.sessions() as s:
            s.execute(delete(KpiValue))
            server = _server_cpu_ms(s)
            client = time.process_time()
            started = time.perf_counter()
            res = Resolver(measures)
            for k in load_definitions().values():
                overview(s, res, k)
            elapsed = (time.perf_counter() - started) * 1000
            cpu_ms["no_history"].append((time.process_time() - client) * 1000 + _server_cpu_ms(s) - server)
            s.rollback()
        cold.dispose()
        return elapsed

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

    check = Database(url)
    with check.session() as s:
        m = dossier_monitor(s, day - timedelta(days=364), day)
        raw = _raw_monitor(s, day - timedelta(days=364), day)
        same = (m.received, m.carried_over, m.resolved.total, m.in_progress.total, m.in_progress.late) == (
            raw["received"],
            raw["carried"],
            raw["resolved"],
            raw["pending"],
            raw["p_late"],
        )
    check.dispose()

    return {
        "dossiers": float(count),
        "reports_rows": float(REPORTS if meta["reports"] else 0),
        "reports_table_present": 1.0 if meta["reports"] else 0.0,
        "dataset_reused": 1.0 if reused else 0.0,
        "kpi_wall_cold_ms": _median_ms(wall(lambda: load_definitions().values(), "wall")),
        "kpi_wall_cpu_ms": round(statistics.median(cpu_ms["wall"]), 1),
        "kpi_wall_public_cold_ms": _median_ms(wall(lambda: visible(None))),
        "kpi_wall_no_history_cold_ms": round(statistics.median(wall_no_history() for _ in range(3)), 1),
        "kpi_wall_no_history_cpu_ms": round(statistics.median(cpu_ms["no_history"]), 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "dossier_monitor_year_ms": _median_ms(monitor),
        "kpi_recompute_all_ms": recompute_ms,
        "dossier_monitor_year_raw_ms": _median_ms(monitor_raw),
        "reports_rates_rowload_ms": _median_ms(reports_rowload),
        "rollup_rebuild_s": float(meta["rollup_rebuild_s"]),
        "monitor_rollup_equals_raw": 1.0 if same else 0.0,
    }


def run() -> dict[str, float]:
    """Both legs; ``IOC_BENCH_KPI_LEGS`` (``sqlite,postgresql``) picks some."""
    os.environ.setdefault("IOC_KPI__SCHEDULER", "false")
    os.environ.setdefault("IOC_SERVICES__SCHEDULER", "false")
    import_all_models()
    legs = set(os.environ.get("IOC_BENCH_KPI_LEGS", "sqlite,postgresql").split(","))
    figures: dict[str, float] = {}
    if "sqlite" in legs:
        figures |= bench_database(f"sqlite:///{CACHE / 'bench.db'}", "sqlite")
    pg = postgres_url() if "postgresql" in legs else None
    if pg:
        url = make_url(pg).set(database=PG_DATABASE).render_as_string(hide_password=False)
        figures |= {f"pg_{k}": v for k, v in bench_database(url, "postgresql").items()}
    elif "postgresql" in legs:
        figures["pg_skipped"] = postgres_leg()[1]
    return figures


if __name__ == "__main__":
    print(run())
