"""NGSI-LD context broker (ETSI GS CIM 009 v1.8) under ``/ngsi-ld/v1``.

Entities, queries, batch operations, discovery and @contexts; every change is stored with its
history and published on the core event bus (``context.entity.*``); other modules store
entities by publishing on ``context.upsert``. See docs/CONTEXT.md.
"""

from __future__ import annotations

import logging

from ioc.core.registry import MapLayer, ModuleContext

from . import entity_maps, expiry, identity, validation
from .api import build_fallback_router, build_router
from .contexts import DbContextSource
from .devices import build_router as build_device_router
from .devices import demo_seeder
from .errors import direct_routes
from .events import UPSERT, upsert_handler
from .http import PREFIX, Broker
from .ingest import Ingestor, mqtt_lifespan, offline_job
from .ld import ContextLoader
from .notify import Notifier, NotifySettings
from .settings import NgsiLdSettings
from .subscriptions import CONSUMER, Matcher, build_subscription_router, periodic_job, sweep_job
from .temporal import build_temporal_router
from .writes import EntityWrites

log = logging.getLogger("ioc.context")

READERS = ("admin", "operator", "agency_officer", "ward_officer", "viewer")


def setup(ctx: ModuleContext) -> None:
    settings = NgsiLdSettings()
    if isinstance(ctx.extra.get("ngsild_settings"), NgsiLdSettings):
        settings = ctx.extra["ngsild_settings"]
    if settings.anonymous_writes:
        log.warning(
            "IOC_NGSILD_ANONYMOUS_WRITES=true: ANYONE WHO CAN REACH /ngsi-ld/v1 CAN WRITE AND READ CONTEXT DATA "
            "WITHOUT CREDENTIALS. Use this only on a closed network or for a conformance run."
        )
    source = DbContextSource(ctx.db)
    loader = ContextLoader(
        lambda: source,
        timeout=settings.context_timeout_seconds,
        refresh_seconds=settings.context_refresh_seconds,
        max_bytes=settings.context_max_bytes,
    )
    broker = Broker(settings, loader, EntityWrites(ctx.db, loader.core))
    ctx.extra["ngsild_broker"] = broker
    # Routes are tried one after another: the entities' first (most requests), the catch-all last.
    entities = build_router(broker)
    ctx.registry.add_router(entities)
    for route in direct_routes(entities, ("retrieve_entity", "update_attrs")):
        ctx.registry.add_route(route)
    ctx.registry.add_router(build_temporal_router(broker))
    notify_settings = NotifySettings()
    notifier = Notifier(ctx.db, notify_settings, lambda: ctx.bus.running)
    ctx.registry.add_router(build_subscription_router(broker, notifier))
    ctx.registry.add_router(entity_maps.build_router(broker))
    ctx.registry.add_router(identity.build_router(broker))
    ctx.registry.add_router(build_fallback_router())
    ctx.registry.add_job("context.entity_maps.sweep", 300, entity_maps.sweep)
    ctx.registry.add_job("context.expiry.sweep", settings.expiry_sweep_seconds, expiry.sweep_job(loader))
    ctx.registry.add_permission(
        "context:write", "Ghi dữ liệu ngữ cảnh NGSI-LD / write NGSI-LD context data", roles=("admin", "operator")
    )
    ctx.registry.add_permission(
        "context:read", "Đọc dữ liệu ngữ cảnh NGSI-LD / read NGSI-LD context data", roles=READERS
    )
    ctx.registry.allow_body(PREFIX, settings.max_body_bytes)
    ctx.registry.allow_body(PREFIX + "/entityOperations", settings.batch_max_bytes)
    ctx.bus.consume("context.upsert", UPSERT.name, upsert_handler(loader))
    # Subscriptions: matching as a durable consumer, delivery off the write path (docs/CONTEXT.md).
    matcher = Matcher(loader, notifier)
    ctx.bus.consume(CONSUMER, "context.entity.*", matcher.handle, start="latest")
    periodic = periodic_job(matcher, notify_settings)
    ctx.registry.add_job("context.subscriptions.periodic", notify_settings.periodic_tick_seconds, periodic)
    ctx.registry.add_job("context.notifications.sweep", notify_settings.sweep_seconds, sweep_job(notifier))
    # Devices, data-model validation, telemetry over HTTP and MQTT (docs/CONTEXT.md, "Devices ...").
    validation.configure(settings.validate_models)
    ingestor = Ingestor(loader, misses=settings.device_offline_misses)
    mqtt = ctx.settings.mqtt
    lifespan = (
        mqtt_lifespan(ctx.db, ingestor, mqtt.url, mqtt.topic_prefix, settings.mqtt_share_group)
        if mqtt.url and settings.mqtt_ingest
        else None
    )
    ctx.registry.add_router(build_device_router(ingestor, lifespan))
    ctx.registry.add_map_layer(
        MapLayer("devices", "context.layer.devices", "/api/v1/devices/map.geojson", "devices", 40, False, ("alarm.*",))
    )
    ctx.registry.add_translations("vi", {"context.layer.devices": "Thiết bị IoT (hoạt động / mất kết nối)"})
    ctx.registry.add_translations("en", {"context.layer.devices": "IoT devices (online / offline)"})
    ctx.registry.add_permission(
        "devices:manage", "Quản lý thiết bị và khoá thiết bị / manage devices and keys", roles=("admin", "operator")
    )
    ctx.registry.add_seeder("context", demo_seeder(ingestor))
    ctx.registry.add_job("context.devices.offline", settings.device_check_seconds, offline_job(ingestor))
