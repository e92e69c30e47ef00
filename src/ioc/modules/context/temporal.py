"""The NGSI-LD temporal API under ``/ngsi-ld/v1/temporal`` (ETSI GS CIM 009 v1.8 §5.6.11-5.6.20, §5.7.3-5.7.4).

The temporal evolution of an entity is read from ``ngsild_attribute_history``, which every
entity write already appends to (create, PATCH, merge, batch...). Writes here add instances
to that history (and move the current state forward when an instance is newer than it),
delete an entity's or an attribute's history, and change or remove single instances.
Reading and aggregating live in temporal_query.py, the representations in temporal_render.py.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ioc.core import audit
from ioc.core.auth import OptionalPrincipal, Principal

from . import entity_maps, versions
from .api import attribute_deletion, entity_types, ordering_param, query_page, write_session
from .batch import _ordering_from_body, _query_from_body
from .entity import (
    ENTITY_MEMBERS,
    NULL,
    NULLABLE_MEMBERS,
    SCOPE,
    STRICT_INPUT,
    EntityInput,
    check_name,
    null_member,
    nulled,
    parse_attribute,
    parse_datetime,
    parse_expiry,
    parse_scope_instance,
    parse_scope_instances,
    parse_types,
)
from .errors import NgsiError, NgsiRoute, bad_request, invalid_request, not_found
from .http import (
    JSON,
    JSONLD,
    PREFIX,
    Body,
    Broker,
    accept,
    body_context,
    bool_param,
    csv_param,
    dataset_ids,
    int_param,
    options_of,
    query_context,
    read_json,
    readable_types,
    require_write,
    respond,
    tenant_of,
)
from .ld import CORE_CONTEXT_URL, ActiveContext, is_uri, link_header
from .models import NgsiAttributeHistory as H
from .query import parse_geoq, parse_q
from .scope import parse_scope_query
from .search import EntityQuery, Ordering, compile_pattern, run_query, system_only
from .service import new_entity
from .store import ChangeSet, Instance, StoredEntity, check_tenant, instance_id, load_entities
from .temporal_query import (
    NULL_OP,
    Group,
    Page,
    TemporalQuery,
    aggregate,
    find_groups,
    format_time,
    origin_of,
    paginate,
    parse_temporal,
)
from .temporal_query import read_rows as read_group
from .temporal_render import TemporalOptions, render_temporal
from .temporal_scope import ScopeValidity, carry_scope, window_condition

TEMPORAL = PREFIX + "/temporal"
#: name IRI -> datasetId ('' default) -> instances (stored form), in the order given
Instances = dict[str, dict[str, list[dict[str, Any]]]]
_KNOWN_OPTIONS = {"temporalValues", "aggregatedValues", "sysAttrs", "normalized", "concise", "simplified", "keyValues"}


def _db_session(request: Request) -> Any:
    return request.app.state.db.session()


def _entity_id(raw: str) -> str:
    if not is_uri(raw):
        raise bad_request(f"The entity id must be a URI, got {raw!r}.")
    return raw


def path_name(name: str) -> None:
    """An attribute name in a URL path is a name of §4.6.2 or an IRI; a dot segment (``%2e%2e``
    decoded) is neither and would address another resource: 400 BadRequestData (§5.6.13.4)."""
    token = STRICT_INPUT.set(True)
    try:
        check_name(name)
    finally:
        STRICT_INPUT.reset(token)


def temporal_options(request: Request) -> TemporalOptions:
    """The representation asked for with ``options`` and ``format`` (and ``lang``); a value neither
    defines is 400 InvalidRequest (§6.3.12, §6.3.20), ``format`` winning over ``options``."""
    opts = options_of(request)
    unknown = opts - _KNOWN_OPTIONS
    if unknown:
        raise invalid_request(f"Unknown options: {', '.join(sorted(unknown))}.")
    fmt = request.query_params.get("format")
    if fmt is None:
        if "aggregatedValues" in opts:
            fmt = "aggregatedValues"
        elif opts & {"temporalValues", "simplified", "keyValues"}:
            fmt = "temporalValues"
        elif "concise" in opts:
            fmt = "concise"
        else:
            fmt = "normalized"
    fmt = {"simplified": "temporalValues", "keyValues": "temporalValues"}.get(fmt, fmt)
    if fmt not in ("normalized", "concise", "temporalValues", "aggregatedValues"):
        raise invalid_request(f"Invalid format {fmt!r}.")
    return TemporalOptions(fmt=fmt, sys_attrs="sysAttrs" in opts, lang=request.query_params.get("lang"))


def _temporal_query(request: Request, opts: TemporalOptions) -> TemporalQuery:
    tq = parse_temporal(request.query_params, aggregated=opts.fmt == "aggregatedValues")
    tq.datasets = dataset_ids(csv_param(request, "datasetId"))
    opts.methods = tq.aggr_methods
    opts.timeproperty = tq.timeproperty
    return tq


def projection(
    pick: list[str] | None, omit: list[str] | None, ctx: ActiveContext, opts: TemporalOptions, *, attrs: bool
) -> None:
    """``pick``/``omit`` (§4.21): entity members (``id``, ``type``, attribute names) to keep or leave out;
    not together, nor with ``attrs``, and without Linked Entity braces: the temporal API has no join
    (§5.7.3.4, §5.7.4.4)."""
    if pick is not None and omit is not None:
        raise bad_request("pick and omit cannot be used together.")
    if attrs and (pick is not None or omit is not None):
        raise bad_request("attrs cannot be used together with pick or omit (§4.21).")
    for items in (pick, omit):
        if items is not None and (not items or not all(items)):
            raise bad_request("pick and omit need a comma-separated list of member names.")
        if items is not None and any("{" in i or "}" in i for i in items):
            raise bad_request("A Linked Entity projection needs join, which the temporal API does not define.")

    def names(items: list[str] | None) -> set[str] | None:
        return None if items is None else {i if i in ("id", "type") else ctx.expand(i) for i in items}

    opts.pick, opts.omit = names(pick), names(omit)


def _picked(names: list[str] | None, opts: TemporalOptions) -> list[str] | None:
    """The attributes to read: ``attrs``, or those ``pick`` names."""
    if opts.pick is None:
        return names
    return [n for n in sorted(opts.pick) if n not in ("id", "type")]


def _entity_query(request: Request, ctx: ActiveContext, readable: set[str] | None) -> EntityQuery:
    p = request.query_params
    ids = csv_param(request, "id")
    for i in ids or []:
        _entity_id(i)
    types = entity_types(request, ctx)
    attrs = csv_param(request, "attrs")
    if "geoQ" in p:
        raise bad_request("Use the georel, geometry and coordinates parameters for a geo-query.")
    if "{" in p.get("q", ""):
        raise bad_request("A q on Linked Entity attributes needs join, which the temporal API does not define.")
    if "csf" in p:
        parse_q(p["csf"], ctx)  # a context source filter must at least be valid (§5.7.4.4)
    return EntityQuery(
        ids=ids,
        id_pattern=compile_pattern(p["idPattern"]) if "idPattern" in p else None,
        types=types,
        attrs=[ctx.expand(a) for a in attrs] if attrs else None,
        q=parse_q(p["q"], ctx, csv_param(request, "expandValues")) if "q" in p else None,
        geo=parse_geoq(p.get("georel"), p.get("geometry"), p.get("coordinates"), p.get("geoproperty"), ctx),
        scope=parse_scope_query(p["scopeQ"]) if "scopeQ" in p else None,
        readable=readable,
    )


def evolutions(
    session: Session,
    tenant: str,
    entities: list[tuple[str, list[str]]],
    names: list[str] | None,
    tq: TemporalQuery,
    opts: TemporalOptions,
    ctx: ActiveContext,
    max_instances: int,
    scopes: ScopeValidity | None = None,
) -> tuple[list[str], Page | None]:
    """The temporal representation of each entity (id, types), as JSON text, and where pagination cut it.

    The scope is one more member (§4.5.6), with the instance valid when the time range starts; with
    ``scopes`` (a scopeQ), attribute instances are only read where a matching scope was valid."""
    groups_by_entity = find_groups(session, tenant, [eid for eid, _ in entities], names)
    every: list[Group] = []
    per_attribute = min(tq.last_n, max_instances) if tq.last_n is not None else max_instances
    for eid, _ in entities:
        if opts.fmt == "aggregatedValues":  # §4.5.19 aggregates attributes; the scope is not one
            groups_by_entity[eid] = [g for g in groups_by_entity.get(eid, []) if g.name != SCOPE]
        groups = groups_by_entity.get(eid, [])
        windows = scopes.windows.get(eid) if scopes is not None else None
        if windows is not None:
            for g in groups:
                if g.name != SCOPE:
                    g.where = window_condition(windows, tq.timeproperty)
        if opts.fmt == "aggregatedValues":
            origin = origin_of(session, tenant, groups, tq) if tq.aggr_period is not None else None
            for g in groups:
                aggregate(session, tenant, g, tq, origin)
        else:
            for g in groups:
                read_group(session, tenant, g, tq, per_attribute, recorded=opts.sys_attrs)
                carry_scope(session, tenant, g, tq)
        every.extend(groups)
    page = paginate(every, tq, max_instances) if opts.fmt != "aggregatedValues" else None
    bodies = [render_temporal(eid, types, groups_by_entity.get(eid, []), ctx, opts) for eid, types in entities]
    return bodies, page


def _headers(page: Page | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = dict(extra or {})
    if page is not None:
        start, end = format_time(page.start), format_time(page.end)
        headers["Content-Range"] = f"date-time {start}-{end}/{page.size}"
    return headers


def respond_text(
    bodies: list[str] | str, ctx: ActiveContext, media: str, *, status: int, headers: dict[str, str]
) -> Response:
    """Entities already rendered as JSON text, with the @context where the spec puts it (as ``respond``)."""
    source = ctx.source if ctx.source is not None else CORE_CONTEXT_URL
    hdrs = dict(headers)
    if media == JSON:
        hdrs["Link"] = link_header(source if isinstance(source, str) else CORE_CONTEXT_URL)
    else:
        prefix = '{"@context":' + json.dumps(source) + ","
        bodies = [prefix + b[1:] for b in bodies] if isinstance(bodies, list) else prefix + bodies[1:]
    content = "[" + ",".join(bodies) + "]" if isinstance(bodies, list) else bodies
    return Response(content=content, status_code=status, headers=hdrs, media_type=media)


# --------------------------------------------------------------------------- parsing writes


def parse_instances(body: dict[str, Any], ctx: ActiveContext) -> Instances:
    """The attributes of a temporal representation: each an instance or an array of instances;
    ``urn:ngsi-ld:null`` as a first-level member is refused (§5.2.1: only a merge deletes), an
    ``expiresAt`` too (5611_01_02): it is a DateTime. An instance whose value member is NGSI-LD
    Null is the record of a deletion (``_null_instance``)."""
    parse_expiry(body.get("expiresAt"))
    out: Instances = {}
    for key, raw in body.items():
        if key in ENTITY_MEMBERS:
            continue
        check_name(key)
        if raw == NULL:
            raise bad_request(f"{key}: urn:ngsi-ld:null is only allowed in a partial update or a merge (§5.2.1).")
        name = ctx.expand(key)
        items = raw if isinstance(raw, list) and raw and all(isinstance(i, dict) for i in raw) else [raw]
        if isinstance(raw, list) and not raw:
            raise bad_request(f"attribute {key!r}: an empty array has no instances.")
        per_ds = out.setdefault(name, {})
        for item in items:
            if isinstance(item, dict) and nulled(item):
                doc = _null_instance(name, item, ctx)
            else:
                parsed = parse_attribute(name, item, ctx)
                assert isinstance(parsed, dict)  # without merge, never a deletion
                doc = parsed
            per_ds.setdefault(doc.get("datasetId", ""), []).append(doc)
    return out


def _null_instance(name: str, item: dict[str, Any], ctx: ActiveContext) -> dict[str, Any]:
    """An instance whose value member is NGSI-LD Null: the deleted-instance representation
    (§4.5.7), legal in a temporal evolution (§5.5.4 excepts it; 5611_01_01). It is recorded as
    an instance of the evolution, its value member kept as given (history op ``"null"``), but it
    is no value: the current state never takes it and aggregations leave it out."""
    key = next(k for k in NULLABLE_MEMBERS if null_member(k, item.get(k)))
    doc = parse_attribute(name, {k: v for k, v in item.items() if k != key}, ctx, partial=True)
    assert isinstance(doc, dict)
    doc[key] = item[key]
    return doc


def _latest_value(docs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The most recent of the instances that hold a value (not the deleted-instance records)."""
    values = [d for d in docs if not nulled(d)]
    return _latest(values) if values else None


