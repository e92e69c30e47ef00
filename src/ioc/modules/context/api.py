"""The NGSI-LD API routes under ``/ngsi-ld/v1`` (entities, discovery, @contexts); batch in batch.py."""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from ioc.core.auth import Principal
from ioc.core.db import Database, utcnow

from . import contexts, entity_maps, linked, service, store, versions
from .entity import (
    EntityInput,
    check_name,
    check_scope,
    parse_attribute,
    parse_attributes,
    parse_entity,
    parse_types,
)
from .errors import NgsiError, NgsiRoute, bad_request, invalid_request, not_found
from .events import write_changes
from .http import (
    GEOJSON,
    JSON,
    PREFIX,
    Body,
    Broker,
    OptionalPrincipal,
    accept,
    add_page_links,
    body_context,
    bool_param,
    csv_param,
    dataset_ids,
    int_param,
    loop_reads,
    ngsi_principal,
    options_of,
    prefers_json_body,
    query_context,
    read_by_key,
    read_json,
    readable_types,
    require_write,
    respond,
    tenant_of,
    writes_on_loop,
)
from .ld import CORE_CONTEXT_URL, ActiveContext, core_document, is_core_url, is_uri
from .query import TypeExpr, has_links, parse_geoq, parse_q, parse_type_expr
from .render import RenderOptions, _lang_ranges, geojson_feature, render_entity
from .scope import parse_scope_query
from .search import (
    EntityQuery,
    Ordering,
    attribute_details,
    attribute_names,
    compile_pattern,
    order_entities,
    parse_ordering,
    run_query,
    system_only,
    type_details,
    type_names,
)
from .store import ChangeSet, StoredEntity, check_tenant, load_entities
from .writes import Change

# Query parameters each operation understands (§6.3.20: any other is 400 InvalidRequest).
_LOCAL = frozenset({"local", "via"})
_RENDER = frozenset({"options", "format", "lang", "pick", "omit", "attrs", "datasetId", "join", "joinLevel"})
_RENDER_MORE = frozenset(
    {"containedBy", "entityMap", "entityMapLifetime", "collect", "expandValues", "jsonKeys", "geometryProperty"}
)
P_CREATE = _LOCAL
P_QUERY = (
    _LOCAL
    | _RENDER
    | _RENDER_MORE
    | frozenset(
        {
            "id",
            "type",
            "idPattern",
            "q",
            "csf",
            "georel",
            "geometry",
            "coordinates",
            "geoproperty",
            "geoQ",
            "scopeQ",
            "limit",
            "offset",
            "count",
            "orderBy",
            "orderFrom",
            "collation",
            "doNotCompact",
            "expandValues",
        }
    )
)
P_RETRIEVE = _LOCAL | _RENDER | _RENDER_MORE | frozenset({"type"})
P_WRITE = _LOCAL | frozenset({"options", "type"})
P_DELETE_ATTR = _LOCAL | frozenset({"datasetId", "deleteAll", "type"})
#: Discovery (§6.25–6.28): the lists take ``details`` (and ``count``), one type or attribute none (5710_01, 577_01).
P_DISCOVERY = _LOCAL | frozenset({"details", "count"})
P_DISCOVERY_ONE = _LOCAL
P_CONTEXTS = frozenset({"details", "kind", "reload"})
P_PURGE = _LOCAL | frozenset(
    {"type", "id", "idPattern", "attrs", "q", "scopeQ", "georel", "geometry", "coordinates", "geoproperty"}
    | {"keep", "drop", "expandValues"}
)
P_NONE: frozenset[str] = frozenset()


class Unread(enum.Enum):
    """An entity not read yet (``_retrieve_entity``'s ``found``)."""

    UNREAD = "unread"


#: The path parameter of Retrieve Entity, which its handler reads itself, as OpenAPI describes it.
_ENTITY_ID_PARAMETER = {"name": "entity_id", "in": "path", "required": True, "schema": {"type": "string"}}


def check_params(request: Request, allowed: frozenset[str]) -> None:
    """400 InvalidRequest for a query parameter the operation does not define (§6.3.20)."""
    unknown = sorted({k for k in request.query_params if k not in allowed})
    if unknown:
        raise invalid_request(f"Unknown query parameter(s): {', '.join(unknown)}.")


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


@contextmanager
def write_session(request: Request, broker: Broker, tenant: str) -> Iterator[tuple[Session, ChangeSet]]:
    """A transaction and a change set; flushed, published and committed on success, rolled back on error."""
    with _db(request).session() as session:
        cs = ChangeSet(tenant, utcnow())
        yield session, cs
        write_changes(session, cs, broker.loader.core)


def attribute_deletion(
    request: Request, broker: Broker, entity_id: str, attr_id: str
) -> tuple[str, str, ActiveContext, str, str | None, bool]:
    """What a Delete Attribute request names (current or temporal): tenant, entity id, @context,
    expanded attribute name, ``datasetId`` (a URI) and ``deleteAll``."""
    tenant = tenant_of(request)
    eid = _entity_id(entity_id)
    ctx = query_context(broker, request)
    check_name(attr_id)
    dataset_id = request.query_params.get("datasetId")
    if dataset_id is not None and not is_uri(dataset_id):
        raise bad_request("datasetId must be a URI.")
    return tenant, eid, ctx, ctx.expand(attr_id), dataset_id, bool_param(request, "deleteAll")


#: The ``options`` of a read (§6.3.7, §6.3.11, §6.3.12): representations and ``sysAttrs``.
_READ_OPTIONS = frozenset({"keyValues", "simplified", "concise", "normalized", "sysAttrs"})


