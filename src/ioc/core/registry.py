"""What modules register with the core, declared as data.

A module is a package ``ioc.modules.<name>`` with a ``setup(ctx: ModuleContext)`` function.
The app factory calls it once; the module then adds its routers, KPI providers, dashboard
panels, open datasets, event subscribers, permissions, translations and periodic jobs here. The core and
the other modules never import it: they read what it registered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from sqlalchemy.orm import Session
from starlette.routing import BaseRoute

from ioc.core.jobs import Job, JobFn

if TYPE_CHECKING:
    from ioc.core.db import Database
    from ioc.core.events import EventBus
    from ioc.settings import Settings

MeasureFn = Callable[[Session, date, date, str | None], float | None]
#: Several periods at once: ``(session, [(first day, last day), ...], ward or None) -> [value, ...]``.
ManyMeasureFn = Callable[[Session, list[tuple[date, date]], str | None], list[float | None]]
"""A KPI measure: ``fn(session, start, end, ward_code) -> value``.

The period is ``start`` to ``end`` **inclusive**: both are local (Asia/Ho_Chi_Minh) calendar
days, so a month is ``(date(2026, 6, 1), date(2026, 6, 30))`` and a measure counting events
takes those from the start of ``start`` to the end of ``end`` (before ``end + 1 day``).
``ward_code`` is a GSO code of a current ward, or None for the whole city. The value is None
when the measure has no data for the period (not 0).
"""


#: The cards of the Vinh Smart home page that modules can fill with a link.
HOME_CARDS = ("air", "flood", "report", "track", "kpi")


@dataclass(frozen=True)
class Panel:
    """A dashboard panel a module offers: a title key in the catalogue and the URL of its fragment."""

    id: str
    title_key: str
    url: str
    order: int = 100


@dataclass(frozen=True)
class MapLayer:
    """A layer of the operators' map (and, when ``public``, of the citizens' app) that a module offers.

    ``url`` answers a GeoJSON FeatureCollection of points whose feature properties carry
    ``label`` (text), ``colour`` (CSS hex, e.g. the AQI band's), ``status`` (a code) and,
    optionally, ``ward`` (GSO code of the ward) and ``time`` (ISO 8601, when it was observed or
    last changed). The dashboard draws circle markers in ``colour``, clusters them, filters them
    by ward and time, and fetches the layer again when an event matching ``topics`` (globs such
    as ``"alarm.*"``) arrives on the event stream. ``public`` layers are listed to anyone (the
    URL must then answer without login and show no personal data); the others only to staff.
    """

    id: str
    title_key: str
    url: str
    kind: str = "points"
    order: int = 100
    public: bool = False
    topics: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dataset:
    """An open dataset a module publishes (read by the open-data module)."""

    id: str
    title_vi: str
    title_en: str
    url: str
    media_type: str = "application/json"
    licence: str = "CC-BY-4.0"


@dataclass(frozen=True)
class KpiMeasure:
    """A named measure a module computes from the data it owns."""

    name: str
    fn: MeasureFn
    unit: str = ""
    #: Where a person finds the rows behind a value: a URL template with ``{start}`` and
    #: ``{end}`` (ISO dates, the end inclusive) and ``{ward}`` (the ward code, empty for the
    #: city), e.g. ``"/api/v1/services/dossiers?received_from={start}&received_to={end}"``.
    #: The KPI lineage shows it filled in.
    source_url: str | None = None
    #: Optional: the same values for several periods with one grouped query (a KPI's series);
    #: without it ``fn`` is called once per period.
    many: ManyMeasureFn | None = None

    def source_for(self, start: date, end: date, ward_code: str | None) -> str | None:
        """:attr:`source_url` filled in for a period and a ward (None without a template)."""
        if self.source_url is None:
            return None
        return self.source_url.format(start=start.isoformat(), end=end.isoformat(), ward=ward_code or "")


@dataclass
class Registry:
    """Everything the modules registered."""

    routers: list[tuple[APIRouter, str]] = field(default_factory=list)
    routes: list[BaseRoute] = field(default_factory=list)
    measures: dict[str, KpiMeasure] = field(default_factory=dict)
    panels: list[Panel] = field(default_factory=list)
    map_layers: list[MapLayer] = field(default_factory=list)
    datasets: dict[str, Dataset] = field(default_factory=dict)
    permissions: dict[str, str] = field(default_factory=dict)
    grants: dict[str, set[str]] = field(default_factory=dict)
    translations: dict[str, dict[str, str]] = field(default_factory=dict)
    static_dirs: dict[str, Path] = field(default_factory=dict)
    body_limits: dict[str, int] = field(default_factory=dict)
    template_dirs: dict[str, Path] = field(default_factory=dict)
    seeders: dict[str, Callable[[Session], object]] = field(default_factory=dict)
    home_links: dict[str, str] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    modules: list[str] = field(default_factory=list)

    def add_router(self, router: APIRouter, prefix: str = "") -> None:
        self.routers.append((router, prefix))

    def add_route(self, route: BaseRoute) -> None:
        """A route tried before every router's (the most frequent requests), at its full path."""
        self.routes.append(route)

    def add_measure(self, measure: KpiMeasure) -> None:
        if measure.name in self.measures:
            raise ValueError(f"measure {measure.name!r} registered twice")
        self.measures[measure.name] = measure

    def add_panel(self, panel: Panel) -> None:
        self.panels.append(panel)
        self.panels.sort(key=lambda p: (p.order, p.id))

    def add_map_layer(self, layer: MapLayer) -> None:
        """Offer a map layer (see :class:`MapLayer`); ids are global, e.g. ``"air-stations"``."""
        if any(existing.id == layer.id for existing in self.map_layers):
            raise ValueError(f"map layer {layer.id!r} registered twice")
        self.map_layers.append(layer)
        self.map_layers.sort(key=lambda item: (item.order, item.id))

    def add_dataset(self, dataset: Dataset) -> None:
        if dataset.id in self.datasets:
            raise ValueError(f"dataset {dataset.id!r} registered twice")
        self.datasets[dataset.id] = dataset

    def add_permission(self, name: str, description: str, roles: tuple[str, ...] = ()) -> None:
        """Declare a permission (also usable as an API-key scope) and the roles that hold it."""
        self.permissions[name] = description
        for role in roles:
            self.grant(role, name)

    def grant(self, role: str, permission: str) -> None:
        """Give ``role`` (admin, operator, agency_officer, ward_officer, viewer) a permission."""
        self.grants.setdefault(role, set()).add(permission)

    def add_translations(self, lang: str, messages: dict[str, str]) -> None:
        self.translations.setdefault(lang, {}).update(messages)

    def add_static(self, mount: str, directory: Path) -> None:
        self.static_dirs[mount] = directory

    def add_templates(self, prefix: str, directory: Path) -> None:
        """Serve a module's Jinja2 templates as ``<prefix>/<name>.html``; they may extend ``base.html``."""
        self.template_dirs[prefix] = directory

    def add_home_link(self, card: str, url: str) -> None:
        """Make a card of the public home page (air, flood, report, track, kpi) lead to ``url``."""
        if card not in HOME_CARDS:
            raise ValueError(f"unknown home card {card!r}; one of {', '.join(HOME_CARDS)}")
        self.home_links[card] = url

    def add_seeder(self, name: str, fn: Callable[[Session], object]) -> None:
        """Demo data a module adds to ``ioc seed --demo`` (after the core's agencies and users)."""
        if name in self.seeders:
            raise ValueError(f"seeder {name!r} registered twice")
        self.seeders[name] = fn

    def add_job(self, name: str, every_seconds: float, fn: JobFn) -> None:
        """Run ``fn(db)`` every ``every_seconds`` while the app serves, on one worker at a time.

        The app's scheduler (:mod:`ioc.core.jobs`) runs it in a background thread; ``fn`` opens
        its own sessions. Names are global: prefix them with the module (``"kpi.snapshots"``).
        """
        if name in self.jobs:
            raise ValueError(f"job {name!r} registered twice")
        self.jobs[name] = Job(name, every_seconds, fn)

    def allow_body(self, path_prefix: str, max_bytes: int) -> None:
        """Let requests under ``path_prefix`` carry bodies up to ``max_bytes`` (e.g. photo uploads)."""
        self.body_limits[path_prefix] = max_bytes


@dataclass
class ModuleContext:
    """What a module's ``setup(ctx)`` receives."""

    name: str
    settings: Settings
    db: Database
    bus: EventBus
    registry: Registry
    extra: dict[str, Any] = field(default_factory=dict)