def _observed(doc: dict[str, Any]) -> datetime | None:
    raw = doc.get("observedAt")
    return parse_datetime(raw, "observedAt") if isinstance(raw, str) else None


def _latest(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The most recent instance (by observedAt; the last given when none has one)."""
    timed = [(t, i) for i, d in enumerate(docs) if (t := _observed(d)) is not None]
    if not timed:
        return docs[-1]
    return docs[max(timed)[1]]


def _newer(doc: dict[str, Any], current: Instance | None) -> bool:
    if current is None:
        return True
    now, before = _observed(doc), _observed(current.doc)
    if before is None:
        return True
    return now is not None and now >= before


def _history_row(cs: ChangeSet, entity_id: str, name: str, ds: str, op: str, doc: dict[str, Any]) -> dict[str, Any]:
    value = doc.get("value")
    number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    return {
        "tenant": cs.tenant,
        "entity_id": entity_id,
        "name": name,
        "dataset_id": ds,
        "instance_id": instance_id(),
        "op": op,
        "kind": doc.get("type"),
        "value_num": number,
        "doc": doc,
        "observed_at": _observed(doc),
        "recorded_at": cs.now,
    }


def _one_per_time(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The instances of one attribute and datasetId, the last given for each observedAt."""
    kept: dict[object, dict[str, Any]] = {}
    for i, doc in enumerate(docs):
        t = _observed(doc)
        kept[t if t is not None else i] = doc
    return list(kept.values())


def _replace_same_times(
    session: Session, cs: ChangeSet, entity: StoredEntity, name: str, ds: str, docs: list[dict[str, Any]]
) -> None:
    """Instances already recorded at an observedAt given again are replaced, not repeated (§5.6.11,
    §5.6.12): posting the same temporal representation twice leaves one instance per time."""
    times = [t for t in (_observed(d) for d in docs) if t is not None]
    if entity.pk is None or not times:
        return
    session.execute(
        delete(H).where(
            H.tenant == cs.tenant,
            H.entity_id == entity.id,
            H.name == name,
            H.dataset_id == ds,
            H.op != "delete",
            H.observed_at.in_(times),
        )
    )


def add_instances(session: Session, cs: ChangeSet, entity: StoredEntity, instances: Instances) -> None:
    """Record every instance in the history; an instance newer than the current state becomes it."""
    given: set[tuple[str, str]] = set()
    rows: list[dict[str, Any]] = []
    for name, per_ds in instances.items():
        for ds, given_docs in per_ds.items():
            docs = _one_per_time(given_docs)
            _replace_same_times(session, cs, entity, name, ds, docs)
            had = ds in entity.attrs.get(name, {}) and entity.pk is not None
            latest = _latest_value(docs)
            if latest is not None and entity.pk is not None and _newer(latest, entity.attrs.get(name, {}).get(ds)):
                cs.put_attr(entity, name, ds, latest, keep_created=True)
            for i, doc in enumerate(docs):
                op = "update" if had or i else "create"
                rows.append(_history_row(cs, entity.id, name, ds, NULL_OP if nulled(doc) else op, doc))
            given.add((name, ds))
    # put_attr (and create) wrote one history row for the current state: the instances replace it
    cs.history = [h for h in cs.history if not (h["entity_id"] == entity.id and (h["name"], h["dataset_id"]) in given)]
    cs.history.extend(rows)


def _scope_time(doc: dict[str, Any], cs: ChangeSet) -> datetime:
    observed = _observed(doc)
    return observed if observed is not None else cs.now


def add_scope_instances(session: Session, cs: ChangeSet, entity: StoredEntity, given: list[dict[str, Any]]) -> None:
    """Record instances of the scope's temporal evolution (§4.5.6); an instance without observedAt is
    observed when it is recorded. The latest of them becomes the entity's scope unless the scope
    already recorded changed later (§4.18: a scope is valid from when it is set until removed)."""
    docs = [d if "observedAt" in d else {**d, "observedAt": format_time(cs.now)} for d in _one_per_time(given)]
    _replace_same_times(session, cs, entity, SCOPE, "", docs)
    latest = _latest(docs)
    last = None
    if entity.pk is not None:
        last = session.execute(
            select(H.observed_at)
            .where(H.tenant == cs.tenant, H.entity_id == entity.id, H.name == SCOPE, H.observed_at.is_not(None))
            .order_by(H.observed_at.desc(), H.id.desc())
            .limit(1)
        ).scalar()
    had = entity.pk is not None and (last is not None or entity.scope is not None)
    if last is None or _scope_time(latest, cs) >= last:
        entity.scope = latest["value"]
        cs.touch(entity)
    # create (or set_scope) recorded the scope as a change made now: the instances replace it
    cs.history = [h for h in cs.history if not (h["entity_id"] == entity.id and h["name"] == SCOPE)]
    cs.history.extend(
        _history_row(cs, entity.id, SCOPE, "", "update" if had or i else "create", doc) for i, doc in enumerate(docs)
    )


def _audit(session: Session, principal: Principal | None, action: str, entity_id: str, **after: Any) -> None:
    audit.record(session, principal, action, "ngsild_entity", entity_id, after=after or None)


# --------------------------------------------------------------------------- routes


def build_temporal_router(broker: Broker) -> APIRouter:
    router = APIRouter(prefix=TEMPORAL, route_class=NgsiRoute, tags=["NGSI-LD temporal"])
    max_instances = broker.settings.temporal_max_instances

    def prepared(
        request: Request, principal: Principal | None
    ) -> tuple[str, ActiveContext, EntityQuery, TemporalQuery, TemporalOptions]:
        """Tenant, @context, entity selection, temporal query and representation of a GET query."""
        tenant = tenant_of(request)
        ctx = query_context(broker, request)
        readable = readable_types(broker, principal)
        p = request.query_params
        # §5.7.4.4: attrs naming only system attributes do not narrow a query
        attrs_ok = "attrs" in p and not system_only(csv_param(request, "attrs") or [])
        qualified = any(k in p for k in ("idPattern", "type", "q", "georel")) or attrs_ok  # ids alone: no (021_24)
        if not qualified and p.get("local") != "true":
            raise bad_request("Give at least one of type, idPattern, attrs, q or a geo-query (or local=true).")
        query = _entity_query(request, ctx, readable)
        opts = temporal_options(request)
        projection(csv_param(request, "pick"), csv_param(request, "omit"), ctx, opts, attrs="attrs" in p)
        tq = _temporal_query(request, opts)
        return tenant, ctx, query, tq, opts

    @router.get("/entities")
    def query_temporal(request: Request, principal: OptionalPrincipal) -> Response:
        media = accept(request)
        tenant, ctx, query, tq, opts = prepared(request, principal)
        return _query_answer(request, tenant, ctx, media, query, tq, opts, ordering_param(request, ctx))

    @router.get("/entityMaps")
    def create_temporal_map(request: Request, principal: OptionalPrincipal) -> Response:
        """Create EntityMap for Query Temporal Evolution of Entities (§5.14.5): a temporal query is needed."""
        media = accept(request)
        if "timerel" not in request.query_params:
            raise bad_request("A temporal entity map needs a temporal query (timerel and timeAt).")
        tenant, ctx, query, tq, _ = prepared(request, principal)
        life = entity_maps.map_request(request, broker.settings).lifetime
        with _db_session(request) as session:
            check_tenant(session, tenant)
            emap = new_map(session, tenant, query, ctx, tq, life)
        return respond(emap.body(), ctx, media, status=201, headers=emap.headers())

    def new_map(
        session: Session, tenant: str, query: EntityQuery, ctx: ActiveContext, tq: TemporalQuery, life: timedelta
    ) -> entity_maps.EntityMap:
        """An entity map of every entity the temporal query matches (§5.14.5)."""
        selection = replace(query)
        _temporal_selection(tenant, selection, tq)
        found, _ = run_query(session, tenant, selection, ctx, limit=entity_maps.MAX_ENTITIES + 1, offset=0, count=False)
        return entity_maps.create(session, tenant, [e.id for e in found], life)

    def _query_answer(
        request: Request,
        tenant: str,
        ctx: ActiveContext,
        media: str,
        query: EntityQuery,
        tq: TemporalQuery,
        opts: TemporalOptions,
        ordering: Ordering | None,
    ) -> Response:
        """A page of entities with their temporal evolution, in the order ``orderBy`` asks for
        (their current values, §4.23; 021_23), else as created."""
        limit = int_param(request, "limit", broker.settings.default_limit, maximum=broker.settings.max_limit)
        offset = int_param(request, "offset", 0)
        count = bool_param(request, "count")
        if limit == 0 and not count:
            raise bad_request("limit=0 is only allowed with count=true.")
        asked = entity_maps.map_request(request, broker.settings)
        with _db_session(request) as session:
            check_tenant(session, tenant)
            # §5.5.9.3, §5.7.4.4: a live entity map fixes the entities considered; the filters still apply
            emap = entity_maps.use(session, tenant, asked)
            if emap is None and asked.any:
                emap = new_map(session, tenant, query, ctx, tq, asked.lifetime)
            if emap is not None:
                query.ids = emap.restrict(query.ids)
            attrs, scopes = _temporal_selection(tenant, query, tq)
            found, total = query_page(session, tenant, query, ctx, limit, offset, count, ordering)
            entities = [(e.id, e.types) for e in found]
            names = _picked(attrs, opts)
            bodies, page = evolutions(session, tenant, entities, names, tq, opts, ctx, max_instances, scopes)
        headers = _headers(page, {"NGSILD-Results-Count": str(total)} if total is not None else None)
        headers.update(emap.headers() if emap is not None else {})
        status = 206 if page else 201 if emap is not None and emap.created else 200
        pref = versions.preference(request.headers)  # §4.3.6.8: Prefer: ngsi-ld=<version>
        bodies, altered = versions.amend_temporal(bodies, pref, opts.fmt)
        return versions.answer(respond_text(bodies, ctx, media, status=status, headers=headers), pref, altered)

    @router.post("/entityOperations/query")
    def query_temporal_post(request: Request, principal: OptionalPrincipal, raw: Body) -> Response:
        """Query Temporal Evolution of Entities with a Query body (§5.7.4, §6.24): ``entities``, ``attrs``,
        ``q``, ``geoQ``, ``temporalQ`` (timerel, timeAt, endTimeAt, timeproperty, lastN, aggrMethods,
        aggrPeriodDuration) and ``lang``; the representation comes from the URL as for GET."""
        media = accept(request)
        tenant = tenant_of(request)
        readable = readable_types(broker, principal)
        body, ct = read_json(request, raw)
        if not isinstance(body, dict):
            raise bad_request("The body must be a Query object.")
        ctx = (
            body_context(broker, request, body, ct)
            if ct == JSONLD or "@context" in body
            else query_context(broker, request)
        )
        if body.get("type", "Query") != "Query":
            raise bad_request("The body type must be Query.")
        query = _query_from_body(body, ctx, readable)
        opts = temporal_options(request)
        if isinstance(body.get("lang"), str):
            opts.lang = body["lang"]
        projection(csv_param(request, "pick"), csv_param(request, "omit"), ctx, opts, attrs=query.attrs is not None)
        params = {**_temporal_params(body.get("temporalQ")), **_aggregation_params(body.get("aggrParams"))}
        if "aggrMethods" in params:
            # aggregation methods in the body, in its TemporalQuery (021_27_07/08) or AggregationParams
            # (v1.9.1 §5.2.44; 5244_01), ask for the aggregated representation
            opts.fmt = "aggregatedValues"
        tq = parse_temporal(params, aggregated=opts.fmt == "aggregatedValues")
        tq.datasets = dataset_ids(csv_param(request, "datasetId"))
        opts.methods = tq.aggr_methods
        opts.timeproperty = tq.timeproperty
        return _query_answer(request, tenant, ctx, media, query, tq, opts, _ordering_from_body(body, ctx))

    @router.post("/entities")
    def create_temporal(request: Request, principal: OptionalPrincipal, raw: Body) -> Response:
        require_write(broker, principal)
        tenant = tenant_of(request)
        body, ct = read_json(request, raw)
        ctx = body_context(broker, request, body, ct)
        if not isinstance(body, dict):
            raise bad_request("The body must be the temporal representation of an entity (a JSON object).")
        raw_id = body.get("id", body.get("@id"))
        if not isinstance(raw_id, str):
            raise bad_request("The entity has no id.")
        eid = _entity_id(raw_id)
        types = parse_types(body.get("type", body.get("@type")), ctx, required=False)
        scopes = parse_scope_instances(body.get("scope"))
        instances = parse_instances(body, ctx)
        with write_session(request, broker, tenant) as (session, cs):
            entity = load_entities(session, tenant, [eid]).get(eid)
            created = entity is None
            if entity is None:
                if not types:
                    raise bad_request("The entity has no type.")
                latest: dict[str, dict[str, dict[str, Any] | Any]] = {}
                for name, per_ds in instances.items():
                    current = {ds: doc for ds, docs in per_ds.items() if (doc := _latest_value(docs)) is not None}
                    if current:  # an attribute given only deletion records has no current value
                        latest[name] = current
                scope = _latest(scopes)["value"] if scopes else body.get("scope")
                entity = new_entity(EntityInput(eid, types, scope, latest), cs)
                cs.create(entity)
            else:
                added = [t for t in types if t not in entity.types]
                if added:
                    entity.types = [*entity.types, *added]
                    cs.touch(entity, types=True)
                if scopes is None and body.get("scope") is not None:
                    cs.set_scope(entity, body["scope"])
            add_instances(session, cs, entity, instances)
            if scopes:
                add_scope_instances(session, cs, entity, scopes)
        if not created:
            return Response(status_code=204)
        headers = {"Location": f"{TEMPORAL}/entities/{quote(eid, safe=':')}"}
        if tenant:
            headers["NGSILD-Tenant"] = tenant
        return Response(status_code=201, headers=headers)

    @router.post("/entities/{entity_id:path}/attrs")
    def add_attrs(entity_id: str, request: Request, principal: OptionalPrincipal, raw: Body) -> Response:
        require_write(broker, principal)
        tenant = tenant_of(request)
        eid = _entity_id(entity_id)
        body, ct = read_json(request, raw)
        ctx = body_context(broker, request, body, ct)
        if not isinstance(body, dict):
            raise bad_request("The body must be a JSON object of attributes and their instances.")
        if body.get("id", eid) != eid:
            raise bad_request("The id in the body differs from the id in the URL.")
        instances = parse_instances(body, ctx)
        scopes = parse_scope_instances(body.get("scope"))
        if not instances and body.get("scope") is None:
            raise bad_request("The body has no attribute instances.")
        with write_session(request, broker, tenant) as (session, cs):
            entity = load_entities(session, tenant, [eid]).get(eid)
            if entity is None:
                raise not_found(f"The entity {eid} does not exist.")
            add_instances(session, cs, entity, instances)
            if scopes:
                add_scope_instances(session, cs, entity, scopes)
            elif body.get("scope") is not None:
                cs.set_scope(entity, body["scope"])
        return Response(status_code=204)

    @router.patch("/entities/{entity_id:path}/attrs/{attr_id:path}/{instance_id}")
    def modify_instance(
        entity_id: str, attr_id: str, instance_id: str, request: Request, principal: OptionalPrincipal, raw: Body
    ) -> Response:
        require_write(broker, principal)
        if not attr_id:  # .../attrs//{instanceId}: no attribute, so no instance resource (§6.2)
            raise NgsiError("MethodNotAllowed", "PATCH needs /attrs/{attrId}/{instanceId}.")
        tenant = tenant_of(request)
        eid = _entity_id(entity_id)
        if not is_uri(instance_id):
            raise bad_request(f"The instanceId must be a URI, got {instance_id!r}.")
        path_name(attr_id)
        body, ct = read_json(request, raw, patch=True)
        ctx = body_context(broker, request, body, ct)
        if not isinstance(body, dict):
            raise bad_request("The body must be an attribute instance (a JSON object).")
        name = ctx.expand(attr_id)
        fragment = {k: v for k, v in body.items() if k not in ("@context", "instanceId")}
        with _db_session(request) as session:
            check_tenant(session, tenant)
            row = session.execute(
                select(H.id, H.doc, H.op).where(*_instance_where(tenant, eid, name, instance_id))
            ).one_or_none()
            if row is None:
                raise not_found(f"No instance {instance_id} of {attr_id} in the history of {eid}.")
            old = dict(row.doc or {})
            if "type" not in fragment and "type" in old:
                fragment["type"] = old["type"]
            parsed = (
                parse_scope_instance(fragment, partial=True)
                if name == SCOPE
                else parse_attribute(name, fragment, ctx, partial=True)
            )
            assert isinstance(parsed, dict)
            doc = {**old, **parsed}
            if "datasetId" in old:  # an instance stays in its datasetId
                doc["datasetId"] = old["datasetId"]
            else:
                doc.pop("datasetId", None)
            value = doc.get("value")
            session.execute(
                update(H)
                .where(H.id == row.id)
                .values(
                    doc=doc,
                    # a deletion record given a value holds one from now on
                    op=NULL_OP if nulled(doc) else "update" if row.op == NULL_OP else row.op,
                    kind=doc.get("type"),
                    value_num=float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None,
                    observed_at=_observed(doc),
                )
            )
            _audit(session, principal, "context.temporal.instance.modify", eid, attribute=name, instance=instance_id)
        return Response(status_code=204)

    @router.delete("/entities/{entity_id:path}/attrs/{attr_id:path}/{instance_id}")
    def delete_instance(
        entity_id: str, attr_id: str, instance_id: str, request: Request, principal: OptionalPrincipal
    ) -> Response:
        if not is_uri(instance_id):
            if is_uri(f"{attr_id}/{instance_id}"):  # an attribute IRI with '/' in it, not an instance
                return delete_attr(entity_id, f"{attr_id}/{instance_id}", request, principal)
            raise bad_request(f"The instanceId must be a URI, got {instance_id!r}.")
        require_write(broker, principal)
        tenant = tenant_of(request)
        eid = _entity_id(entity_id)
        ctx = query_context(broker, request)
        path_name(attr_id)
        name = ctx.expand(attr_id)
        with _db_session(request) as session:
            check_tenant(session, tenant)
            result = session.execute(delete(H).where(*_instance_where(tenant, eid, name, instance_id)))
            if not getattr(result, "rowcount", 0):
                raise not_found(f"No instance {instance_id} of {attr_id} in the history of {eid}.")
            _audit(session, principal, "context.temporal.instance.delete", eid, attribute=name, instance=instance_id)
        return Response(status_code=204)

    @router.delete("/entities/{entity_id:path}/attrs/{attr_id:path}")
    def delete_attr(entity_id: str, attr_id: str, request: Request, principal: OptionalPrincipal) -> Response:
        require_write(broker, principal)
        path_name(attr_id)
        tenant, eid, _ctx, name, dataset_id, delete_all = attribute_deletion(request, broker, entity_id, attr_id)
        with write_session(request, broker, tenant) as (session, cs):
            entity = load_entities(session, tenant, [eid]).get(eid)
            if entity is None:
                raise not_found(f"The entity {eid} does not exist.")
            conds = [H.tenant == tenant, H.entity_id == eid, H.name == name]
            if not delete_all:
                conds.append(H.dataset_id == (dataset_id or ""))
            result = session.execute(delete(H).where(*conds))
            removed = int(getattr(result, "rowcount", 0) or 0)
            per_ds = entity.attrs.get(name, {})
            targets = list(per_ds) if delete_all else [d for d in [dataset_id or ""] if d in per_ds]
            if name == SCOPE and entity.scope is not None:  # the scope's history goes, and so does the scope
                entity.scope = None
                cs.touch(entity)
                targets = [""]
            if not removed and not targets:
                raise not_found(
                    f"The entity {eid} has no attribute {attr_id}" + (f" ({dataset_id})." if dataset_id else ".")
                )
            for ds in targets:
                cs.delete_attr(entity, name, ds)
            gone = set(targets)
            cs.history = [
                h for h in cs.history if not (h["entity_id"] == eid and h["name"] == name and h["dataset_id"] in gone)
            ]
            _audit(session, principal, "context.temporal.attribute.delete", eid, attribute=name, rows=removed)
        return Response(status_code=204)

    # after the instance routes: ``{attr_id:path}`` would also match an attribute and an instance
    @router.api_route("/entities", methods=["PUT", "PATCH", "DELETE"], include_in_schema=False)
    @router.api_route("/entities/{entity_id:path}/attrs/{attr_id:path}", methods=["PATCH"], include_in_schema=False)
    def no_such_operation(request: Request) -> Response:
        """Methods the temporal API does not define on these resources (§6.2): 405."""
        raise NgsiError("MethodNotAllowed", f"{request.method} is not an operation of this resource.")

    @router.get("/entities/{entity_id:path}")
    def retrieve_temporal(entity_id: str, request: Request, principal: OptionalPrincipal) -> Response:
        media = accept(request)
        tenant = tenant_of(request)
        eid = _entity_id(entity_id)
        ctx = query_context(broker, request)
        readable = readable_types(broker, principal)
        opts = temporal_options(request)
        attrs = csv_param(request, "attrs")
        projection(csv_param(request, "pick"), csv_param(request, "omit"), ctx, opts, attrs=attrs is not None)
        tq = _temporal_query(request, opts)
        names = _picked([ctx.expand(a) for a in attrs] if attrs else None, opts)
        asked = entity_maps.map_request(request, broker.settings)
        with _db_session(request) as session:
            check_tenant(session, tenant)
            entity = load_entities(session, tenant, [eid], names=[]).get(eid)
            if entity is None:
                raise not_found(f"The entity {eid} does not exist.")
            if readable is not None and not set(entity.types) & readable:
                raise NgsiError(
                    "Unauthorized", "Reading this entity needs credentials.", headers={"WWW-Authenticate": "Bearer"}
                )
            if attrs and not find_groups(session, tenant, [eid], names)[eid]:
                raise not_found(f"The entity {eid} has none of the attributes {', '.join(attrs)} (§5.7.3.4).")
            bodies, page = evolutions(session, tenant, [(eid, entity.types)], names, tq, opts, ctx, max_instances)
            emap = entity_maps.for_entities(session, tenant, asked, [eid])  # §5.7.3.4
        if (opts.pick is not None or opts.omit is not None) and bodies[0] == "{}":
            raise not_found(f"Nothing of the entity {eid} is left after pick/omit (§4.21).")
        headers = _headers(page, emap.headers() if emap is not None else None)
        pref = versions.preference(request.headers)  # §4.3.6.8: Prefer: ngsi-ld=<version>
        bodies, altered = versions.amend_temporal(bodies, pref, opts.fmt)
        response = respond_text(bodies[0], ctx, media, status=206 if page else 200, headers=headers)
        return versions.answer(response, pref, altered)

    @router.delete("/entities/{entity_id:path}")
    def delete_temporal(entity_id: str, request: Request, principal: OptionalPrincipal) -> Response:
        require_write(broker, principal)
        tenant = tenant_of(request)
        eid = _entity_id(entity_id)
        with write_session(request, broker, tenant) as (session, cs):
            entity = load_entities(session, tenant, [eid]).get(eid)
            result = session.execute(delete(H).where(H.tenant == tenant, H.entity_id == eid))
            removed = int(getattr(result, "rowcount", 0) or 0)
            if entity is None and not removed:
                raise not_found(f"The entity {eid} does not exist.")
            if entity is not None:
                cs.drop(entity)
            cs.history = [h for h in cs.history if h["entity_id"] != eid]
            _audit(session, principal, "context.temporal.delete", eid, rows=removed)
        return Response(status_code=204)

    return router


def _temporal_selection(
    tenant: str, query: EntityQuery, tq: TemporalQuery
) -> tuple[list[str] | None, ScopeValidity | None]:
    """Turn an entity selection into a temporal one (§5.7.4.4), in place: an entity is selected when an
    instance of it (of ``attrs``, which are returned) matches the temporal query, looked for in the
    history so that a deleted attribute still counts; a scopeQ holds where a matching scope was valid
    in the time range (§4.18, S4), which the returned check decides."""
    attrs, query.attrs = query.attrs, None
    query.having = tq.selects(tenant, attrs)
    scopes = ScopeValidity(query.scope, tq, tenant) if query.scope is not None else None
    query.scope, query.check = None, scopes
    return attrs, scopes


def _aggregation_params(raw: Any) -> dict[str, str]:
    """A Query's ``aggrParams`` (AggregationParams, v1.9.1 §5.2.44: ``aggrMethods``, an array of
    methods, and ``aggrPeriodDuration``) as the URL parameters they stand for; empty when absent."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise bad_request("aggrParams must be an AggregationParams object (aggrMethods, aggrPeriodDuration).")
    out: dict[str, str] = {}
    methods = raw.get("aggrMethods")
    if not isinstance(methods, list) or not methods or not all(isinstance(m, str) for m in methods):
        raise bad_request("aggrParams.aggrMethods must be a non-empty array of aggregation methods.")
    out["aggrMethods"] = ",".join(methods)
    if "aggrPeriodDuration" in raw:
        if not isinstance(raw["aggrPeriodDuration"], str):
            raise bad_request("aggrParams.aggrPeriodDuration must be an ISO 8601 duration.")
        out["aggrPeriodDuration"] = raw["aggrPeriodDuration"]
    return out


def _temporal_params(raw: Any) -> dict[str, str]:
    """A Query's ``temporalQ`` (TemporalQuery, §5.2.21) as the URL parameters it stands for."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise bad_request("temporalQ must be a TemporalQuery object.")
    out: dict[str, str] = {}
    for key, value in raw.items():
        if key == "aggrMethods" and isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = ",".join(value)
        if key == "lastN" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise bad_request(f"temporalQ.{key} has an invalid value.")
        out[key] = value
    return out


def _instance_where(tenant: str, eid: str, name: str, instance_id: str) -> list[Any]:
    return [H.tenant == tenant, H.entity_id == eid, H.name == name, H.instance_id == instance_id, H.op != "delete"]
