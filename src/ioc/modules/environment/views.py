"""The public "air and flooding now" page of Vinh Smart (``/khong-khi``).

Server-rendered (the list by ward, the flood table) so it reads without JavaScript; the map
(vendored Leaflet) draws the wards, the stations in their band colours and the flood-prone zones
from data passed in a ``<script type="application/json">`` block (no inline scripts, strict CSP).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select

from ioc.core.admin_units import VN_TZ
from ioc.core.auth import web_principal
from ioc.core.db import DbSession, utcnow
from ioc.core.i18n import negotiate_language
from ioc.core.pages import render_page

from . import api, service
from .models import Incident
from .service import Runtime

ASSETS = "/assets/environment"
PAGE = "/khong-khi"


def _local(dt: Any) -> str:
    return dt.astimezone(VN_TZ).strftime("%H:%M %d/%m/%Y") if dt is not None else "—"


def build_router(rt: Runtime) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get(PAGE, response_class=HTMLResponse)
    def air_page(request: Request, session: DbSession) -> HTMLResponse:
        """Air quality now by ward and station, flood warnings by ward, advice per band."""
        lang = negotiate_language(request)
        now = api.air_now(session, rt, lang)
        wards = api.ward_flood(session, rt, lang)
        gauges = [api.gauge_out(g, lang) for g in service.stations(session, "gauge")]
        since = utcnow() - timedelta(days=30)
        incident_count = int(
            session.scalar(
                select(func.count())
                .select_from(Incident)
                .where(Incident.detected_at >= since, Incident.status.not_in(("merged", "dismissed")))
            )
            or 0
        )
        settings = request.app.state.settings
        config = {
            "map": {
                "tileUrl": settings.map.tile_url,
                "tileAttribution": settings.map.tile_attribution,
                "centerLat": settings.map.center_lat,
                "centerLon": settings.map.center_lon,
                "zoom": settings.map.zoom,
                "wardsUrl": "/api/v1/admin-units/wards.geojson",
            },
            "zonesUrl": api.PREFIX + "/flood/zones.geojson",
            "stations": [s.model_dump(mode="json") for s in now.stations],
            "gauges": [g.model_dump(mode="json") for g in gauges],
            "wardAir": {w.ward_code: (w.band.colour if w.band else None) for w in now.wards},
            "lang": lang,
        }
        return render_page(
            request,
            "environment/air.html",
            principal=web_principal(request, session),
            air=now,
            wards=wards,
            gauges=gauges,
            incident_count=incident_count,
            page_config=config,
            assets=ASSETS,
            local=_local,
        )

    return router