def render_options(request: Request, ctx: ActiveContext, *, default_sys: bool = False) -> RenderOptions:
    """The representation a read asks for with ``options``, ``format`` (which wins), ``lang`` and the
    projections; an ``options`` or ``format`` value the operation does not define is 400
    InvalidRequest (§6.3.20), as for the temporal API."""
    if not request.query_params:  # the most frequent read: the normalized default
        return RenderOptions(sys_attrs=default_sys)
    opts = options_of(request)
    fmt = request.query_params.get("format")
    unknown = opts - _READ_OPTIONS
    if unknown:
        raise invalid_request(f"Unknown options: {', '.join(sorted(unknown))}.")
    if fmt is None:
        if "keyValues" in opts or "simplified" in opts:
            fmt = "keyValues"
        elif "concise" in opts:
            fmt = "concise"
        else:
            fmt = "normalized"
    if fmt == "simplified":
        fmt = "keyValues"
    if fmt not in ("normalized", "concise", "keyValues"):
        raise invalid_request(f"Invalid format {fmt!r}.")
    join = request.query_params.get("join")
    pick = linked.projection_param(request.query_params.getlist("pick"), ctx, "pick", join)
    omit = linked.projection_param(request.query_params.getlist("omit"), ctx, "omit", join)
    attrs = csv_param(request, "attrs")
    if pick is not None and omit is not None:
        raise bad_request("pick and omit cannot be used together.")
    if attrs is not None and (pick is not None or omit is not None):
        raise bad_request("attrs cannot be used together with pick or omit (§4.21).")

    def names(items: list[str]) -> set[str]:
        return {i if i in ("id", "type", "scope") else ctx.expand(i) for i in items} | {"id", "type", "scope"}

    pick_set = linked.top_names(pick, omit=False) if pick is not None else None
    if attrs is not None:
        pick_set = names(attrs)
    datasets = dataset_ids(csv_param(request, "datasetId"))  # §4.5.5: the instances shown
    return RenderOptions(
        fmt=fmt,
        sys_attrs="sysAttrs" in opts or default_sys,
        lang=_language_filter(request.query_params.get("lang")),
        pick=pick_set,
        omit=linked.top_names(omit, omit=True) if omit is not None else None,
        datasets=frozenset(datasets) if datasets is not None else None,
    )


def _language_filter(raw: str | None) -> str | None:
    """``lang`` (§4.15): a ``*`` ranked below a named language only means "else any language", the
    fallback of the filter anyway, so it is dropped (``fr-CH,fr;q=0.9,en;q=0.8,*;q=0.5`` picks French,
    018_07_04); a ``*`` ranked first is kept as given."""
    if raw is None or "*" not in raw:
        return raw
    ranges = _lang_ranges(raw)
    if not ranges or ranges[0] == "*":
        return raw
    return ",".join(r for r in ranges if r != "*")


def _entity_id(raw: str) -> str:
    if not is_uri(raw):
        raise bad_request(f"The entity id must be a URI, got {raw!r}.")
    return raw


def _gate(request: Request, ctx: ActiveContext) -> TypeExpr | None:
    """The optional ``type`` selector of an operation on one entity (§4.17, e.g. §5.6.3.4)."""
    raw = request.query_params.get("type")
    if raw is None:
        return None
    if not raw:
        raise bad_request("type must not be empty.")
    return parse_type_expr(raw, ctx)


def _load_one(session: Session, tenant: str, entity_id: str, gate: TypeExpr | None = None) -> StoredEntity:
    check_tenant(session, tenant)
    return _existing(load_entities(session, tenant, [entity_id]).get(entity_id), entity_id, gate)


def _existing(entity: StoredEntity | None, entity_id: str, gate: TypeExpr | None) -> StoredEntity:
    """The entity loaded, when there is one and it has a type the ``type`` selector asks for (§4.17)."""
    if entity is None or (gate is not None and not gate.matches(entity.types)):
        what = "" if gate is None else " with the type selected"
        raise not_found(f"The entity {entity_id}{what} does not exist.")
    return entity


def _update_response(result: service.UpdateResult) -> Response:
    if not result.not_updated:
        return Response(status_code=204)
    return JSONResponse(result.to_json(), status_code=207)


