"""The environment JSON API (``/api/v1/environment``).

Public (no personal data; readings and counts only): stations, air now, hourly and daily VN_AQI by
station or ward, VN_WQI results, flood status by gauge and ward, water levels, rain sums, zones,
incident counts. Staff: the incident register (``environment:read``) and its workflow
(``environment:manage``, audited). Errors are RFC 7807 problems.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from markupsafe import escape
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ioc.core.admin_units import CITY_WARD_CODES, VN_TZ, vn_today
from ioc.core.auth import Principal, Requires
from ioc.core.db import DbSession, utcnow
from ioc.core.i18n import negotiate_language
from ioc.core.problems import Problem

from . import flood, incidents, service
from .models import EnvStation, Incident, WaterLevelReading, WqiResult
from .schemas import (
    AirNow,
    AirStationNow,
    BandOut,
    CloseIn,
    ConfirmIn,
    DailyPoint,
    DismissIn,
    GaugeOut,
    HourlyPoint,
    IncidentCreate,
    IncidentDetail,
    IncidentHistoryOut,
    IncidentOut,
    IncidentPage,
    LevelPoint,
    MergeIn,
    RainOut,
    StationOut,
    WardAirNow,
    WardFlood,
    WqiOut,
    ZoneStatus,
)
from .service import Runtime
from .texts import FLOOD_ADVICE, alert_label

PREFIX = "/api/v1/environment"
Reader = Annotated[Principal, Depends(Requires("environment:read"))]
Manager = Annotated[Principal, Depends(Requires("environment:manage"))]
WardParam = Annotated[str | None, Query(pattern=r"^(\d{5})?$", description="GSO code of a city ward")]
MAX_HOURLY_DAYS = 31
MAX_DAILY_DAYS = 366


# --------------------------------------------------------------------------- helpers


def band_out(aqi_value: int | None, lang: str) -> BandOut | None:
    """The VN_AQI band of a value, in ``lang``."""
    if aqi_value is None:
        return None
    from . import aqi

    band = aqi.band_for(aqi_value)
    en = lang == "en"
    return BandOut(
        level=band.level,
        name=band.name_en if en else band.name_vi,
        colour=band.colour,
        advice=band.advice_en if en else band.advice_vi,
        low=band.low,
        high=band.high,
    )


def all_bands(lang: str) -> list[BandOut]:
    from . import aqi

    seen: dict[int, BandOut] = {}
    for value in (0, 51, 101, 151, 201, 301):
        out = band_out(value, lang)
        if out is not None:
            seen[out.level] = out
    _ = aqi
    return list(seen.values())


def _check_ward(ward: str | None) -> str | None:
    if ward and ward not in CITY_WARD_CODES:
        raise Problem(422, f"Không có phường '{ward}' của thành phố (unknown ward).", code="unknown-ward")
    return ward or None


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = datetime.combine(date.fromisoformat(value), datetime.min.time())
        except ValueError as exc:
            raise Problem(
                422, f"'{name}' không phải thời điểm ISO 8601 (not an ISO 8601 time): {value}", code="bad-time"
            ) from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=VN_TZ)


def _parse_day(value: str | None, name: str) -> date | None:
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError as exc:
        raise Problem(422, f"'{name}' không phải ngày YYYY-MM-DD (not a date): {value}", code="bad-date") from exc


def _day_range(start: str | None, end: str | None, default_days: int, max_days: int) -> tuple[date, date]:
    hi = _parse_day(end, "to") or vn_today()
    lo = _parse_day(start, "from") or hi - timedelta(days=default_days - 1)
    if lo > hi:
        raise Problem(422, "'from' sau 'to' (from is after to).", code="bad-range")
    if (hi - lo).days + 1 > max_days:
        raise Problem(422, f"Khoảng thời gian tối đa {max_days} ngày (at most {max_days} days).", code="bad-range")
    return lo, hi


def _station_or_404(session: Session, station_id: int, kind: str) -> EnvStation:
    station = session.get(EnvStation, station_id)
    if station is None or station.kind != kind:
        raise Problem(404, f"Không có trạm {station_id} (station not found).", code="not-found")
    return station


def air_station_now(s: EnvStation, lang: str) -> AirStationNow:
    return AirStationNow(
        id=s.id,
        entity_id=s.entity_id,
        name=s.name,
        ward_code=s.ward_code,
        lat=s.lat,
        lon=s.lon,
        aqi=s.aqi,
        dominant=s.aqi_dominant,
        hour_end=s.aqi_hour_end,
        band=band_out(s.aqi, lang),
    )


def air_now(session: Session, rt: Runtime, lang: str) -> AirNow:
    """Every air station's latest hourly AQI, and each ward's worst station."""
    stations = [air_station_now(s, lang) for s in service.stations(session, "air")]
    locator = rt.locator(session)
    wards = []
    for code in CITY_WARD_CODES:
        mine = [s for s in stations if s.ward_code == code]
        worst = max((s.aqi for s in mine if s.aqi is not None), default=None)
        name = flood.WARD_NAMES.get(code, code)
        if locator is not None and code in locator.wards:
            name = locator.wards[code].name
        wards.append(WardAirNow(ward_code=code, ward_name=name, aqi=worst, band=band_out(worst, lang), stations=mine))
    return AirNow(stations=stations, wards=wards, bands=all_bands(lang))


def gauge_out(s: EnvStation, lang: str) -> GaugeOut:
    return GaugeOut(
        id=s.id,
        code=s.code,
        entity_id=s.entity_id,
        name=s.name,
        ward_code=s.ward_code,
        lat=s.lat,
        lon=s.lon,
        level_m=s.level_m,
        level_at=s.level_at,
        rise_m_per_h=s.rise_m_per_h,
        alert_level=s.alert_level or 0,
        alert_label=alert_label(s.alert_level or 0, lang),
        alert_since=s.alert_since,
        levels_m=[s.level1_m, s.level2_m, s.level3_m],
    )


def ward_flood(session: Session, rt: Runtime, lang: str, at: datetime | None = None) -> list[WardFlood]:
    rows = flood.ward_status(session, at or utcnow(), rt.settings.heavy_rain_24h_mm, rt.locator(session))
    advice = FLOOD_ADVICE["en" if lang == "en" else "vi"]
    return [
        WardFlood(
            ward_code=r["ward_code"],
            ward_name=r["ward_name"],
            alert_level=r["alert_level"],
            alert_label=alert_label(r["alert_level"], lang),
            advice=advice.get(r["alert_level"], ""),
            gauges=r["gauges"],
            zones=[ZoneStatus(**z) for z in r["zones"]],
            rain_24h_mm=r["rain_24h_mm"],
            heavy_rain=r["heavy_rain"],
        )
        for r in rows
    ]


def rain_out(session: Session, at: datetime, ward: str | None) -> list[RainOut]:
    sums = flood.rain_sums(session, at)
    out = []
    for s in service.stations(session, "rain", ward):
        v = sums.get(s.id, {"1h": 0.0, "3h": 0.0, "24h": 0.0})
        out.append(
            RainOut(
                station_id=s.id,
                name=s.name,
                ward_code=s.ward_code,
                lat=s.lat,
                lon=s.lon,
                at=at,
                sum_1h_mm=v["1h"],
                sum_3h_mm=v["3h"],
                sum_24h_mm=v["24h"],
            )
        )
    return out


# --------------------------------------------------------------------------- router


NO_DATA = {"vi": "chưa có số liệu", "en": "no data yet"}
NO_DATA_COLOUR = "#8a8a8a"
#: Marker colours of the alert levels on the map: none, báo động I, II, III.
ALERT_COLOURS = ("#1e8e3e", "#f9a825", "#ef6c00", "#c62828")


def _point(
    lon: float | None,
    lat: float | None,
    label: str,
    colour: str,
    status: str,
    ward: str | None,
    time: datetime | None,
) -> dict[str, object] | None:
    if lon is None or lat is None:
        return None
    props: dict[str, object] = {"label": label, "colour": colour, "status": status, "ward": ward}
    if time is not None:
        props["time"] = time.isoformat()
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]}, "properties": props}


def _layer(features: list[dict[str, object] | None]) -> JSONResponse:
    collection = {"type": "FeatureCollection", "features": [f for f in features if f is not None]}
    return JSONResponse(collection, media_type="application/geo+json")


Point = TypeVar("Point", HourlyPoint, DailyPoint)


def _aqi_points(model: type[Point], key: str, rows: Iterable[tuple[Any, Any, int]]) -> list[Point]:
    """Hourly or daily AQI rows as points: ``(hour_end or day, row, stations counted)``."""
    return [
        model(
            **{key: k},
            aqi=r.aqi,
            dominant=r.dominant,
            band=r.band,
            station_id=r.station_id,
            stations=n,
            sub_indices=r.sub_indices,
        )
        for k, r, n in rows
    ]


def build_router(rt: Runtime) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["environment"])

    # -- public readings ---------------------------------------------------
    @router.get("/stations")
    def list_stations(
        session: DbSession,
        kind: Annotated[str | None, Query(pattern="^(air|water|gauge|rain)$")] = None,
        ward: WardParam = None,
    ) -> list[StationOut]:
        """Monitoring points and their current state (public)."""
        return [StationOut.model_validate(s) for s in service.stations(session, kind, _check_ward(ward))]

    @router.get("/air/now")
    def get_air_now(request: Request, session: DbSession) -> AirNow:
        """Every air station's latest hourly VN_AQI, each ward's worst, and the bands with advice (public)."""
        return air_now(session, rt, negotiate_language(request))

    @router.get("/air/hourly")
    def hourly(
        session: DbSession,
        station_id: int | None = None,
        ward: WardParam = None,
        start: Annotated[str | None, Query(alias="from", description="ISO 8601 time (default: 24 h ago)")] = None,
        end: Annotated[str | None, Query(alias="to", description="ISO 8601 time (default: now)")] = None,
    ) -> list[HourlyPoint]:
        """Hourly VN_AQI of a station, or of a ward (its worst station each hour) (public)."""
        ward = _check_ward(ward)
        hi = _parse_time(end, "to") or utcnow()
        lo = _parse_time(start, "from") or hi - timedelta(hours=24)
        if lo >= hi or hi - lo > timedelta(days=MAX_HOURLY_DAYS):
            raise Problem(422, f"Khoảng thời gian 0–{MAX_HOURLY_DAYS} ngày (range of 0–31 days).", code="bad-range")
        if station_id is not None:
            _station_or_404(session, station_id, "air")
            rows = service.hourly_rows(session, lo, hi, station_id, None)
            return _aqi_points(HourlyPoint, "hour_end", ((r.hour_end, r, 1) for r in rows))
        if ward is None:
            raise Problem(422, "Cần 'station_id' hoặc 'ward' (give station_id or ward).", code="missing-filter")
        worst = service.worst_by_key(service.hourly_rows(session, lo, hi, None, ward), "hour_end")
        return _aqi_points(HourlyPoint, "hour_end", worst)

    @router.get("/air/daily")
    def daily(
        session: DbSession,
        station_id: int | None = None,
        ward: WardParam = None,
        start: Annotated[str | None, Query(alias="from")] = None,
        end: Annotated[str | None, Query(alias="to")] = None,
    ) -> list[DailyPoint]:
        """Daily VN_AQI of a station, or the worst station of a ward or of the city, per day (public)."""
        ward = _check_ward(ward)
        lo, hi = _day_range(start, end, 30, MAX_DAILY_DAYS)
        if station_id is not None:
            _station_or_404(session, station_id, "air")
            rows = service.daily_rows(session, lo, hi, station_id, None)
            return _aqi_points(DailyPoint, "day", ((r.day, r, 1) for r in rows))
        worst = service.worst_by_key(service.daily_rows(session, lo, hi, None, ward), "day")
        return _aqi_points(DailyPoint, "day", worst)

    @router.get("/water/wqi")
    def water_quality(
        session: DbSession,
        station_id: int | None = None,
        ward: WardParam = None,
        start: Annotated[str | None, Query(alias="from")] = None,
        end: Annotated[str | None, Query(alias="to")] = None,
    ) -> list[WqiOut]:
        """VN_WQI results of water samples (QĐ 1460), newest first (public)."""
        ward = _check_ward(ward)
        lo, hi = _day_range(start, end, 90, MAX_DAILY_DAYS)
        lo_t, hi_t = incidents.vn_day_bounds(lo, hi)
        stmt = (
            select(WqiResult)
            .where(WqiResult.observed_at >= lo_t, WqiResult.observed_at < hi_t)
            .order_by(WqiResult.observed_at.desc())
            .limit(1000)
        )
        if station_id is not None:
            _station_or_404(session, station_id, "water")
            stmt = stmt.where(WqiResult.station_id == station_id)
        if ward:
            stmt = stmt.where(WqiResult.ward_code == ward)
        return [WqiOut.model_validate(r) for r in session.scalars(stmt)]

    @router.get("/flood/gauges")
    def gauges(request: Request, session: DbSession, ward: WardParam = None) -> list[GaugeOut]:
        """Water-level gauges: level, rate of rise, alert level (public)."""
        lang = negotiate_language(request)
        return [gauge_out(s, lang) for s in service.stations(session, "gauge", _check_ward(ward))]

    @router.get("/air/stations.geojson")
    def air_layer(request: Request, session: DbSession) -> JSONResponse:
        """Air stations as a map layer: GeoJSON points in their VN_AQI band colour (public)."""
        lang = negotiate_language(request)
        features = []
        for s in service.stations(session, "air"):
            now = air_station_now(s, lang)
            if now.band is None:
                label, colour, status = f"{now.name}: {NO_DATA[lang]}", NO_DATA_COLOUR, "no-data"
            else:
                label, colour, status = (
                    f"{now.name}: AQI {now.aqi} — {now.band.name}",
                    now.band.colour,
                    f"band-{now.band.level}",
                )
            features.append(_point(now.lon, now.lat, label, colour, status, now.ward_code, now.hour_end))
        return _layer(features)

    @router.get("/flood/gauges.geojson")
    def flood_layer(request: Request, session: DbSession) -> JSONResponse:
        """Water-level gauges as a map layer: GeoJSON points coloured by alert level (public)."""
        lang = negotiate_language(request)
        features = []
        for s in service.stations(session, "gauge"):
            g = gauge_out(s, lang)
            level = f"{g.level_m:.2f} m" if g.level_m is not None else NO_DATA[lang]
            status = "normal" if g.alert_level == 0 else f"level-{g.alert_level}"
            label = f"{g.name}: {level} — {g.alert_label}"
            features.append(_point(g.lon, g.lat, label, ALERT_COLOURS[g.alert_level], status, g.ward_code, g.level_at))
        return _layer(features)

    @router.get("/flood/gauges/{station_id}/levels")
    def gauge_levels(
        session: DbSession,
        station_id: int,
        hours: Annotated[int, Query(ge=1, le=24 * 31)] = 48,
    ) -> list[LevelPoint]:
        """A gauge's water levels over the last ``hours`` (public)."""
        station = _station_or_404(session, station_id, "gauge")
        since = (station.level_at or utcnow()) - timedelta(hours=hours)
        stmt = (
            select(WaterLevelReading.observed_at, WaterLevelReading.level_m)
            .where(WaterLevelReading.station_id == station.id, WaterLevelReading.observed_at >= since)
            .order_by(WaterLevelReading.observed_at)
        )
        return [LevelPoint(observed_at=t, level_m=v) for t, v in session.execute(stmt)]

    @router.get("/flood/wards")
    def flood_wards(
        request: Request,
        session: DbSession,
        at: Annotated[str | None, Query(description="rain up to this ISO 8601 time (default: now)")] = None,
    ) -> list[WardFlood]:
        """Each ward's flood warning level, its zones and the 24 h of rain before ``at`` (public)."""
        return ward_flood(session, rt, negotiate_language(request), _parse_time(at, "at"))

    @router.get("/flood/zones.geojson")
    def zones() -> JSONResponse:
        """The flood-prone zones, linked to gauges and wards (public)."""
        return JSONResponse(flood.zone_features(), media_type="application/geo+json")

    @router.get("/rain")
    def rain(
        session: DbSession,
        ward: WardParam = None,
        at: Annotated[str | None, Query(description="ISO 8601 time (default: now)")] = None,
    ) -> list[RainOut]:
        """Rain sums over 1, 3 and 24 hours per weather station (public)."""
        return rain_out(session, _parse_time(at, "at") or utcnow(), _check_ward(ward))

    @router.get("/incidents/summary")
    def incident_summary(
        session: DbSession,
        start: Annotated[str | None, Query(alias="from")] = None,
        end: Annotated[str | None, Query(alias="to")] = None,
    ) -> dict[str, Any]:
        """How many pollution incidents were recorded, by kind and status — no details (public)."""
        lo, hi = _day_range(start, end, 30, 3660)
        return incidents.public_summary(session, lo, hi)

    # -- staff: the incident register ---------------------------------------
    @router.get("/incidents")
    def list_incidents(
        session: DbSession,
        principal: Reader,
        status: Annotated[str | None, Query(pattern="^(new|confirmed|closed|merged|dismissed|open)$")] = None,
        kind: Annotated[str | None, Query(pattern="^(air|water|land)$")] = None,
        source: Annotated[str | None, Query(pattern="^(sensor|camera|citizen|inspection|press)$")] = None,
        ward: WardParam = None,
        key: bool | None = None,
        it: Annotated[bool | None, Query(description="true: only those detected through IT (KPI 13)")] = None,
        start: Annotated[str | None, Query(alias="from")] = None,
        end: Annotated[str | None, Query(alias="to")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> IncidentPage:
        """The register, newest detection first (staff, within their remit)."""
        conds: list[Any] = [incidents.visible_to(principal)]
        if status == "open":
            conds.append(Incident.status.in_(incidents.OPEN))
        elif status:
            conds.append(Incident.status == status)
        if kind:
            conds.append(Incident.kind == kind)
        if source:
            conds.append(Incident.source == source)
        if ward := _check_ward(ward):
            conds.append(Incident.ward_code == ward)
        if key is not None:
            conds.append(Incident.key.is_(key))
            if key:
                conds.append(Incident.status.not_in(incidents.NOT_COUNTED))
        if it is not None:
            sources = list(rt.settings.it_sources)
            conds.append(Incident.source.in_(sources) if it else Incident.source.not_in(sources))
        if start or end:
            lo, hi = _day_range(start, end, 30, 3660)
            lo_t, hi_t = incidents.vn_day_bounds(lo, hi)
            conds += [Incident.detected_at >= lo_t, Incident.detected_at < hi_t]
        total = int(session.scalar(select(func.count()).select_from(Incident).where(*conds)) or 0)
        rows = session.scalars(
            select(Incident)
            .where(*conds)
            .order_by(Incident.detected_at.desc(), Incident.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return IncidentPage(items=[IncidentOut.model_validate(r) for r in rows], total=total)

    def detail(session: Session, incident: Incident) -> IncidentDetail:
        out = IncidentOut.model_validate(incident).model_dump()
        hist = [IncidentHistoryOut.model_validate(h) for h in incidents.history(session, incident.id)]
        return IncidentDetail(**out, history=hist)

    @router.get("/incidents/{incident_id}")
    def get_incident(session: DbSession, principal: Reader, incident_id: int) -> IncidentDetail:
        return detail(session, incidents.get_visible(session, principal, incident_id))

    @router.post("/incidents", status_code=201)
    def create_incident(session: DbSession, principal: Manager, body: IncidentCreate) -> IncidentDetail:
        """Enter an incident detected by a camera, an inspection, the press or a citizen (audited)."""
        ward = body.ward_code
        if ward is None and body.lat is not None and body.lon is not None:
            locator = rt.locator(session)
            ward = locator.locate(body.lat, body.lon) if locator is not None else None
        if ward is None or ward not in CITY_WARD_CODES:
            raise Problem(
                422,
                "Cần phường của thành phố ('ward_code', hoặc 'lat'/'lon' trong sáu phường) (a city ward is required).",
                code="unknown-ward",
            )
        agency = rt.settings.incident_agency
        if not principal.can_access(ward_code=ward, agency_id=agency):
            raise Problem(403, "Ngoài phạm vi của bạn (outside your remit).", code="out-of-remit")
        detected = body.detected_at or utcnow()
        if detected.tzinfo is None:
            detected = detected.replace(tzinfo=VN_TZ)
        if detected > utcnow() + timedelta(minutes=5):
            raise Problem(422, "'detected_at' ở tương lai (in the future).", code="bad-time")
        incident = incidents.open_incident(
            session,
            kind=body.kind,
            source=body.source,
            title=body.title,
            description=body.description,
            agency_id=agency,
            detected_at=detected,
            actor=principal,
            key=body.key,
            ward_code=ward,
            lat=body.lat,
            lon=body.lon,
        )
        return detail(session, incident)

    @router.post("/incidents/{incident_id}/confirm")
    def confirm_incident(session: DbSession, principal: Manager, incident_id: int, body: ConfirmIn) -> IncidentDetail:
        incident = incidents.get_visible(session, principal, incident_id)
        return detail(
            session, incidents.confirm(session, principal, incident, key=body.key, kind=body.kind, note=body.note)
        )

    @router.post("/incidents/{incident_id}/close")
    def close_incident(session: DbSession, principal: Manager, incident_id: int, body: CloseIn) -> IncidentDetail:
        incident = incidents.get_visible(session, principal, incident_id)
        return detail(session, incidents.close(session, principal, incident, body.resolution))

    @router.post("/incidents/{incident_id}/dismiss")
    def dismiss_incident(session: DbSession, principal: Manager, incident_id: int, body: DismissIn) -> IncidentDetail:
        incident = incidents.get_visible(session, principal, incident_id)
        return detail(session, incidents.dismiss(session, principal, incident, body.reason))

    @router.post("/incidents/{incident_id}/merge")
    def merge_incident(session: DbSession, principal: Manager, incident_id: int, body: MergeIn) -> IncidentDetail:
        """Fold this incident into ``into`` (the same event reported twice); answers the target."""
        incident = incidents.get_visible(session, principal, incident_id)
        target = incidents.get_visible(session, principal, body.into)
        return detail(session, incidents.merge(session, principal, incident, target, body.note))

    # -- staff: the dashboard panel -------------------------------------------
    @router.get("/panel", response_class=HTMLResponse)
    def panel(request: Request, session: DbSession, principal: Reader) -> HTMLResponse:
        """Dashboard fragment: worst air stations, gauges on alert, open incidents."""
        lang = negotiate_language(request)
        en = lang == "en"
        now = air_now(session, rt, lang)
        worst = sorted((s for s in now.stations if s.aqi is not None), key=lambda s: -(s.aqi or 0))[:3]
        air_items = "".join(
            f'<li><span class="env-dot" data-band="{s.band.level if s.band else 0}"></span> '
            f"{escape(s.name)} <strong>{s.aqi}</strong> {escape(s.band.name if s.band else '')}</li>"
            for s in worst
        )
        on_alert = [g for g in service.stations(session, "gauge") if (g.alert_level or 0) > 0]
        gauge_items = "".join(
            f"<li>{escape(g.name)}: <strong>{g.level_m:.2f} m</strong> · "
            f"{escape(alert_label(g.alert_level, lang))}</li>"
            for g in on_alert
            if g.level_m is not None
        )
        open_count = int(
            session.scalar(
                select(func.count())
                .select_from(Incident)
                .where(Incident.status.in_(incidents.OPEN), incidents.visible_to(principal))
            )
            or 0
        )
        html = (
            '<div class="env-panel">'
            f"<h3>{'Air (worst stations)' if en else 'Không khí (trạm xấu nhất)'}</h3>"
            f"<ul>{air_items or ('<li>—</li>')}</ul>"
            f"<h3>{'Gauges on alert' if en else 'Trạm mực nước đang báo động'}</h3>"
            f"<ul>{gauge_items or ('<li>' + ('None' if en else 'Không có') + '</li>')}</ul>"
            f'<p><strong data-kpi="open-incidents">{open_count}</strong> '
            f"{'open pollution incidents' if en else 'sự cố ô nhiễm đang mở'} · "
            f'<a href="/khong-khi">{"Public page" if en else "Trang công khai"}</a></p></div>'
        )
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    return router
