"""Citizen field reports ("phản ánh hiện trường"): Vinh Smart reporting, Open311 GeoReport v2,
routing to agencies and wards, SLAs on the Vietnamese working calendar, privacy.

See ``docs/REPORTS.md``.
"""

from __future__ import annotations

from pathlib import Path

from ioc.core.auth import Role
from ioc.core.registry import Dataset, MapLayer, ModuleContext, Panel

from . import api, kpis, notify, open311, views
from .demo import seed_demo
from .service import Runtime
from .settings import ReportsSettings
from .texts import EN, VI

HERE = Path(__file__).resolve().parent
STATIC_MOUNT = "/assets/reports"


def setup(ctx: ModuleContext) -> None:
    settings = ReportsSettings()
    rt = Runtime(settings=settings, db=ctx.db, secret=ctx.settings.secret_key)
    ctx.extra["reports"] = rt
    reg = ctx.registry
    staff = (Role.OPERATOR.value, Role.AGENCY_OFFICER.value, Role.WARD_OFFICER.value)
    reg.add_permission("reports:read", "Xem phản ánh / read citizen reports", roles=(*staff, Role.VIEWER.value))
    reg.add_permission("reports:handle", "Xử lý phản ánh / handle citizen reports", roles=staff)
    reg.add_permission(
        "reports:route", "Điều phối phản ánh / re-route and escalate reports", roles=(Role.OPERATOR.value,)
    )
    reg.add_permission("open311:write", "Gửi phản ánh qua Open311 / submit reports through Open311")
    reg.add_router(api.build_router(rt))
    reg.add_router(open311.build_router(rt))
    reg.add_router(views.build_router(rt))
    reg.allow_body(api.PREFIX, 55_000_000)
    reg.allow_body("/bao-cao", 55_000_000)
    reg.add_templates("reports", HERE / "templates")
    reg.add_static(STATIC_MOUNT, HERE / "static")
    reg.add_panel(Panel("reports", "reports.panel.title", api.PREFIX + "/panel", order=20))
    reg.add_map_layer(
        MapLayer(
            "reports",
            "reports.panel.title",
            api.PREFIX + "/public.geojson",
            kind="reports",
            order=30,
            public=True,
            topics=("report.*",),
        )
    )
    for measure in kpis.measures(rt):
        reg.add_measure(measure)
    reg.add_dataset(
        Dataset(
            "reports",
            "Phản ánh hiện trường (Open311)",
            "Citizen field reports (Open311)",
            open311.PREFIX + "/requests.json",
        )
    )
    reg.add_translations("vi", VI)
    reg.add_translations("en", EN)
    reg.add_seeder("reports", seed_demo)
    reg.add_home_link("report", "/bao-cao")
    reg.add_home_link("track", "/theo-doi")
    if settings.smtp_host:
        ctx.bus.consume("reports.notify-email", "report.status_changed", notify.handler(settings), start="latest")