def build_router(broker: Broker) -> APIRouter:
    router = APIRouter(prefix=PREFIX, route_class=NgsiRoute, tags=["NGSI-LD"])

    def entity_write(
        request: Request, principal: Principal | None, entity_id: str, raw: bytes, *, patch: bool
    ) -> tuple[str, str, Any, ActiveContext]:
        """What a write to one entity checks and reads first, in this order: its parameters, the
        caller's right to write, the tenant, the id, then the body and its @context."""
        check_params(request, P_WRITE)
        require_write(broker, principal)
        tenant = tenant_of(request)
        eid = _entity_id(entity_id)
        body, ct = read_json(request, raw, patch=patch)
        return tenant, eid, body, body_context(broker, request, body, ct)

    # ------------------------------------------------------------------ entities
    @router.post("/entities", status_code=201)
    def create_entity(request: Request, principal: OptionalPrincipal, raw: Body) -> Response:
        check_params(request, P_CREATE)
        require_write(broker, principal)
        tenant = tenant_of(request)
        body, ct = read_json(request, raw)
        ctx = body_context(broker, request, body, ct)
        inp = parse_entity(body, ctx)
        assert inp.id is not None
        entity_id = inp.id

        def create(session: Session, cs: ChangeSet) -> None:
            service.create(cs, load_entities(session, tenant, [entity_id]).get(entity_id), inp)

        broker.writes.run(tenant, entity_id, create)
        headers = {"Location": f"{PREFIX}/entities/{quote(inp.id, safe=':')}"}
        if tenant:
            headers["NGSILD-Tenant"] = tenant
        return Response(status_code=201, headers=headers)

    def checked_query(
        request: Request, ctx: ActiveContext, readable: set[str] | None
    ) -> tuple[EntityQuery, Ordering | None, linked.Join | None]:
        """The selection, order and Linked Entity retrieval of a Query Entities request (also making
        an entity map), checked: a q on Linked Entities needs a join as deep (§5.7.2.4)."""
        p = request.query_params
        query = _entity_query(request, ctx, readable)
        # §5.7.2.4: attrs and q only narrow a query when they name a non-system attribute.
        attrs_ok = "attrs" in p and not system_only(csv_param(request, "attrs") or [])
        q_ok = "q" in p and not system_only(_q_names(p["q"]))
        if (
            not (any(k in p for k in ("idPattern", "type", "georel", "geoQ")) or attrs_ok or q_ok)
            and p.get("local") != "true"
        ):
            # §5.7.2.4: a list of ids alone selects nothing by itself (019_03_05)
            raise bad_request("Give at least one of type, idPattern, attrs, q or a geo-query (or local=true).")
        if "csf" in p:
            parse_q(p["csf"], ctx)  # §5.7.2.4: a context source filter must at least be valid
        join = linked.join_param(p, ctx)
        linked.require_join(join, linked.link_depth(query.q) if query.q is not None else 0, "q")
        return query, ordering_param(request, ctx), join

    def new_map(
        session: Session,
        tenant: str,
        query: EntityQuery,
        ctx: ActiveContext,
        ordering: Ordering | None,
        life: timedelta,
    ) -> entity_maps.EntityMap:
        """An entity map of everything the query matches, in the order of its pages (§5.14.4)."""
        found, _ = query_page(session, tenant, query, ctx, entity_maps.MAX_ENTITIES + 1, 0, False, ordering)
        return entity_maps.create(session, tenant, [e.id for e in found], life)

    @router.get("/entities")
    def query_entities(request: Request, principal: OptionalPrincipal) -> Response:
        check_params(request, P_QUERY)
        media = accept(request, geo=True)
        tenant = tenant_of(request)
        ctx = query_context(broker, request)
        readable = readable_types(broker, principal)
        if "geometryProperty" in request.query_params and media != GEOJSON:
            raise bad_request("geometryProperty only goes with Accept: application/geo+json (§5.7.2.4).")
        query, ordering, join = checked_query(request, ctx, readable)
        asked = entity_maps.map_request(request, broker.settings)
        opts = render_options(request, ctx)
        limit = int_param(request, "limit", broker.settings.default_limit, maximum=broker.settings.max_limit)
        offset = int_param(request, "offset", 0)
        count = bool_param(request, "count")
        if limit == 0 and not count:
            raise bad_request("limit=0 is only allowed with count=true.")
        # one entity past the page tells whether a next page exists when no count is asked for
        probe = limit + 1 if limit > 0 and not count else limit
        with _db(request).session() as session:
            check_tenant(session, tenant)
            # §5.5.9.3: a live entity map fixes the entities considered; the filters still apply
            emap = entity_maps.use(session, tenant, asked)
            if emap is None and asked.any:
                emap = new_map(session, tenant, query, ctx, ordering, asked.lifetime)
            if emap is not None:
                query.ids = emap.restrict(query.ids)
            entities, total = query_page(session, tenant, query, ctx, probe, offset, count, ordering)
            more = len(entities) > limit if total is None else offset + limit < total
            items = linked.render_joined(session, tenant, entities[:limit], ctx, opts, join, readable)
        if opts.pick is not None or opts.omit is not None:
            # §4.21: an entity the projection leaves nothing of is not in the answer (019_17_01)
            items = [(entity, body) for entity, body in items if body]
        headers = {"NGSILD-Results-Count": str(total)} if total is not None else {}
        headers.update(emap.headers() if emap is not None else {})
        status = 201 if emap is not None and emap.created else 200
        pref = versions.preference(request.headers)  # §4.3.6.8: Prefer: ngsi-ld=<version>
        altered = versions.amend_entities((body for _, body in items), pref, opts.fmt)
        response = _entities_response(request, items, ctx, opts, media, headers, status)
        add_page_links(response, request, limit=limit, offset=offset, more=more, media=media)
        return versions.answer(response, pref, altered)

    @router.get("/entityMaps")
    def create_map(request: Request, principal: OptionalPrincipal) -> Response:
        """Create EntityMap for Query Entities (§5.14.4): the parameters of Query Entities."""
        check_params(request, P_QUERY)
        media = accept(request)
        tenant = tenant_of(request)
        ctx = query_context(broker, request)
        readable = readable_types(broker, principal)
        query, ordering, _ = checked_query(request, ctx, readable)
        life = entity_maps.map_request(request, broker.settings).lifetime
        with _db(request).session() as session:
            check_tenant(session, tenant)
            emap = new_map(session, tenant, query, ctx, ordering, life)
        return respond(emap.body(), ctx, media, status=201, headers=emap.headers())

    def _entities_response(
        request: Request,
        items: list[tuple[StoredEntity, dict[str, Any]]],
        ctx: ActiveContext,
        opts: RenderOptions,
        media: str,
        headers: dict[str, str],
        status: int = 200,
    ) -> Response:
        """The rendered entities (with their Linked Entities, §4.5.23) as an array or a FeatureCollection."""
        if media == GEOJSON:
            geo_prop = ctx.expand(request.query_params.get("geometryProperty") or "location")
            features = [geojson_feature(e, ctx, opts, geo_prop, body) for e, body in items]
            return respond(
                {"type": "FeatureCollection", "features": features},
                ctx,
                media,
                status=status,
                headers=headers,
                body_json=prefers_json_body(request),
            )
        return respond([body for _, body in items], ctx, media, status=status, headers=headers)

    @router.delete("/entities")
    def purge_entities(request: Request, principal: OptionalPrincipal) -> Response:
        """Purge Entities (§5.6.21): delete the entities a selection matches or, with ``drop``, the
        Attributes it names (``keep``: all but those) from each of them."""
        check_params(request, P_PURGE)
        require_write(broker, principal)
        tenant = tenant_of(request)
        ctx = query_context(broker, request)
        keep, drop = csv_param(request, "keep"), csv_param(request, "drop")
        if keep is not None and drop is not None:
            raise bad_request("keep and drop cannot be used together (§5.6.21.4).")
        attrs = csv_param(request, "attrs")
        if attrs and any("{" in a for a in attrs):  # §5.6.21.4: no Linked Entity retrieval
            raise bad_request("Purge Entities does not follow Linked Entities: attrs cannot name theirs (§5.6.21.4).")
        if not _purge_selects(request.query_params, attrs, keep if keep is not None else drop):
            raise bad_request(
                "Purge Entities is too wide: give a type, attrs or q naming a non-system Attribute, keep or "
                "drop, a geo-query, or local=true; ids and id patterns alone select nothing (§5.6.21.4)."
            )
        query = _entity_query(request, ctx, None)
        if query.q is not None and has_links(query.q):
            raise bad_request("Purge Entities does not follow Linked Entities: q cannot filter on theirs (§5.6.21.4).")
        kept = {ctx.expand(a) for a in keep} if keep is not None else None
        dropped = {ctx.expand(a) for a in drop or ()}
        with write_session(request, broker, tenant) as (session, cs):
            check_tenant(session, tenant)
            found, _ = run_query(session, tenant, query, ctx, limit=MAX_ORDERED + 1, offset=0, count=False)
            if len(found) > MAX_ORDERED:
                raise NgsiError("TooManyResults", f"At most {MAX_ORDERED} entities are purged at once.")
            if not found:
                raise not_found("No entity matches the selection.")
            for entity in found:
                if kept is None and not dropped:
                    cs.drop(entity)
                    continue
                for name in list(entity.attrs):
                    if (name not in kept) if kept is not None else (name in dropped):
                        service.delete_attribute(cs, entity, name, dataset_id=None, delete_all=True)
        return Response(status_code=204)

    # An entity and its attributes, the most frequent requests, come first: routes are tried one
    # after another. Their entity_id never holds an /attrs segment (errors.EntityIdConvertor), so
    # they cannot take an attribute's path, whatever the order.
    @router.get("/entities/{entity_id:entity_id}", openapi_extra={"parameters": [_ENTITY_ID_PARAMETER]})
    async def retrieve_entity(request: Request) -> Response:
        # the path parameter and the principal are read here rather than declared: FastAPI's
        # validation and dependency solving cost more than both on the most frequent read
        principal = await ngsi_principal(request)
        entity_id: str = request.path_params["entity_id"]
        reads = loop_reads(request)
        if reads is not None:  # PostgreSQL: the read awaited on the loop, the rest done there too
            try:
                found = await store.read_one_on_loop(
                    reads, _db(request).engine.dialect, tenant_of(request), _entity_id(entity_id)
                )
            except NgsiError:
                pass  # a refused id or tenant: answered by the path below, after the request's own checks
            else:
                return _retrieve_entity(entity_id, request, principal, found)
        return await read_by_key(request, _retrieve_entity, entity_id, request, principal)

    def _retrieve_entity(
        entity_id: str,
        request: Request,
        principal: Principal | None,
        found: StoredEntity | Unread | None = Unread.UNREAD,
    ) -> Response:
        """Retrieve Entity; ``found`` is the entity already read on the loop (or None: no such entity)."""
        check_params(request, P_RETRIEVE)
        media = accept(request, geo=True)
        tenant = tenant_of(request)
        eid = _entity_id(entity_id)
        ctx = query_context(broker, request)
        readable = readable_types(broker, principal)
        if "geometryProperty" in request.query_params and media != GEOJSON:
            raise bad_request("geometryProperty only goes with Accept: application/geo+json (§5.7.1.4).")
        opts = render_options(request, ctx)
        join = linked.join_param(request.query_params, ctx)
        asked = entity_maps.map_request(request, broker.settings)
        gate = _gate(request, ctx)
        db = _db(request)

        def admit(entity: StoredEntity) -> None:
            if readable is not None and not set(entity.types) & readable:
                raise NgsiError(
                    "Unauthorized", "Reading this entity needs credentials.", headers={"WWW-Authenticate": "Bearer"}
                )
            _require_some_attr(entity, csv_param(request, "attrs"), ctx)

        emap = None
        if join is None and not asked.any:
            # the most frequent retrieve, one SELECT: no Session needed (store.read_one)
            entity = _existing(store.read_one(db, tenant, eid) if found is Unread.UNREAD else found, eid, gate)
            admit(entity)
            items = [(entity, render_entity(entity, ctx, opts))]
        else:
            with db.session() as session:
                entity = _load_one(session, tenant, eid, gate)
                admit(entity)
                items = linked.render_joined(session, tenant, [entity], ctx, opts, join, readable)
                emap = entity_maps.for_entities(session, tenant, asked, [eid])  # §5.7.1.4
        if not items[0][1] and ("pick" in request.query_params or "omit" in request.query_params):
            # §4.21 (v1.8.1, TP 018_19): no member of the entity is left to show
            raise NgsiError("ResourceNotFound", f"Nothing of the entity {eid} is left after pick/omit.")
        headers = emap.headers() if emap is not None else {}
        pref = versions.preference(request.headers)  # §4.3.6.8: Prefer: ngsi-ld=<version>
        if pref is not None:
            altered = versions.amend_entities((body for _, body in items), pref, opts.fmt)
            return versions.answer(entity_answer(request, entity, items, ctx, opts, media, headers), pref, altered)
        return entity_answer(request, entity, items, ctx, opts, media, headers)

    def entity_answer(
        request: Request,
        entity: StoredEntity,
        items: list[tuple[StoredEntity, dict[str, Any]]],
        ctx: ActiveContext,
        opts: RenderOptions,
        media: str,
        headers: dict[str, str],
    ) -> Response:
        """The answer of Retrieve Entity: the entity, a GeoJSON Feature, or with ``join=flat`` the
        entity and its Linked Entities."""
        if len(items) > 1:  # join=flat found Linked Entities: an array of entities (§4.5.23.2)
            return _entities_response(request, items, ctx, opts, media, headers)
        if media == GEOJSON:
            geo_prop = ctx.expand(request.query_params.get("geometryProperty") or "location")
            feature = geojson_feature(entity, ctx, opts, geo_prop, items[0][1])
            return respond(feature, ctx, media, headers=headers, body_json=prefers_json_body(request))
        return respond(items[0][1], ctx, media, headers=headers)

    @router.patch("/entities/{entity_id:entity_id}/attrs", openapi_extra={"parameters": [_ENTITY_ID_PARAMETER]})
    async def update_attrs(request: Request) -> Response:
        # the most frequent write: its parameters are read here, as Retrieve Entity's are
        principal = await ngsi_principal(request)
        raw = await request.body()
        entity_id: str = request.path_params["entity_id"]
        if writes_on_loop(request):  # checked and parsed here, written by the group's writer thread
            tenant, eid, update = _update_attrs(entity_id, request, principal, raw)
            return _update_response(await broker.writes.run_async(tenant, eid, update))
        return await run_in_threadpool(_update_attrs_in_thread, entity_id, request, principal, raw)

    def _update_attrs_in_thread(entity_id: str, request: Request, principal: Principal | None, raw: bytes) -> Response:
        tenant, eid, update = _update_attrs(entity_id, request, principal, raw)
        return _update_response(broker.writes.run(tenant, eid, update))

    def _update_attrs(
        entity_id: str, request: Request, principal: Principal | None, raw: bytes
    ) -> tuple[str, str, Change[service.UpdateResult]]:
        """Update Attributes checked and parsed: the tenant, the entity id and the change to write."""
        tenant, eid, body, ctx = entity_write(request, principal, entity_id, raw, patch=True)
        if not isinstance(body, dict):
            raise bad_request("The body must be a JSON object of attributes.")
        attrs = parse_attributes(body, ctx, merge=True)
        check_scope(body.get("scope"))
        types = parse_types(body.get("type", body.get("@type")), ctx, required=False)
        gate, scope = _gate(request, ctx), body.get("scope")

        def update(session: Session, cs: ChangeSet) -> service.UpdateResult:
            return service.update(cs, _load_one(session, tenant, eid, gate), attrs, scope=scope, types=types)

        return tenant, eid, update

    @router.get("/entities/{entity_id:path}/attrs/{attr_id:path}", include_in_schema=False)
    @router.get("/entities/{entity_id:path}/attrs", include_in_schema=False)
    def no_attr_get(request: Request) -> Response:
        raise NgsiError("MethodNotAllowed", "Attributes are read through GET /entities/{entityId}?attrs=...")

    @router.post("/entities/{entity_id:path}/attrs")
    def append_attrs(entity_id: str, request: Request, principal: OptionalPrincipal, raw: Body) -> Response:
        tenant, eid, body, ctx = entity_write(request, principal, entity_id, raw, patch=False)
        if not isinstance(body, dict):
            raise bad_request("The body must be a JSON object of attributes.")
        inp = parse_entity({**body, "id": eid}, ctx, require_type=False)
        no_overwrite = "noOverwrite" in options_of(request)
        gate = _gate(request, ctx)

        def append(session: Session, cs: ChangeSet) -> service.UpdateResult:
            return service.append(cs, _load_one(session, tenant, eid, gate), inp, no_overwrite=no_overwrite)

        return _update_response(broker.writes.run(tenant, eid, append))

    @router.patch("/entities/{entity_id:path}/attrs/{attr_id:path}")
    def partial_attr_update(
        entity_id: str, attr_id: str, request: Request, principal: OptionalPrincipal, raw: Body
    ) -> Response:
        tenant, eid, body, ctx = entity_write(request, principal, entity_id, raw, patch=True)
        if not isinstance(body, dict):
            raise bad_request("The body must be an attribute fragment (a JSON object).")
        if attr_id == "scope":
            raise bad_request("scope cannot be the target of a Partial Attribute Update (§5.6.4.4).")
        check_name(attr_id)
        name = ctx.expand(attr_id)
        fragment = {k: v for k, v in body.items() if k != "@context"}
        doc = parse_attribute(name, fragment, ctx, partial=True, merge=True)
        gate = _gate(request, ctx)
        if not isinstance(doc, dict):  # an NGSI-LD Null (§5.5.4): the instance is deleted
            dataset_id = fragment.get("datasetId")
            ds = dataset_id if isinstance(dataset_id, str) and dataset_id != "@none" else None

            def delete_instance(session: Session, cs: ChangeSet) -> None:
                entity = _load_one(session, tenant, eid, gate)
                service.delete_attribute(cs, entity, name, dataset_id=ds, delete_all=False)

            broker.writes.run(tenant, eid, delete_instance)
            return Response(status_code=204)
        if "type" not in fragment:
            doc.pop("type", None)
        fragment_doc = doc

        def partial_update(session: Session, cs: ChangeSet) -> None:
            doc = dict(fragment_doc)  # a change may run again on its own after its batch failed
            entity = _load_one(session, tenant, eid, gate)
            ds = doc.get("datasetId", "")
            current = entity.attrs.get(name, {}).get(ds)
            if current is not None and "type" in doc and doc["type"] != current.doc.get("type"):
                # §5.6.4.4: the fragment updates the attribute, it does not change its kind (012_02_03)
                raise bad_request(f"{attr_id} is a {current.doc.get('type')}, the fragment a {doc['type']}.")
            if current is not None and "type" not in doc:
                doc["type"] = current.doc.get("type")
                if doc["type"] == "GeoProperty" and "value" in doc:
                    parse_attribute(name, {"type": "GeoProperty", "value": doc["value"]}, ctx)
            service.partial_update(cs, entity, name, doc)

        broker.writes.run(tenant, eid, partial_update)
        return Response(status_code=204)

    @router.put("/entities/{entity_id:path}/attrs/{attr_id:path}")
    def replace_attr(
        entity_id: str, attr_id: str, request: Request, principal: OptionalPrincipal, raw: Body
    ) -> Response:
        tenant, eid, body, ctx = entity_write(request, principal, entity_id, raw, patch=False)
        if attr_id == "scope":  # 055_03_05: scope is replaced through Update Attributes or Merge Entity
            raise bad_request("scope cannot be the target of a Replace Attribute (§5.6.19).")
        check_name(attr_id)
        name = ctx.expand(attr_id)
        if isinstance(body, dict):
            body = {k: v for k, v in body.items() if k != "@context"}
        per_ds = parse_attributes({attr_id: body}, ctx)[name]
        gate = _gate(request, ctx)

        def replace(session: Session, cs: ChangeSet) -> None:
            service.replace_attribute(cs, _load_one(session, tenant, eid, gate), name, per_ds)

        broker.writes.run(tenant, eid, replace)
        return Response(status_code=204)

    @router.delete("/entities/{entity_id:path}/attrs/{attr_id:path}")
    def delete_attr(entity_id: str, attr_id: str, request: Request, principal: OptionalPrincipal) -> Response:
        check_params(request, P_DELETE_ATTR)
        require_write(broker, principal)
        tenant, eid, ctx, name, dataset_id, delete_all = attribute_deletion(request, broker, entity_id, attr_id)
        gate = _gate(request, ctx)

        def delete(session: Session, cs: ChangeSet) -> None:
            entity = _load_one(session, tenant, eid, gate)
            if attr_id == "scope" and name not in entity.attrs:
                # §5.6.5.4: "If the target Attribute is scope, remove the scope Attribute".
                if entity.scope is None:
                    raise not_found(f"The entity {eid} has no scope.")
                cs.set_scope(entity, None)  # recorded as a deletion of the scope (§4.18)
            else:
                service.delete_attribute(cs, entity, name, dataset_id=dataset_id, delete_all=delete_all)

        broker.writes.run(tenant, eid, delete)
        return Response(status_code=204)

    @router.delete("/entities/{entity_id:path}/attrs", include_in_schema=False)
    def no_attrs_delete(request: Request) -> Response:  # 013_02_03
        raise NgsiError("MethodNotAllowed", "Attributes are deleted one by one: /entities/{entityId}/attrs/{attrId}.")

    @router.api_route("/entities", methods=["PATCH", "PUT"], include_in_schema=False)
    def no_entity_id(request: Request) -> Response:  # 054_02_02, 056_02_02
        raise bad_request("Merge Entity and Replace Entity need the entity id in the path: /entities/{entityId}.")

    @router.delete("/entities/{entity_id:path}")
    def delete_entity(entity_id: str, request: Request, principal: OptionalPrincipal) -> Response:
        check_params(request, P_WRITE)
        require_write(broker, principal)
        tenant = tenant_of(request)
        eid = _entity_id(entity_id)
        gate = _gate(request, query_context(broker, request))

        def delete(session: Session, cs: ChangeSet) -> None:
            cs.drop(_load_one(session, tenant, eid, gate))

        broker.writes.run(tenant, eid, delete)
        return Response(status_code=204)

    @router.patch("/entities/{entity_id:path}")
    def merge_entity(entity_id: str, request: Request, principal: OptionalPrincipal, raw: Body) -> Response:
        tenant, eid, body, ctx = entity_write(request, principal, entity_id, raw, patch=True)
        inp = _fragment(body, ctx, eid, merge=True)
        gate = _gate(request, ctx)

        def merge(session: Session, cs: ChangeSet) -> None:
            service.merge(cs, _load_one(session, tenant, eid, gate), inp)

        broker.writes.run(tenant, eid, merge)
        return Response(status_code=204)

    @router.put("/entities/{entity_id:path}")
    def replace_entity(entity_id: str, request: Request, principal: OptionalPrincipal, raw: Body) -> Response:
        tenant, eid, body, ctx = entity_write(request, principal, entity_id, raw, patch=False)
        inp = _fragment(body, ctx, eid, merge=False)
        if not inp.types:
            raise bad_request("A replacing entity needs a type.")
        gate = _gate(request, ctx)

        def replace(session: Session, cs: ChangeSet) -> None:
            service.replace(cs, _load_one(session, tenant, eid, gate), inp)

        broker.writes.run(tenant, eid, replace)
        return Response(status_code=204)

    # ------------------------------------------------------------------ discovery
    @router.get("/types")
    def list_types(request: Request, principal: OptionalPrincipal) -> Response:
        check_params(request, P_DISCOVERY)
        media = accept(request)
        tenant = tenant_of(request)
        ctx = query_context(broker, request)
        readable = readable_types(broker, principal)
        details = bool_param(request, "details")
        with _db(request).session() as session:
            check_tenant(session, tenant)
            names = type_names(session, tenant, readable)
            if not details:
                body: Any = {
                    "id": f"urn:ngsi-ld:EntityTypeList:{uuid.uuid4()}",
                    "type": "EntityTypeList",
                    "typeList": [ctx.compact(t) for t in names],
                }
            else:
                body = []
                for t in names:
                    _, attrs = type_details(session, tenant, t)
                    body.append(
                        {
                            "id": t,
                            "type": "EntityType",
                            "typeName": ctx.compact(t),
                            "attributeNames": sorted(ctx.compact(a) for a in attrs),
                        }
                    )
        return respond(body, ctx, media)

    @router.get("/types/{type_name:path}")
    def type_info(type_name: str, request: Request, principal: OptionalPrincipal) -> Response:
        check_params(request, P_DISCOVERY_ONE)
        media = accept(request)
        tenant = tenant_of(request)
        ctx = query_context(broker, request)
        readable = readable_types(broker, principal)
        iri = ctx.expand(type_name)
        if readable is not None and iri not in readable:
            raise not_found(f"No entity of type {type_name}.")
        with _db(request).session() as session:
            check_tenant(session, tenant)
            count, attrs = type_details(session, tenant, iri)
        if count == 0:
            raise not_found(f"No entity of type {type_name}.")
        body = {
            "id": iri,
            "type": "EntityTypeInfo",
            "typeName": ctx.compact(iri),
            "entityCount": count,
            "attributeDetails": [
                {"id": a, "type": "Attribute", "attributeName": ctx.compact(a), "attributeTypes": sorted(kinds)}
                for a, kinds in sorted(attrs.items())
            ],
        }
        return respond(body, ctx, media)

    def _require_credentials(principal: Principal | None, what: str) -> None:
        # Attribute names span every type, so only a caller who may read all types may list them.
        if readable_types(broker, principal) is not None:
            raise NgsiError("Unauthorized", f"{what} needs credentials.", headers={"WWW-Authenticate": "Bearer"})

    @router.get("/attributes")
    def list_attributes(request: Request, principal: OptionalPrincipal) -> Response:
        check_params(request, P_DISCOVERY)
        media = accept(request)
        tenant = tenant_of(request)
        ctx = query_context(broker, request)
        _require_credentials(principal, "Listing attributes")
        details = bool_param(request, "details")
        with _db(request).session() as session:
            check_tenant(session, tenant)
            names = attribute_names(session, tenant)
            if not details:
                body: Any = {
                    "id": f"urn:ngsi-ld:AttributeList:{uuid.uuid4()}",
                    "type": "AttributeList",
                    "attributeList": [ctx.compact(n) for n in names],
                }
            else:
                body = []
                for n in names:
                    _, _, types = attribute_details(session, tenant, n)
                    body.append(
                        {
                            "id": n,
                            "type": "Attribute",
                            "attributeName": ctx.compact(n),
                            "typeNames": sorted(ctx.compact(t) for t in types),
                        }
                    )
        return respond(body, ctx, media)

    @router.get("/attributes/{attr_name:path}")
    def attribute_info(attr_name: str, request: Request, principal: OptionalPrincipal) -> Response:
        check_params(request, P_DISCOVERY_ONE)
        media = accept(request)
        tenant = tenant_of(request)
        ctx = query_context(broker, request)
        _require_credentials(principal, "Reading attributes")
        iri = ctx.expand(attr_name)
        with _db(request).session() as session:
            check_tenant(session, tenant)
            count, kinds, types = attribute_details(session, tenant, iri)
        if count == 0:
            raise not_found(f"No entity has the attribute {attr_name}.")
        body = {
            "id": iri,
            "type": "Attribute",
            "attributeName": ctx.compact(iri),
            "attributeCount": count,
            "attributeTypes": sorted(kinds),
            "typeNames": sorted(ctx.compact(t) for t in types),
        }
        return respond(body, ctx, media)

    # ------------------------------------------------------------------ @contexts
    def _ctx_url(request: Request, row: Any) -> str:
        return contexts.url_of(str(request.base_url), row)

    def _ctx_details(request: Request, row: Any) -> dict[str, Any]:
        out = {
            "URL": _ctx_url(request, row),
            "localId": row.local_id,
            "kind": row.kind,
            "createdAt": contexts.timestamp(row.created_at),
        }
        if row.url:
            out["numberOfHits"] = broker.loader.hits.get(row.url, 0)
        return out

    @router.get("/jsonldContexts")
    def list_contexts(request: Request) -> Response:
        check_params(request, P_CONTEXTS)
        details = bool_param(request, "details")
        kind = request.query_params.get("kind")
        if kind is not None and kind not in ("Hosted", "Cached", "ImplicitlyCreated"):
            raise bad_request("kind must be Hosted, Cached or ImplicitlyCreated.")
        with _db(request).session() as session:
            rows = contexts.all_contexts(session, tenant_of(request), kind)
            if details:
                items: list[Any] = [_ctx_details(request, r) for r in rows]
                if kind in (None, "Cached"):
                    items.insert(0, {"URL": CORE_CONTEXT_URL, "localId": "core", "kind": "Cached", "createdAt": None})
                    items[0]["createdAt"] = contexts.timestamp(utcnow())
            else:
                items = [_ctx_url(request, r) for r in rows]
                if kind in (None, "Cached"):
                    items.insert(0, CORE_CONTEXT_URL)
        return JSONResponse(items)

    @router.post("/jsonldContexts", status_code=201)
    def add_context(request: Request, principal: OptionalPrincipal, raw: Body) -> Response:
        check_params(request, P_CONTEXTS)
        require_write(broker, principal)
        body, _ = read_json(request, raw)
        if not isinstance(body, dict) or "@context" not in body:  # 050_02_01
            raise invalid_request("The body must be a JSON-LD document with an @context member.")
        value = body["@context"]
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(i, dict | str) for i in items):  # 5132_01
            raise bad_request("@context must be an object, a URL or an array of them.")
        if isinstance(value, dict):
            broker.loader.active(value)  # refuse what cannot be processed
        with _db(request).session() as session:
            row = contexts.add_hosted(session, value, tenant_of(request))
        # a path, as for the other resources the broker creates; the suite serves it by what is
        # left once /ngsi-ld/v1/jsonldContexts/ is cut off (050_01, 053_02)
        return Response(status_code=201, headers={"Location": f"{PREFIX}/jsonldContexts/{row.local_id}"})

    @router.get("/jsonldContexts/{context_id:path}")
    def serve_context(context_id: str, request: Request) -> Response:
        check_params(request, P_CONTEXTS)
        details = bool_param(request, "details")
        if context_id == "core" or is_core_url(context_id):
            if details:
                core = {
                    "URL": CORE_CONTEXT_URL,
                    "localId": "core",
                    "kind": "Cached",
                    "createdAt": contexts.timestamp(utcnow()),
                }
                return JSONResponse(core)
            return JSONResponse(core_document())  # application/json (053_01)
        with _db(request).session() as session:
            row = contexts.find(session, context_id, tenant_of(request))
            if row is None:
                raise not_found(f"No @context {context_id}.")
            answer = JSONResponse(_ctx_details(request, row) if details else {"@context": row.body})
        if row.kind == "Cached" and row.url:  # serving a cached copy is a use of it too (053_06)
            broker.loader.count_hit(row.url)
        return answer

    @router.delete("/jsonldContexts/{context_id:path}")
    def delete_context(context_id: str, request: Request, principal: OptionalPrincipal) -> Response:
        check_params(request, P_CONTEXTS)
        require_write(broker, principal)
        reload = bool_param(request, "reload")
        if context_id == "core" or is_core_url(context_id):
            if not reload:  # 051_08
                raise bad_request("The core @context cannot be deleted.")
            broker.loader.clear()  # built in: reloading it is reading it again (051_09)
            return Response(status_code=204)
        with _db(request).session() as session:
            row = contexts.find(session, context_id, tenant_of(request))
            url = row.url if row is not None and row.kind == "Cached" else None
            if reload and not url:
                # §5.13.5: only a cached @context can be reloaded, a hosted or unknown one is bad data (051_04)
                raise bad_request("Only a cached @context can be reloaded.")
            if row is None:
                raise not_found(f"No @context {context_id}.")
            if url and reload:
                row.body = broker.loader.fetch(url)
                row.fetched_at = utcnow()
            else:
                contexts.remove(session, row)
        broker.loader.clear()
        return Response(status_code=204)

    from .batch import add_batch_routes

    add_batch_routes(router, broker)

    return router


