"""The resolution's 2025 targets as live KPIs: definitions as data, indicator imports, values with
lineage and status, NGSI-LD sharing, socio-economic reports and the KPI wall."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from ioc.core.db import Database
from ioc.core.jobs import JobFn
from ioc.core.registry import ModuleContext, Panel, Registry

from .api import pages, router
from .compute import Resolver, refresh
from .demo import seed_demo
from .periods import Period
from .reports import due_periods, generate
from .texts import EN, VI

HERE = Path(__file__).resolve().parent
STAFF = ("operator", "agency_officer", "ward_officer", "viewer")


REPORTS_EVERY_SECONDS = 3600.0


class KpiSettings(BaseSettings):
    """``IOC_KPI__*``: the periodic jobs of KPI snapshots and socio-economic reports."""

    model_config = SettingsConfigDict(env_prefix="IOC_KPI__", extra="ignore")

    scheduler: bool = True
    refresh_minutes: float = 10.0
    reports: bool = True


def snapshot_job(registry: Registry) -> JobFn:
    """Store the KPIs' current values (measures as registered when the job runs)."""

    def run(db: Database) -> object:
        with db.session() as s:
            return refresh(s, Resolver(registry.measures))

    return run


def reports_job(registry: Registry) -> JobFn:
    """Make the scheduled reports of the periods that ended (once per period across workers)."""

    def run(db: Database) -> object:
        made: list[Period] = []
        for kind, period in due_periods():
            with db.session() as s:
                if generate(s, Resolver(registry.measures), kind, period, scheduled=True) is not None:
                    made.append(period)
        return made

    return run


def setup(ctx: ModuleContext) -> None:
    """Register the KPI module with the core."""
    settings = KpiSettings()
    ctx.registry.add_permission("kpi:read", "Xem chỉ tiêu, báo cáo / read KPIs and reports", roles=STAFF)
    ctx.registry.add_permission("kpi:import", "Nhập số liệu chỉ tiêu / import indicator values", roles=("operator",))
    ctx.registry.add_permission(
        "kpi:admin", "Tính lại chỉ tiêu, lập báo cáo / recompute KPIs, make reports", roles=("operator",)
    )
    ctx.registry.add_router(router)
    ctx.registry.add_router(pages)
    ctx.registry.allow_body("/api/v1/kpis/imports", 11_000_000)
    ctx.registry.add_panel(Panel("kpi", "kpi.panel.title", "/api/v1/kpis/panel", order=10))
    ctx.registry.add_translations("vi", VI)
    ctx.registry.add_translations("en", EN)
    ctx.registry.add_templates("kpi", HERE / "templates")
    ctx.registry.add_static("/static/kpi", HERE / "static")
    ctx.registry.add_seeder("kpi", seed_demo)
    ctx.registry.add_home_link("kpi", "/kpi")
    if settings.scheduler:
        ctx.registry.add_job("kpi.snapshots", settings.refresh_minutes * 60, snapshot_job(ctx.registry))
        if settings.reports:
            ctx.registry.add_job("kpi.reports", REPORTS_EVERY_SECONDS, reports_job(ctx.registry))
