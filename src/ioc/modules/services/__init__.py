"""Public-service dossier monitoring (iGate and similar): imports, polling, push, the monitor, KPI measures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI
from pydantic_settings import BaseSettings, SettingsConfigDict

from ioc.core.registry import KpiMeasure, ModuleContext, Panel

from .api import pages, router
from .connectors import poll_due
from .demo import seed_demo
from .jobs import Job, Scheduler
from .monitor import MEASURES
from .texts import EN, VI

HERE = Path(__file__).resolve().parent
STAFF = ("operator", "agency_officer", "ward_officer", "viewer")


class ServicesSettings(BaseSettings):
    """``IOC_SERVICES__*``: the polling scheduler."""

    model_config = SettingsConfigDict(env_prefix="IOC_SERVICES__", extra="ignore")

    scheduler: bool = True
    tick_seconds: float = 60.0
    first_delay_seconds: float = 15.0


def setup(ctx: ModuleContext) -> None:
    """Register the services module with the core."""
    settings = ServicesSettings()
    ctx.registry.add_permission("services:read", "Xem giám sát dịch vụ công / read dossier monitoring", roles=STAFF)
    ctx.registry.add_permission(
        "services:import", "Nhập hồ sơ, thủ tục / import dossiers and procedures", roles=("operator",)
    )
    ctx.registry.add_permission("services:push", "Đẩy hồ sơ qua API / push dossiers (integrations)")
    ctx.registry.add_permission("services:admin", "Quản lý bộ kết nối / manage connectors")
    ctx.registry.add_router(router)
    ctx.registry.add_router(pages)
    ctx.registry.allow_body("/api/v1/services/imports", 31_000_000)
    ctx.registry.allow_body("/api/v1/services/dossiers", 10_000_000)
    for name, (fn, unit) in MEASURES.items():
        ctx.registry.add_measure(KpiMeasure(name, fn, unit=unit))
    ctx.registry.add_panel(Panel("services", "services.panel.title", "/api/v1/services/panel", order=40))
    ctx.registry.add_translations("vi", VI)
    ctx.registry.add_translations("en", EN)
    ctx.registry.add_templates("services", HERE / "templates")
    ctx.registry.add_static("/static/services", HERE / "static")
    if hasattr(ctx.registry, "add_seeder"):
        ctx.registry.add_seeder("services", seed_demo)
    if settings.scheduler:
        scheduler = Scheduler(
            ctx.db,
            [Job("services.poll", settings.tick_seconds, poll_due)],
            settings.tick_seconds,
            settings.first_delay_seconds,
        )

        @asynccontextmanager
        async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
            scheduler.start()
            try:
                yield
            finally:
                scheduler.stop()

        ctx.registry.add_router(APIRouter(lifespan=lifespan))