def build_fallback_router() -> APIRouter:
    """The NGSI-LD answer, a ProblemDetails 404, for a path under the API that no route serves:
    included after every other NGSI-LD router."""
    router = APIRouter(prefix=PREFIX, route_class=NgsiRoute, include_in_schema=False)

    @router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def unknown(rest: str) -> Response:
        raise not_found(f"No NGSI-LD resource /{rest}.")

    return router


#: Entities a query may sort in memory (orderBy needs every match before the first page).
MAX_ORDERED = 10_000


def ordering_param(request: Request, ctx: ActiveContext) -> Ordering | None:
    """``orderBy`` with its ``orderFrom`` and ``collation`` (§4.23), of Query Entities and of the
    temporal query (021_23); None when the request gives none."""
    p = request.query_params
    if "orderBy" in p:
        return parse_ordering(
            csv_param(request, "orderBy") or [],
            ctx,
            coordinates=p.get("orderFrom"),
            geometry=None,
            collation=p.get("collation"),
        )
    if "collation" in p or "orderFrom" in p:
        raise bad_request("collation and orderFrom go with orderBy.")
    return None


def query_page(
    session: Session,
    tenant: str,
    query: EntityQuery,
    ctx: ActiveContext,
    limit: int,
    offset: int,
    count: bool,
    ordering: Ordering | None,
) -> tuple[list[StoredEntity], int | None]:
    """A page of a query, ordered by ``ordering`` (§4.23) when given, else in creation order."""
    if ordering is None:
        return run_query(session, tenant, query, ctx, limit=limit, offset=offset, count=count)
    everything, total = run_query(session, tenant, query, ctx, limit=MAX_ORDERED + 1, offset=0, count=True)
    if len(everything) > MAX_ORDERED:
        raise NgsiError("TooManyResults", f"Ordering is offered for at most {MAX_ORDERED} matching entities.")
    ordered = order_entities(everything, ordering, ctx)
    return ordered[offset : offset + limit], (total if count else None)


