"""Public-service dossier monitoring (iGate and similar): imports, polling, push, the monitor, KPI measures."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from ioc.core.registry import KpiMeasure, ModuleContext, Panel

from .api import pages, router
from .connectors import poll_due
from .demo import seed_demo
from .monitor import MANY, MEASURES
from .texts import EN, VI

HERE = Path(__file__).resolve().parent
STAFF = ("operator", "agency_officer", "ward_officer", "viewer")


#: Where the rows behind each measure are listed (see ``KpiMeasure.source_url``).
_RECEIVED = "/api/v1/services/dossiers?received_from={start}&received_to={end}&ward_code={ward}"
_RESOLVED = "/api/v1/services/dossiers?status=resolved&resolved_from={start}&resolved_to={end}&ward_code={ward}"
SOURCES = {
    "services.procedures_total": "/api/v1/services/procedures?at={end}",
    "services.procedures_online_partial": "/api/v1/services/procedures?at={end}&level=partial",
    "services.procedures_online_full": "/api/v1/services/procedures?at={end}&level=full",
    "services.dossiers_received": _RECEIVED,
    "services.dossiers_online_service": _RECEIVED + "&channel=online&service_level=partial&service_level=full",
    "services.dossiers_full": _RECEIVED + "&service_level=full",
    "services.dossiers_resolved": _RESOLVED,
    "services.dossiers_resolved_on_time": _RESOLVED + "&on_time=true",
}


class ServicesSettings(BaseSettings):
    """``IOC_SERVICES__*``: the polling job."""

    model_config = SettingsConfigDict(env_prefix="IOC_SERVICES__", extra="ignore")

    scheduler: bool = True
    #: How often due connectors are looked for (each connector has its own interval).
    tick_seconds: float = 60.0


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
        ctx.registry.add_measure(KpiMeasure(name, fn, unit=unit, source_url=SOURCES.get(name), many=MANY.get(name)))
    ctx.registry.add_panel(Panel("services", "services.panel.title", "/api/v1/services/panel", order=40))
    ctx.registry.add_translations("vi", VI)
    ctx.registry.add_translations("en", EN)
    ctx.registry.add_templates("services", HERE / "templates")
    ctx.registry.add_static("/static/services", HERE / "static")
    ctx.registry.add_seeder("services", seed_demo)
    if settings.scheduler:
        ctx.registry.add_job("services.poll", settings.tick_seconds, poll_due)
