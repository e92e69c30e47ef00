"""Retrieve Context Source Identity Information (v1.9.1 §5.15.1, ``GET /info/sourceIdentity``).

The broker answers with its ContextSourceIdentity (§5.2.40): an ``id`` and a
``contextSourceAlias`` (what a peer would store in a registration to recognise loops), how long
this process has been serving (``contextSourceUptime``, an ISO 8601 duration) and its clock
(``contextSourceTimeAt``). Both identifiers are derived from the database the broker serves, so
every worker of one installation answers the same and another installation differently; each
tenant has its own alias (Table 5.2.40-1, multi-tenancy), the same on every call.
"""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Request, Response

from ioc.core.db import get_database, utcnow

from .entity import format_datetime
from .errors import NgsiRoute
from .http import PREFIX, Broker, accept, query_context, respond, tenant_of

PATH = "/info/sourceIdentity"


def source_uuid(database_url: str) -> uuid.UUID:
    """The installation's identity: a name-based UUID of its database's URL (password hidden)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, "ioc-context-source:" + database_url)


def alias(source: uuid.UUID, tenant: str) -> str:
    """The alias of a tenant of the broker (the default tenant's is the broker's own id)."""
    return f"urn:ngsi-ld:ContextSource:{uuid.uuid5(source, tenant) if tenant else source}"


def iso_duration(seconds: float) -> str:
    """``P<d>DT<h>H<m>M<s>S``, whole seconds."""
    whole = int(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    return f"P{days}DT{hours}H{minutes}M{secs}S"


def build_router(broker: Broker) -> APIRouter:
    router = APIRouter(prefix=PREFIX, route_class=NgsiRoute, tags=["NGSI-LD"])
    started = time.monotonic()

    @router.get(PATH)
    def source_identity(request: Request) -> Response:
        media = accept(request)
        tenant = tenant_of(request)  # a tenant need not exist yet to have its alias
        ctx = query_context(broker, request)
        source = source_uuid(str(get_database(request).engine.url))
        body = {
            "id": f"urn:ngsi-ld:ContextSource:{source}",
            "type": "ContextSourceIdentity",
            "contextSourceAlias": alias(source, tenant),
            "contextSourceUptime": iso_duration(time.monotonic() - started),
            "contextSourceTimeAt": format_datetime(utcnow()),
        }
        return respond(body, ctx, media)

    return router


__all__ = ["PATH", "alias", "build_router", "iso_duration", "source_uuid"]