def _purge_selects(params: Any, attrs: list[str] | None, keep_or_drop: list[str] | None) -> bool:
    """Whether a purge names enough to select by (§5.6.21.4): an Entity Type selector, a list of
    Attributes (``attrs``, ``keep`` or ``drop``) or a q with a non-system Attribute, a geo-query,
    or the local scope. Ids and id patterns narrow a selection but are not one."""
    return (
        "type" in params
        or "georel" in params
        or params.get("local") == "true"
        or any(names and not system_only(names) for names in (attrs, keep_or_drop))
        or ("q" in params and not system_only(_q_names(params["q"])))
    )


def _q_names(text: str) -> list[str]:
    """The attribute names a q expression starts its paths with (for the too-wide check)."""
    return [m.strip() for m in re.findall(r"(?:^|[;|(])\s*([^=!<>~;|()\[{.]+)", text) if m.strip()]


def _require_some_attr(entity: StoredEntity, attrs: list[str] | None, ctx: ActiveContext) -> None:
    """§5.7.1.4: Retrieve Entity with ``attrs`` naming none of the entity's Attributes is ResourceNotFound
    (system members such as ``createdAt`` are not Attributes and do not count)."""
    names = [a for a in attrs or [] if not system_only([a])]
    if not names:
        return
    has = set(entity.attrs) | ({"scope"} if entity.scope else set())
    if not any((a if a == "scope" else ctx.expand(a)) in has for a in names):
        raise not_found(f"The entity {entity.id} has none of the attributes {', '.join(names)}.")


