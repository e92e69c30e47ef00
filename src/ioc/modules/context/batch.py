"""Batch operations (§5.6.7–5.6.10, 5.6.20, 5.7.2 via POST): ``/entityOperations/*``.

A whole batch is validated entity by entity (errors are reported per entity, as
BatchOperationResult ``errors`` with a ProblemDetails each), then the valid part is written in
one transaction with bulk statements, which is what makes 10,000+ entities per request cheap.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from ioc.core.auth import OptionalPrincipal
from ioc.core.db import Database

from . import linked, service, versions
from .entity import EntityInput, parse_entity
from .errors import NgsiError, bad_request
from .http import (
    GEOJSON,
    JSONLD,
    Body,
    Broker,
    accept,
    bool_param,
    int_param,
    item_context,
    link_context,
    options_of,
    prefers_json_body,
    read_json,
    readable_types,
    require_write,
    respond,
    tenant_of,
)
from .ld import ActiveContext, is_uri
from .query import TypeExpr, parse_geoq, parse_q, parse_type_expr
from .render import RenderOptions, geojson_feature
from .scope import parse_scope_query
from .search import EntityQuery, Ordering, Selector, compile_pattern, parse_ordering
from .store import check_tenant, load_entities

Errors = list[dict[str, Any]]


def _error(entity_id: Any, exc: NgsiError) -> dict[str, Any]:
    return {"entityId": entity_id if isinstance(entity_id, str) else str(entity_id), "error": exc.to_dict()}


def _items(broker: Broker, body: Any) -> list[Any]:
    if not isinstance(body, list):
        raise bad_request("The body of a batch operation must be a JSON array.")
    if not body:
        raise bad_request("The batch is empty (§5.6.7.4).")
    if any(item is None for item in body):
        raise bad_request("The batch holds a null item (§5.6.7.4); nothing was done.")
    if len(body) > broker.settings.batch_max_entities:
        raise bad_request(f"At most {broker.settings.batch_max_entities} entities per batch request.")
    return body


def _parse_all(
    broker: Broker, request: Request, items: list[Any], ct: str, *, require_type: bool, merge: bool
) -> tuple[list[EntityInput], Errors]:
    parsed: list[EntityInput] = []
    errors: Errors = []
    for item in items:
        raw_id = item.get("id", item.get("@id")) if isinstance(item, dict) else None
        try:
            ctx = item_context(broker, request, item, ct)
            parsed.append(parse_entity(item, ctx, require_type=require_type, merge=merge))
        except NgsiError as exc:  # an @context that cannot be loaded too: that entity's error (043_01_04)
            errors.append(_error(raw_id or "", exc))
    return parsed, errors


def _no_link_with_jsonld(request: Request, ct: str) -> None:
    """§6.3.5: a JSON-LD body brings its own @context, so a context Link header beside it is a
    BadRequestData for the whole request (not an error of each entity)."""
    if ct == JSONLD and link_context(request) is not None:
        raise bad_request("A JSON-LD body must not come with a context Link header (§6.3.5).")


def _append(cs: Any, current: Any, inp: EntityInput, options: set[str]) -> None:
    """Batch Entity Update of one entity (§5.6.9.4): Append Entity Attributes (§5.6.3). An entity
    whose attributes were not all appended (``noOverwrite`` kept existing ones) is not "successfully
    updated": it goes to the errors, with the attributes that were new still appended."""
    result = service.append(cs, current, inp, no_overwrite="noOverwrite" in options)
    if result.not_updated:
        raise bad_request("; ".join(f"{name}: {reason}" for name, reason in result.not_updated))


def _result(success: list[str], errors: Errors, ok_status: int, ok_body: Any = None) -> Response:
    if errors:
        return JSONResponse({"success": success, "errors": errors}, status_code=207)
    if ok_body is None:
        return Response(status_code=ok_status)
    return JSONResponse(ok_body, status_code=ok_status)


