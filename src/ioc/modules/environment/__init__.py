"""Environment and flood warning: VN_AQI (QĐ 1459), VN_WQI (QĐ 1460), flood alert levels
(QĐ 05/2020/QĐ-TTg), rainfall, and the register of pollution incidents.

Readings arrive as NGSI-LD entity changes (``context.entity.*``) and citizen reports as
``report.*`` events; results go back to the context store through ``context.upsert``. See
``docs/ENVIRONMENT.md``.
"""

from __future__ import annotations

from pathlib import Path

from ioc.core.auth import Role
from ioc.core.db import Database
from ioc.core.registry import Dataset, MapLayer, ModuleContext, Panel

from . import api, kpis, listeners, views
from .demo import seed_demo
from .service import Runtime, prune_observations
from .settings import EnvironmentSettings
from .texts import EN, VI

HERE = Path(__file__).resolve().parent
STATIC_MOUNT = "/assets/environment"


def setup(ctx: ModuleContext) -> None:
    settings = EnvironmentSettings()
    if isinstance(ctx.extra.get("environment_settings"), EnvironmentSettings):
        settings = ctx.extra["environment_settings"]
    rt = Runtime(settings=settings, db=ctx.db)
    ctx.extra["environment"] = rt
    reg = ctx.registry
    staff = (Role.OPERATOR.value, Role.AGENCY_OFFICER.value, Role.WARD_OFFICER.value, Role.VIEWER.value)
    reg.add_permission("environment:read", "Xem sổ sự cố ô nhiễm / read the pollution incident register", roles=staff)
    reg.add_permission(
        "environment:manage",
        "Xử lý sự cố ô nhiễm / confirm, merge and close pollution incidents",
        roles=(Role.OPERATOR.value, Role.AGENCY_OFFICER.value),
    )
    reg.add_router(api.build_router(rt))
    reg.add_router(views.build_router(rt))
    reg.add_templates("environment", HERE / "templates")
    reg.add_static(STATIC_MOUNT, HERE / "static")
    changes = ("context.entity.updated", "context.entity.created")
    reg.add_map_layer(
        MapLayer(
            "air-stations", "environment.layer.air", api.PREFIX + "/air/stations.geojson", "air", 10, True, changes
        )
    )
    reg.add_map_layer(
        MapLayer(
            "flood-gauges", "environment.layer.flood", api.PREFIX + "/flood/gauges.geojson", "flood", 11, True, changes
        )
    )
    reg.add_panel(Panel("environment", "environment.panel.title", api.PREFIX + "/panel", order=30))
    for measure in kpis.measures(settings):
        reg.add_measure(measure)
    reg.add_dataset(
        Dataset(
            "air-quality-daily",
            "Chỉ số chất lượng không khí VN_AQI theo ngày",
            "Daily air quality index (VN_AQI)",
            api.PREFIX + "/air/daily",
        )
    )
    reg.add_translations("vi", VI)
    reg.add_translations("en", EN)
    reg.add_seeder("environment", seed_demo)
    reg.add_home_link("air", views.PAGE)
    reg.add_home_link("flood", views.PAGE + "#lu-lut")

    def prune(db: Database) -> None:
        prune_observations(db, settings.keep_observations_days)

    reg.add_job("environment.prune", 6 * 3600, prune)
    ctx.bus.consume(
        "environment.context", ["context.entity.created", "context.entity.updated"], listeners.context_consumer(rt)
    )
    ctx.bus.consume("environment.reports", "report.created", listeners.reports_consumer(rt))