def _fragment(body: Any, ctx: ActiveContext, eid: str, *, merge: bool) -> EntityInput:
    if not isinstance(body, dict):
        raise bad_request("The body must be a JSON object.")
    body_id = body.get("id", body.get("@id"))
    if body_id is not None and body_id != eid:
        raise bad_request("The id in the body differs from the id in the URL.")
    return parse_entity({**body, "id": eid}, ctx, require_type=False, merge=merge)


def entity_types(request: Request, ctx: ActiveContext) -> TypeExpr | None:
    """The ``type`` selection of a query (§4.17); ``*`` is every type, with ``local`` implicitly
    true, so not with ``local=false`` (v1.9 Table 6.4.3.2-1)."""
    raw = request.query_params.get("type")
    if raw is None:
        return None
    if not raw:
        raise bad_request("type must not be empty.")
    if raw == "*":
        if request.query_params.get("local") == "false":
            raise bad_request("type=* implies local=true; it cannot go with local=false.")
        return None
    return parse_type_expr(raw, ctx)


def _entity_query(request: Request, ctx: ActiveContext, readable: set[str] | None) -> EntityQuery:
    p = request.query_params
    ids = csv_param(request, "id")
    if ids is not None:
        for i in ids:
            _entity_id(i)
    types = entity_types(request, ctx)
    attrs = csv_param(request, "attrs")
    q = parse_q(p["q"], ctx, csv_param(request, "expandValues")) if "q" in p else None
    if "geoQ" in p:
        raise bad_request("Use the georel, geometry and coordinates parameters for a geo-query.")
    geo = parse_geoq(p.get("georel"), p.get("geometry"), p.get("coordinates"), p.get("geoproperty"), ctx)
    return EntityQuery(
        ids=ids,
        id_pattern=compile_pattern(p["idPattern"]) if "idPattern" in p else None,
        types=types,
        attrs=[ctx.expand(a) for a in attrs] if attrs else None,
        q=q,
        geo=geo,
        scope=parse_scope_query(p["scopeQ"]) if "scopeQ" in p else None,
        readable=readable,
    )


__all__ = ["JSON", "build_router", "parse_types"]