def add_batch_routes(router: APIRouter, broker: Broker) -> None:
    from .api import P_QUERY, P_WRITE, check_params, query_page, render_options, write_session

    @router.post("/entityOperations/create")
    def batch_create(request: Request, principal: OptionalPrincipal, raw: Body) -> Response:
        return _run(request, principal, "create", raw)

    @router.post("/entityOperations/upsert")
    def batch_upsert(request: Request, principal: OptionalPrincipal, raw: Body) -> Response:
        return _run(request, principal, "upsert", raw)

    @router.post("/entityOperations/update")
    def batch_update(request: Request, principal: OptionalPrincipal, raw: Body) -> Response:
        return _run(request, principal, "update", raw)

    @router.post("/entityOperations/merge")
    def batch_merge(request: Request, principal: OptionalPrincipal, raw: Body) -> Response:
        return _run(request, principal, "merge", raw)

    @router.post("/entityOperations/delete")
    def batch_delete(request: Request, principal: OptionalPrincipal, raw: Body) -> Response:
        return _run(request, principal, "delete", raw)

    def _run(request: Request, principal: Any, op: str, raw: bytes) -> Response:
        check_params(request, P_WRITE)
        require_write(broker, principal)
        tenant = tenant_of(request)
        body, ct = read_json(request, raw)
        items = _items(broker, body)
        options = options_of(request)
        if op == "delete":
            return _delete(request, tenant, items)
        _no_link_with_jsonld(request, ct)
        parsed, errors = _parse_all(
            broker, request, items, ct, require_type=op in ("create", "upsert"), merge=op == "merge"
        )
        success: list[str] = []
        created: list[str] = []
        with write_session(request, broker, tenant) as (session, cs):
            existing = load_entities(session, tenant, [p.id for p in parsed if p.id])
            for inp in parsed:
                assert inp.id is not None
                current = existing.get(inp.id)
                try:
                    if op == "create":
                        existing[inp.id] = service.create(cs, current, inp)
                        created.append(inp.id)
                    elif op == "upsert":
                        if current is None:
                            existing[inp.id] = service.create(cs, None, inp)
                            created.append(inp.id)
                        elif "update" in options:
                            service.merge(cs, current, inp)
                        else:
                            service.replace(cs, current, inp)
                    elif current is None:
                        raise NgsiError("ResourceNotFound", f"The entity {inp.id} does not exist.")
                    elif op == "update":
                        _append(cs, current, inp, options)
                    else:
                        service.merge(cs, current, inp)
                    success.append(inp.id)
                except NgsiError as exc:
                    errors.append(_error(inp.id, exc))
        if op == "create":
            return _result(success, errors, 201, success)
        if op == "upsert":
            return _result(success, errors, 201 if created else 204, created if created else None)
        return _result(success, errors, 204)

    def _delete(request: Request, tenant: str, items: list[Any]) -> Response:
        errors: Errors = []
        ids: list[str] = []
        for item in items:
            if not isinstance(item, str) or not is_uri(item):
                errors.append(_error(item, bad_request(f"{item!r} is not an entity id (a URI).")))
            else:
                ids.append(item)
        success: list[str] = []
        with write_session(request, broker, tenant) as (session, cs):
            existing = load_entities(session, tenant, ids)
            for eid in ids:
                entity = existing.pop(eid, None)
                if entity is None:
                    errors.append(_error(eid, NgsiError("ResourceNotFound", f"The entity {eid} does not exist.")))
                    continue
                cs.drop(entity)
                success.append(eid)
        return _result(success, errors, 204)

    @router.post("/entityOperations/query")
    def batch_query(request: Request, principal: OptionalPrincipal, raw: Body) -> Response:
        """Query Entities via POST (§5.7.2, §6.23.3.1): a Query object (§5.2.23) in the body, answered
        as JSON, JSON-LD or GeoJSON like ``GET /entities``."""
        check_params(request, P_QUERY)
        media = accept(request, geo=True)
        tenant = tenant_of(request)
        readable = readable_types(broker, principal)
        body, ct = read_json(request, raw)
        if not isinstance(body, dict):
            raise bad_request("The body must be a Query object.")
        _no_link_with_jsonld(request, ct)
        ctx = item_context(broker, request, body, ct) if ct == JSONLD or link_context(request) else broker.loader.core
        if body.get("type", "Query") != "Query":
            raise bad_request("The body type must be Query.")
        if "temporalQ" in body:
            raise bad_request("temporalQ is only for Query Temporal Evolution of Entities (§5.2.23).")
        query = _query_from_body(body, ctx, readable)
        opts = render_options(request, ctx)
        if query.attrs is not None:
            opts.pick = set(query.attrs) | {"id", "type", "scope"}
        pick, omit = _projections(body, request, ctx, opts)
        opts.lang = body.get("lang") or opts.lang
        limit = int_param(request, "limit", broker.settings.default_limit, maximum=broker.settings.max_limit)
        offset = int_param(request, "offset", 0)
        count = bool_param(request, "count")
        ordering = _ordering_from_body(body, ctx)
        join = _join_from_body(body, request, query, pick, omit)
        db: Database = request.app.state.db
        with db.session() as session:
            check_tenant(session, tenant)
            entities, total = query_page(session, tenant, query, ctx, limit, offset, count, ordering)
            items = linked.render_joined(session, tenant, entities, ctx, opts, join, readable)
        headers = {"NGSILD-Results-Count": str(total)} if total is not None else {}
        pref = versions.preference(request.headers)  # §4.3.6.8: Prefer: ngsi-ld=<version>
        altered = versions.amend_entities((item for _, item in items), pref, opts.fmt)
        if media == GEOJSON:
            geo_prop = ctx.expand(request.query_params.get("geometryProperty") or "location")
            features = [geojson_feature(e, ctx, opts, geo_prop, item) for e, item in items]
            collection = {"type": "FeatureCollection", "features": features}
            response = respond(collection, ctx, media, headers=headers, body_json=prefers_json_body(request))
        else:
            response = respond([item for _, item in items], ctx, media, headers=headers)
        return versions.answer(response, pref, altered)


