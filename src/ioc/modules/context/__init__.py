"""NGSI-LD context broker (ETSI GS CIM 009 v1.8) under ``/ngsi-ld/v1``.

Entities, queries, batch operations, discovery and @contexts; every change is stored with its
history and published on the core event bus (``context.entity.*``); other modules store
entities by publishing on ``context.upsert``. See docs/CONTEXT.md.
"""

from __future__ import annotations

import logging

from ioc.core.registry import ModuleContext

from .api import PREFIX, build_router
from .contexts import DbContextSource
from .events import UPSERT, upsert_handler
from .http import Broker
from .ld import ContextLoader
from .settings import NgsiLdSettings

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
    broker = Broker(settings, loader)
    ctx.extra["ngsild_broker"] = broker
    ctx.registry.add_router(build_router(broker))
    ctx.registry.add_permission(
        "context:write", "Ghi dữ liệu ngữ cảnh NGSI-LD / write NGSI-LD context data", roles=("admin", "operator")
    )
    ctx.registry.add_permission(
        "context:read", "Đọc dữ liệu ngữ cảnh NGSI-LD / read NGSI-LD context data", roles=READERS
    )
    ctx.registry.allow_body(PREFIX, settings.max_body_bytes)
    ctx.registry.allow_body(PREFIX + "/entityOperations", settings.batch_max_bytes)
    ctx.bus.consume("context.upsert", UPSERT.name, upsert_handler(loader))
