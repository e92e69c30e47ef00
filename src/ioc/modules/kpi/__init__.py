"""The resolution's 2025 targets as live KPIs: definitions as data, indicator imports, values with
lineage and status, NGSI-LD sharing, socio-economic reports and the KPI wall."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI
from pydantic_settings import BaseSettings, SettingsConfigDict

from ioc.core.db import Database
from ioc.core.registry import ModuleContext, Panel, Registry

from .api import pages, router
from .compute import Resolver, refresh
from .demo import seed_demo
from .jobs import Job, Scheduler
from .periods import Period
from .reports import due_periods, generate
from .texts import EN, VI

HERE = Path(__file__).resolve().parent
STAFF = ("operator", "agency_officer", "ward_officer", "viewer")


class KpiSettings(BaseSettings):
    """``IOC_KPI__*``: the scheduler of KPI snapshots and socio-economic reports."""

    model_config = SettingsConfigDict(env_prefix="IOC_KPI__", extra="ignore")

    scheduler: bool = True
    refresh_minutes: float = 10.0
    reports: bool = True
    tick_seconds: float = 60.0
    first_delay_seconds: float = 10.0


def snapshot_job(registry: Registry) -> Job:
    def run(db: Database) -> object:
        with db.session() as s:
            return refresh(s, Resolver(registry.measures))

    return Job("kpi.snapshots", 60.0, run)


def reports_job(registry: Registry) -> Job:
    def run(db: Database) -> object:
        made: list[Period] = []
        for kind, period in due_periods():
            with db.session() as s:
                if generate(s, Resolver(registry.measures), kind, period, scheduled=True) is not None:
                    made.append(period)
        return made

    return Job("kpi.reports", 3600.0, run)


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
    if hasattr(ctx.registry, "add_seeder"):
        ctx.registry.add_seeder("kpi", seed_demo)
    if settings.scheduler:
        snapshots = snapshot_job(ctx.registry)
        jobs = [Job(snapshots.name, settings.refresh_minutes * 60, snapshots.run)]
        if settings.reports:
            jobs.append(reports_job(ctx.registry))
        scheduler = Scheduler(ctx.db, jobs, settings.tick_seconds, settings.first_delay_seconds)

        @asynccontextmanager
        async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
            scheduler.start()
            try:
                yield
            finally:
                scheduler.stop()

        ctx.registry.add_router(APIRouter(lifespan=lifespan))