def _selector(sel: dict[str, Any], ctx: Any) -> Selector:
    """An EntitySelector (§5.2.33, Table 5.2.33-1): type mandatory; id a URI or URIs; id before idPattern."""
    raw_type = sel.get("type")
    if not isinstance(raw_type, str) or not raw_type:
        raise bad_request("An entity selector needs a type.")
    out = Selector(types=parse_type_expr(raw_type, ctx))
    if "id" in sel:
        ids = sel["id"] if isinstance(sel["id"], list) else [sel["id"]]
        if not ids or not all(isinstance(i, str) and is_uri(i) for i in ids):
            raise bad_request("The id of an entity selector is a URI or an array of URIs.")
        out.ids = ids
    if "idPattern" in sel:
        if not isinstance(sel["idPattern"], str):
            raise bad_request("idPattern must be a string.")
        out.id_pattern = compile_pattern(sel["idPattern"])
    return out


def _query_from_body(body: dict[str, Any], ctx: Any, readable: set[str] | None) -> EntityQuery:
    selectors = body.get("entities")
    query = EntityQuery(readable=readable)
    if selectors is not None:
        if not isinstance(selectors, list) or not selectors or not all(isinstance(s, dict) for s in selectors):
            raise bad_request("entities must be a non-empty array of entity selectors.")
        parsed = [_selector(sel, ctx) for sel in selectors]
        query.types = TypeExpr("or", [p.types for p in parsed]) if len(parsed) > 1 else parsed[0].types
        if len(parsed) == 1:
            query.ids = parsed[0].ids
            query.id_pattern = parsed[0].id_pattern if parsed[0].ids is None else None
        else:
            query.selectors = parsed
    attrs = body.get("attrs")
    if attrs is not None:
        if not isinstance(attrs, list) or not attrs or not all(isinstance(a, str) and a for a in attrs):
            raise bad_request("attrs must be a non-empty array of attribute names (§5.2.23).")
        query.attrs = [ctx.expand(a) for a in attrs]
    if body.get("q") is not None:
        if not isinstance(body["q"], str):
            raise bad_request("q must be a string.")
        query.q = parse_q(body["q"], ctx)
    if body.get("scopeQ") is not None:
        if not isinstance(body["scopeQ"], str):
            raise bad_request("scopeQ must be a string.")
        query.scope = parse_scope_query(body["scopeQ"])
    geo = body.get("geoQ")
    if geo is not None:
        if not isinstance(geo, dict):
            raise bad_request("geoQ must be an object.")
        query.geo = parse_geoq(
            geo.get("georel"), geo.get("geometry"), geo.get("coordinates"), geo.get("geoproperty"), ctx
        )
    if selectors is None and query.attrs is None and query.q is None and query.geo is None:
        raise bad_request("A query needs entities, attrs, q or geoQ.")
    return query


def _projections(
    body: dict[str, Any], request: Request, ctx: ActiveContext, opts: RenderOptions
) -> tuple[linked.Projection | None, linked.Projection | None]:
    """The Query's ``pick`` and ``omit`` (§5.2.23, non-empty String[] of §4.21 projections), else
    those of the URL; set on ``opts`` and returned for the Linked Entities (§4.5.23)."""
    join = body.get("join") if isinstance(body.get("join"), str) else None
    trees: list[linked.Projection | None] = []
    for name in ("pick", "omit"):
        raw = body.get(name)
        if raw is None:
            trees.append(linked.projection_param(request.query_params.getlist(name), ctx, name, join))
            continue
        if not isinstance(raw, list) or not raw or not all(isinstance(v, str) and v for v in raw):
            raise bad_request(f"{name} must be a non-empty array of strings (§5.2.23).")
        trees.append(linked.projection_param(raw, ctx, name, join))
    pick, omit = trees
    if pick is not None and omit is not None:
        raise bad_request("pick and omit cannot be used together.")
    if (pick is not None or omit is not None) and "attrs" in body:
        raise bad_request("attrs cannot be used together with pick or omit (§4.21).")
    if pick is not None:
        opts.pick = linked.top_names(pick, omit=False)
    if omit is not None:
        opts.omit = linked.top_names(omit, omit=True)
    return pick, omit


def _join_from_body(
    body: dict[str, Any],
    request: Request,
    query: EntityQuery,
    pick: linked.Projection | None,
    omit: linked.Projection | None,
) -> linked.Join | None:
    """The Query's ``join`` and ``joinLevel`` (§5.2.23, §4.5.23); a Linked Entity q needs a join at
    least as deep as itself (§5.7.2.4)."""
    contained = [i.strip() for raw in request.query_params.getlist("containedBy") for i in raw.split(",") if i.strip()]
    join = linked.parse_join(body.get("join"), body.get("joinLevel"), contained, pick, omit)
    linked.require_join(join, linked.link_depth(query.q) if query.q is not None else 0, "q")
    return join


def _ordering_from_body(body: dict[str, Any], ctx: Any) -> Ordering | None:
    """The ``ordering`` member of a Query (OrderingParams, §5.2.43)."""
    raw = body.get("ordering")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise bad_request("ordering must be an OrderingParams object.")
    order_by = raw.get("orderBy")
    if isinstance(order_by, str):
        order_by = [order_by]
    if not isinstance(order_by, list) or not order_by or not all(isinstance(o, str) for o in order_by):
        raise bad_request("ordering.orderBy is an array of strings.")
    coordinates = raw.get("coordinates")
    if coordinates is not None and not isinstance(coordinates, list):
        raise bad_request("ordering.coordinates is a JSON array.")
    return parse_ordering(
        order_by, ctx, coordinates=coordinates, geometry=raw.get("geometry"), collation=raw.get("collation")
    )
