"""NGSI-LD subscriptions (ETSI GS CIM 009 v1.8 §5.2.12, §5.8, §5.11): the API and the matcher.

* ``/subscriptions`` CRUD: a subscription is validated, its names expanded with the request's
  @context and stored (``ngsild_subscriptions``); answers compact them with the reader's context.
* Matching is a durable consumer of ``context.entity.*``: for each change it finds the tenant's
  subscriptions whose entity selectors, ``watchedAttributes``, ``notificationTrigger``, ``q`` and
  ``geoQ`` match (evaluated against the entity's state when the change is consumed, normally
  milliseconds later), renders the notification with the subscription's @context and queues it
  in ``ngsild_notifications`` in the consumer's transaction (at least once, across restarts).
  ``notify.py`` delivers it.
* Subscriptions with ``timeInterval`` are served by a periodic job that queues the matching
  entities every interval.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from fastapi import APIRouter, Request, Response
from sqlalchemy import case, func, select
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from ioc.core import audit
from ioc.core.auth import OptionalPrincipal, Principal
from ioc.core.db import Database, utcnow
from ioc.core.events import Event
from ioc.core.mqtt import parse_mqtt_url

from . import contexts, linked, versions
from .entity import check_name, format_datetime, parse_datetime
from .errors import NgsiError, NgsiRoute, bad_request, not_found
from .events import EntityChange
from .http import (
    JSONLD,
    PREFIX,
    Body,
    Broker,
    accept,
    add_page_links,
    body_context,
    bool_param,
    int_param,
    options_of,
    query_context,
    read_json,
    readable_types,
    require_write,
    respond,
    tenant_of,
)
from .ld import ActiveContext, ContextLoader, is_uri
from .models import NgsiAttributeHistory
from .notify import GEOJSON, JSON, Notifier, NotifySettings, drop_pending, queue, subscription_status
from .query import GeoQuery, QNode, Resolver, TypeExpr, parse_geoq, parse_q, parse_type_expr, q_matches
from .render import RenderOptions, render_doc, render_entity
from .scope import ScopeExpr, parse_scope_query
from .scope import matches as scope_matches
from .search import EntityQuery, compile_pattern, run_query
from .store import Instance, StoredEntity, check_tenant, ensure_tenant, load_entities
from .subscriptions_models import NgsiSubscription

log = logging.getLogger("ioc.context.subscriptions")

NULL = "urn:ngsi-ld:null"
TRIGGERS = (
    "entityCreated",
    "entityUpdated",
    "entityDeleted",
    "attributeCreated",
    "attributeUpdated",
    "attributeDeleted",
)
DEFAULT_TRIGGERS = ["attributeCreated", "attributeUpdated"]
FORMATS = ("normalized", "concise", "keyValues", "simplified")
ACCEPTS = (JSON, JSONLD, GEOJSON)
CONSUMER = "context.subscriptions"
Times = tuple[datetime, datetime]  # createdAt, modifiedAt
_TYPE_TOKENS = re.compile(r"[(),;|]|[^(),;|]+")
#: per attribute type: the member holding its value, and the member for its previous value (showChanges)
_VALUE_MEMBERS = {
    "Property": ("value", "previousValue"),
    "GeoProperty": ("value", "previousValue"),
    "Relationship": ("object", "previousObject"),
    "LanguageProperty": ("languageMap", "previousLanguageMap"),
    "ListProperty": ("valueList", "previousValueList"),
    "ListRelationship": ("objectList", "previousObjectList"),
    "JsonProperty": ("json", "previousJson"),
    "VocabProperty": ("vocab", "previousVocab"),
}


# --------------------------------------------------------------------------- parsing


def _type_expr_map(text: str, fn: Any) -> str:
    """A type expression with every type name passed through ``fn`` (expand or compact)."""
    return "".join(tok if tok in "(),;|" else fn(tok.strip()) for tok in _TYPE_TOKENS.findall(text))


def _names(value: Any, what: str, ctx: ActiveContext) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise bad_request(f"{what} must be a non-empty array of attribute names.")
    for v in value:
        check_name(v)
    return [ctx.expand(v) for v in value]


def _members(value: Any, what: str, ctx: ActiveContext) -> list[str]:
    """``notification.pick``/``omit`` (Table 5.2.14.1-1): §4.21 projections, kept as written with their
    names expanded."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise bad_request(f"{what} must be a non-empty array of names.")
    for v in value:
        linked.parse_projection(v, ctx, what)
    return [linked.rename_projection(v, ctx.expand) for v in value]


def _projection(note: dict[str, Any], member: str, ctx: ActiveContext) -> linked.Projection | None:
    """The stored ``pick`` or ``omit`` of a notification as one projection (its items are or-ed, §4.21)."""
    items = note.get(member)
    return linked.parse_projection(",".join(items), ctx, f"notification.{member}") if items else None


def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise bad_request(f"{what} must be a positive number of seconds.")
    return float(value)


def _key_value_list(value: Any, what: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not all(
        isinstance(i, dict) and isinstance(i.get("key"), str) and i["key"] and isinstance(i.get("value"), str)
        for i in value
    ):
        raise bad_request(f"{what} must be an array of {{key, value}} strings.")
    for item in value:
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", item["key"]) or "\n" in item["value"]:
            raise bad_request(f"{what}: {item['key']!r} cannot be sent as a header.")
    return [{"key": i["key"], "value": i["value"]} for i in value]


def _endpoint(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise bad_request("notification.endpoint must be an object with a uri.")
    uri = raw.get("uri")
    if not isinstance(uri, str) or not uri:
        raise bad_request("notification.endpoint.uri is required.")
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        if not parts.netloc:
            raise bad_request(f"notification.endpoint.uri must be an absolute URI, got {uri!r}.")
    elif parts.scheme in ("mqtt", "mqtts"):
        try:
            target = parse_mqtt_url(uri)
        except ValueError as exc:
            raise bad_request(f"notification.endpoint.uri: {exc}") from exc
        if not target.topic:
            raise bad_request("An MQTT endpoint needs a topic: mqtt://host[:port]/topic.")
    else:
        raise bad_request(f"notification.endpoint.uri must be an absolute http(s) or mqtt(s) URI, got {uri!r}.")
    out: dict[str, Any] = {"uri": uri}
    acc = raw.get("accept", JSON)
    if acc not in ACCEPTS:
        raise bad_request(f"notification.endpoint.accept must be one of {', '.join(ACCEPTS)}.")
    out["accept"] = acc
    for member in ("receiverInfo", "notifierInfo"):
        if member in raw:
            out[member] = _key_value_list(raw[member], f"notification.endpoint.{member}")
    info = {i["key"]: i["value"] for i in out.get("notifierInfo", [])}
    if "MQTT-QoS" in info and info["MQTT-QoS"] not in ("0", "1", "2"):
        raise bad_request("MQTT-QoS must be 0, 1 or 2.")
    if "MQTT-Version" in info and info["MQTT-Version"] not in ("mqtt3.1.1", "mqtt5.0"):
        raise bad_request("MQTT-Version must be mqtt3.1.1 or mqtt5.0.")
    return out


def _notification(raw: Any, ctx: ActiveContext) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise bad_request("notification must be an object (NotificationParams).")
    out: dict[str, Any] = {"endpoint": _endpoint(raw.get("endpoint"))}
    # Members the subscriber did not give are not stored (their defaults apply when notifying), so the
    # subscription reads back as written (§5.2.14; the conformance suite compares it member by member).
    if "format" in raw:
        if raw["format"] not in FORMATS:
            raise bad_request(f"notification.format must be one of {', '.join(FORMATS)}.")
        out["format"] = raw["format"]
    if "attributes" in raw:
        out["attributes"] = _names(raw["attributes"], "notification.attributes", ctx)
    for member in ("pick", "omit"):
        if member in raw:
            if "attributes" in raw:
                raise bad_request(f"notification.{member} and notification.attributes cannot be used together.")
            out[member] = _members(raw[member], f"notification.{member}", ctx)
    if set(out.get("pick", [])) & set(out.get("omit", [])):
        raise bad_request("A member cannot be both in notification.pick and notification.omit.")
    for member in ("showChanges", "sysAttrs"):
        if member in raw:
            if not isinstance(raw[member], bool):
                raise bad_request(f"notification.{member} must be true or false.")
            out[member] = raw[member]
    if "join" in raw or "joinLevel" in raw:
        # §5.2.14 NotificationParams join/joinLevel (§4.5.23): validated, kept as written
        linked.parse_join(
            raw.get("join"), raw.get("joinLevel"), [], _projection(out, "pick", ctx), _projection(out, "omit", ctx)
        )
        out.update({m: raw[m] for m in ("join", "joinLevel") if m in raw})
    if out.get("showChanges") and out.get("format") in ("keyValues", "simplified"):
        # Table 5.2.14.1-1: showChanges cannot be true when format is keyValues (or its synonym simplified)
        raise bad_request("notification.showChanges cannot be true with the keyValues format.")
    return out


def parse_subscription(
    body: Any, ctx: ActiveContext, *, creating: bool, loader: ContextLoader | None = None
) -> dict[str, Any]:
    """The stored form of a Subscription (names expanded); 400 BadRequestData when invalid."""
    if not isinstance(body, dict) or not body:
        raise bad_request("The body must be a Subscription object.")
    if body.get("type") != "Subscription":
        raise bad_request('A subscription needs "type": "Subscription".')
    doc: dict[str, Any] = {"type": "Subscription"}
    sid = body.get("id", body.get("@id"))
    if sid is not None:
        if not isinstance(sid, str) or not is_uri(sid):
            raise bad_request("The subscription id must be a URI.")
        doc["id"] = sid
    for member in ("subscriptionName", "description", "lang"):
        if member in body:
            if not isinstance(body[member], str):
                raise bad_request(f"{member} must be a string.")
            doc[member] = body[member]
    if "entities" in body:
        sels = body["entities"]
        if not isinstance(sels, list) or not sels or not all(isinstance(s, dict) for s in sels):
            raise bad_request("entities must be a non-empty array of entity selectors.")
        out = []
        for sel in sels:
            item: dict[str, Any] = {}
            if not isinstance(sel.get("type"), str) or not sel["type"]:
                raise bad_request("Every entity selector needs a type.")
            parse_type_expr(sel["type"], ctx)  # validates
            item["type"] = _type_expr_map(sel["type"], ctx.expand)
            if "id" in sel:
                if not isinstance(sel["id"], str) or not is_uri(sel["id"]):
                    raise bad_request("An entity selector id must be a URI.")
                item["id"] = sel["id"]
            if "idPattern" in sel:
                if not isinstance(sel["idPattern"], str):
                    raise bad_request("idPattern must be a string.")
                compile_pattern(sel["idPattern"])
                item["idPattern"] = sel["idPattern"]
            out.append(item)
        doc["entities"] = out
    if "watchedAttributes" in body:
        doc["watchedAttributes"] = _names(body["watchedAttributes"], "watchedAttributes", ctx)
    if "entities" not in doc and "watchedAttributes" not in doc:
        raise bad_request("A subscription needs entities or watchedAttributes.")
    trig = body.get("notificationTrigger", DEFAULT_TRIGGERS)
    if not isinstance(trig, list) or not trig or not all(t in TRIGGERS for t in trig):
        raise bad_request(f"notificationTrigger must be a non-empty array of {', '.join(TRIGGERS)}.")
    doc["notificationTrigger"] = list(dict.fromkeys(trig))
    if "timeInterval" in body:
        doc["timeInterval"] = _positive(body["timeInterval"], "timeInterval")
        if "watchedAttributes" in doc:
            raise bad_request("timeInterval and watchedAttributes cannot be used together.")
        if "throttling" in body:
            raise bad_request("timeInterval and throttling cannot be used together.")
    if "throttling" in body:
        doc["throttling"] = _positive(body["throttling"], "throttling")
    if "q" in body:
        if not isinstance(body["q"], str) or not body["q"]:
            raise bad_request("q must be a non-empty string.")
        parse_q(body["q"], ctx)
        doc["q"] = body["q"]
    if "geoQ" in body:
        geo = body["geoQ"]
        if not isinstance(geo, dict):
            raise bad_request("geoQ must be an object (geometry, coordinates, georel, geoproperty).")
        prop = geo.get("geoproperty")
        if prop is not None and not isinstance(prop, str):
            raise bad_request("geoQ.geoproperty must be a string.")
        for member in ("georel", "geometry"):
            if not isinstance(geo.get(member), str):
                raise bad_request(f"geoQ.{member} is required.")
        parsed = parse_geoq(geo.get("georel"), geo.get("geometry"), geo.get("coordinates"), prop, ctx)
        assert parsed is not None
        doc["geoQ"] = {
            "geometry": geo["geometry"],
            "coordinates": geo["coordinates"],
            "georel": geo["georel"],
            "geoproperty": parsed.geoproperty,
        }
    if "csf" in body:
        # Context source filter (§4.9 syntax): only about context source registrations, which this broker
        # has none of, so a valid one is kept and never narrows anything; an invalid one is refused.
        if not isinstance(body["csf"], str) or not body["csf"]:
            raise bad_request("csf must be a non-empty query string.")
        parse_q(body["csf"], ctx)
        doc["csf"] = body["csf"]
    if "datasetId" in body:
        # §5.2.12 (v1.8): the attribute instances to notify, by datasetId ("@none" = the default instance)
        ds = body["datasetId"]
        ds = [ds] if isinstance(ds, str) else ds
        valid = isinstance(ds, list) and bool(ds)
        valid = valid and all(isinstance(d, str) and (d == "@none" or is_uri(d)) for d in ds)
        if not valid:
            raise bad_request('datasetId must be an array of URIs (or "@none").')
        doc["datasetId"] = list(dict.fromkeys(ds))
    if "scopeQ" in body:
        if not isinstance(body["scopeQ"], str):
            raise bad_request("scopeQ must be a string.")
        parse_scope_query(body["scopeQ"])  # validates (§4.19)
        doc["scopeQ"] = body["scopeQ"]
    if "temporalQ" in body:
        raise NgsiError("OperationNotSupported", "temporalQ is not supported in subscriptions by this broker.")
    if "isActive" in body:
        if not isinstance(body["isActive"], bool):
            raise bad_request("isActive must be true or false.")
        doc["isActive"] = body["isActive"]
    if "expiresAt" in body:
        expires = parse_datetime(body["expiresAt"], "expiresAt")
        if expires <= utcnow():
            raise bad_request("expiresAt must be in the future.")
        doc["expiresAt"] = format_datetime(expires)
    if "jsonldContext" in body:
        jc = body["jsonldContext"]
        if not isinstance(jc, str) or not is_uri(jc) or not urlsplit(jc).netloc:
            raise bad_request("jsonldContext must be a dereferenceable URI.")
        if loader is not None:
            loader.active(jc)  # §5.8.1.4: a context that cannot be loaded is 503 LdContextNotAvailable
        doc["jsonldContext"] = jc
    if "notification" not in body:
        raise bad_request("A subscription needs a notification member with an endpoint.")
    doc["notification"] = _notification(body["notification"], ctx)
    return doc


def render_subscription(row: NgsiSubscription, ctx: ActiveContext, *, sys_attrs: bool = False) -> dict[str, Any]:
    """The subscription as the API shows it: names compacted with ``ctx``, status and counters."""
    doc = row.doc
    out: dict[str, Any] = {"id": row.sub_id, "type": "Subscription"}
    for member in ("subscriptionName", "description"):
        if member in doc:
            out[member] = doc[member]
    if "entities" in doc:
        out["entities"] = [
            {**sel, "type": _type_expr_map(sel["type"], ctx.compact)}
            for sel in doc["entities"]
            if isinstance(sel, dict)
        ]
    if "watchedAttributes" in doc:
        out["watchedAttributes"] = [ctx.compact(a) for a in doc["watchedAttributes"]]
    out["notificationTrigger"] = doc.get("notificationTrigger", DEFAULT_TRIGGERS)
    for member in (
        "timeInterval",
        "q",
        "scopeQ",
        "csf",
        "datasetId",
        "lang",
        "throttling",
        "expiresAt",
        "jsonldContext",
    ):
        if member in doc:
            value = doc[member]
            out[member] = int(value) if isinstance(value, float) and value.is_integer() else value
    if "jsonldContext" not in out and "implicitContext" in doc:
        out["jsonldContext"] = doc["implicitContext"]
    if "geoQ" in doc:
        out["geoQ"] = {**doc["geoQ"], "geoproperty": ctx.compact(doc["geoQ"]["geoproperty"])}
    if "isActive" in doc:  # shown as given (its default, true, is not added)
        out["isActive"] = row.is_active
    note = dict(doc.get("notification", {}))
    if "attributes" in note:
        note["attributes"] = [n if n in ("id", "type", "scope") else ctx.compact(n) for n in note["attributes"]]
    for member in ("pick", "omit"):
        if member in note:
            note[member] = [linked.rename_projection(n, ctx.compact) for n in note[member]]
    if row.last_status:
        note["status"] = row.last_status
    if row.times_sent:
        note["timesSent"] = row.times_sent
    if row.times_failed:
        note["timesFailed"] = row.times_failed
    for member, value in (
        ("lastNotification", row.last_notification),
        ("lastSuccess", row.last_success),
        ("lastFailure", row.last_failure),
    ):
        if value is not None:
            note[member] = format_datetime(value)
    out["notification"] = note
    out["status"] = subscription_status(row)
    if sys_attrs:
        out["createdAt"] = format_datetime(row.created_at)
        out["modifiedAt"] = format_datetime(row.modified_at)
    return out


_READ_ONLY = ("status", "timesSent", "timesFailed", "lastNotification", "lastSuccess", "lastFailure")


def _merge_notification(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    note = dict(current)
    for key, value in patch.items():
        if value is None or value == NULL:
            note.pop(key, None)
        else:
            note[key] = value
    if ("pick" in patch or "omit" in patch) and "attributes" not in patch:
        note.pop("attributes", None)
    if "attributes" in patch:
        note.pop("pick", None)
        note.pop("omit", None)
    return note


def _audit_snapshot(row: NgsiSubscription) -> dict[str, Any]:
    """The subscription as audited: receiverInfo values (often credentials) masked."""
    doc = {k: v for k, v in row.doc.items() if k != "notification"}
    note = dict(row.doc.get("notification", {}))
    endpoint = dict(note.get("endpoint", {}))
    if "receiverInfo" in endpoint:
        endpoint["receiverInfo"] = [{"key": i.get("key"), "value": "***"} for i in endpoint["receiverInfo"]]
    uri = str(endpoint.get("uri", ""))
    parts = urlsplit(uri)
    if parts.password:
        endpoint["uri"] = uri.replace(f":{parts.password}@", ":***@", 1)
    note["endpoint"] = endpoint
    return {**doc, "notification": note, "isActive": row.is_active}


def _apply_columns(row: NgsiSubscription, doc: dict[str, Any], now: datetime) -> None:
    row.doc = doc
    row.is_active = bool(doc.get("isActive", True))
    row.expires_at = parse_datetime(doc["expiresAt"], "expiresAt") if "expiresAt" in doc else None
    row.throttling = doc.get("throttling")
    interval = doc.get("timeInterval")
    if interval != row.time_interval:
        row.next_run_at = now if interval is not None else None
    row.time_interval = interval
    row.modified_at = now


# --------------------------------------------------------------------------- the API


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def _require_read(broker: Broker, principal: Principal | None) -> None:
    if readable_types(broker, principal) is not None:
        raise NgsiError(
            "Unauthorized", "Reading subscriptions needs credentials.", headers={"WWW-Authenticate": "Bearer"}
        )


def _find(session: Session, tenant: str, sub_id: str) -> NgsiSubscription:
    row = session.scalar(
        select(NgsiSubscription).where(NgsiSubscription.tenant == tenant, NgsiSubscription.sub_id == sub_id)
    )
    if row is None:
        raise not_found(f"The subscription {sub_id} does not exist.")
    return row


def _sub_id(raw: str) -> str:
    if not is_uri(raw):
        raise bad_request(f"The subscription id must be a URI, got {raw!r}.")
    return raw


def _with_preference(response: Response, request: Request) -> Response:
    """A Subscription with ``Prefer: ngsi-ld=<version>``: §4.3.6.8 alters Entity data only, so
    the Subscription is returned as it is, the preference acknowledged (``Preference-Applied``)."""
    return versions.answer(response, versions.preference(request.headers), altered=False)


def build_subscription_router(broker: Broker, notifier: Notifier) -> APIRouter:
    """The ``/subscriptions`` routes (include before the entity router and its catch-all)."""
    router = APIRouter(prefix=PREFIX, route_class=NgsiRoute, tags=["NGSI-LD"])

    @router.post("/subscriptions", status_code=201)
    def create_subscription(request: Request, principal: OptionalPrincipal, raw: Body) -> Response:
        require_write(broker, principal)
        tenant = tenant_of(request)
        body, ct = read_json(request, raw)
        ctx = body_context(broker, request, body, ct)
        doc = parse_subscription(body, ctx, creating=True, loader=broker.loader)
        sub_id = doc.setdefault("id", f"urn:ngsi-ld:Subscription:{uuid.uuid4()}")
        now = utcnow()
        with _db(request).session() as session:
            exists = session.scalar(
                select(NgsiSubscription.pk).where(NgsiSubscription.tenant == tenant, NgsiSubscription.sub_id == sub_id)
            )
            if exists is not None:
                raise NgsiError("AlreadyExists", f"The subscription {sub_id} already exists.")
            ensure_tenant(session, tenant, now)
            if "jsonldContext" not in doc and isinstance(ctx.source, list | dict):
                # §5.13: a @context that is not one URI is hosted, ImplicitlyCreated, so that the
                # subscription can name it by URL as its jsonldContext (050_03, 052_06); its
                # notifications still carry the @context as given (046_10, 046_14)
                implicit = contexts.add_hosted(session, ctx.source, tenant, kind="ImplicitlyCreated")
                doc["implicitContext"] = contexts.url_of(str(request.base_url), implicit)
            row = NgsiSubscription(
                tenant=tenant,
                sub_id=sub_id,
                context=ctx.source,
                times_sent=0,
                times_failed=0,
                created_at=now,
            )
            _apply_columns(row, doc, now)
            session.add(row)
            session.flush()
            audit.record(
                session,
                principal,
                "context.subscription.create",
                "ngsild_subscription",
                sub_id,
                after=_audit_snapshot(row),
                ip=principal.ip if principal else None,
            )
        if doc.get("timeInterval") is not None:
            notifier.wake()
        headers = {"Location": f"{PREFIX}/subscriptions/{quote(sub_id, safe=':')}"}
        if tenant:
            headers["NGSILD-Tenant"] = tenant
        return Response(status_code=201, headers=headers)

    @router.get("/subscriptions")
    def query_subscriptions(request: Request, principal: OptionalPrincipal) -> Response:
        media = accept(request)
        _require_read(broker, principal)
        tenant = tenant_of(request)
        ctx = query_context(broker, request)
        limit = int_param(request, "limit", broker.settings.default_limit, maximum=broker.settings.max_limit)
        offset = int_param(request, "offset", 0)
        count = bool_param(request, "count")
        if limit == 0 and not count:
            raise bad_request("limit=0 is only allowed with count=true.")
        sys_attrs = "sysAttrs" in options_of(request)
        with _db(request).session() as session:
            check_tenant(session, tenant)
            where = NgsiSubscription.tenant == tenant
            rows = list(
                session.scalars(
                    select(NgsiSubscription).where(where).order_by(NgsiSubscription.pk).limit(limit).offset(offset)
                )
            )
            total = int(session.scalar(select(func.count()).select_from(NgsiSubscription).where(where)) or 0)
            items = [render_subscription(r, ctx, sys_attrs=sys_attrs) for r in rows]
        headers = {"NGSILD-Results-Count": str(total)} if count else {}
        response = respond(items, ctx, media, headers=headers)
        add_page_links(response, request, limit=limit, offset=offset, more=offset + limit < total, media=media)
        return _with_preference(response, request)

    @router.api_route("/subscriptions", methods=["PUT", "PATCH", "DELETE"], include_in_schema=False)
    def subscriptions_not_allowed(request: Request) -> Response:
        raise NgsiError(
            "MethodNotAllowed",
            f"{request.method} is not defined on /subscriptions: give a subscription id.",
            headers={"Allow": "GET, POST"},
        )

    @router.get("/subscriptions/{sub_id:path}")
    def retrieve_subscription(sub_id: str, request: Request, principal: OptionalPrincipal) -> Response:
        media = accept(request)
        _require_read(broker, principal)
        tenant = tenant_of(request)
        sid = _sub_id(sub_id)
        ctx = query_context(broker, request)
        sys_attrs = "sysAttrs" in options_of(request)
        with _db(request).session() as session:
            check_tenant(session, tenant)
            row = _find(session, tenant, sid)
            pk = row.pk
        # a delivery in flight for this subscription is recorded before it is read back (§5.8.6)
        notifier.settle(pk)
        with _db(request).session() as session:
            body = render_subscription(_find(session, tenant, sid), ctx, sys_attrs=sys_attrs)
        return _with_preference(respond(body, ctx, media), request)

    @router.patch("/subscriptions/{sub_id:path}")
    def update_subscription(sub_id: str, request: Request, principal: OptionalPrincipal, raw: Body) -> Response:
        require_write(broker, principal)
        tenant = tenant_of(request)
        sid = _sub_id(sub_id)
        body, ct = read_json(request, raw, patch=True)
        ctx = body_context(broker, request, body, ct)
        if not isinstance(body, dict) or not {k for k in body if k != "@context"}:
            raise bad_request("The body must be a non-empty Subscription fragment.")
        if body.get("id", sid) != sid:
            raise bad_request("The id in the body differs from the id in the URL.")
        if body.get("type", "Subscription") != "Subscription":
            raise bad_request('The type of a subscription is "Subscription".')
        now = utcnow()
        with _db(request).session() as session:
            check_tenant(session, tenant)
            row = _find(session, tenant, sid)
            before = _audit_snapshot(row)
            merged = render_subscription(row, ctx)
            merged.pop("status", None)
            merged["notification"] = {k: v for k, v in merged["notification"].items() if k not in _READ_ONLY}
            for key, value in body.items():
                if key in ("@context", "id", "type"):
                    continue
                if value is None or value == NULL:
                    merged.pop(key, None)
                elif key == "notification" and isinstance(value, dict):
                    merged["notification"] = _merge_notification(merged.get("notification", {}), value)
                else:
                    merged[key] = value
            # An expired subscription can still be changed (paused, say) without a new expiresAt.
            keep_expiry = merged.pop("expiresAt", None) if "expiresAt" not in body else None
            doc = parse_subscription({**merged, "type": "Subscription"}, ctx, creating=False, loader=broker.loader)
            if keep_expiry is not None:
                doc["expiresAt"] = keep_expiry
            # q keeps the @context it was written with, so a later PATCH under another context
            # does not change what it means.
            if "q" in doc and "q" not in body and "qContext" in row.doc:
                doc["qContext"] = row.doc["qContext"]
            elif "q" in body and "q" in doc and ctx.source != row.context:
                doc["qContext"] = ctx.source
            _apply_columns(row, doc, now)
            audit.record(
                session,
                principal,
                "context.subscription.update",
                "ngsild_subscription",
                sid,
                before=before,
                after=_audit_snapshot(row),
                ip=principal.ip if principal else None,
            )
        notifier.wake()
        return Response(status_code=204)

    @router.delete("/subscriptions/{sub_id:path}")
    def delete_subscription(sub_id: str, request: Request, principal: OptionalPrincipal) -> Response:
        require_write(broker, principal)
        tenant = tenant_of(request)
        sid = _sub_id(sub_id)
        with _db(request).session() as session:
            check_tenant(session, tenant)
            row = _find(session, tenant, sid)
            before = _audit_snapshot(row)
            drop_pending(session, row.pk)
            session.delete(row)
            audit.record(
                session,
                principal,
                "context.subscription.delete",
                "ngsild_subscription",
                sid,
                before=before,
                ip=principal.ip if principal else None,
            )
        return Response(status_code=204)

    return router


# --------------------------------------------------------------------------- matching


@dataclass
class _Selector:
    id: str | None
    pattern: re.Pattern[str] | None
    types: TypeExpr


@dataclass
class Compiled:
    """A subscription parsed once for matching (cached per (pk, modified_at))."""

    selectors: list[_Selector]
    watched: set[str] | None
    triggers: list[str]
    q: QNode | None
    geo: GeoQuery | None
    scope: ScopeExpr | None
    ctx: ActiveContext  # for q
    notify_ctx: ActiveContext  # names in notifications
    opts: RenderOptions
    attributes: set[str] | None
    show_changes: bool
    accept: str
    datasets: set[str] | None = None  # the datasetIds to notify ('' = the default instance); None = all
    join: linked.Join | None = None  # Linked Entities in notifications (§4.5.23)
    extra: dict[str, Any] = field(default_factory=dict)


def _stored_projection(note: dict[str, Any], member: str, core: ActiveContext) -> linked.Projection | None:
    """A stored ``pick``/``omit``; one written before they were checked as projections, which the
    parser refuses, keeps its old meaning: plain member names."""
    try:
        return _projection(note, member, core)
    except NgsiError:
        return dict.fromkeys(note[member])


def compile_subscription(row: NgsiSubscription, loader: ContextLoader) -> Compiled:
    doc = row.doc
    ctx = loader.active(doc.get("qContext", row.context))
    notify_ctx = loader.active(doc.get("jsonldContext", row.context))
    core = loader.core
    selectors = [
        _Selector(
            s.get("id"),
            compile_pattern(s["idPattern"]) if s.get("idPattern") and not s.get("id") else None,
            parse_type_expr(s["type"], core),  # stored expanded: the core context keeps IRIs as they are
        )
        for s in doc.get("entities", [])
    ]
    geo = None
    if "geoQ" in doc:
        g = doc["geoQ"]
        geo = parse_geoq(g["georel"], g["geometry"], g["coordinates"], g["geoproperty"], core)
    note = doc.get("notification", {})
    attributes = set(note["attributes"]) if note.get("attributes") else None
    pick_tree, omit_tree = _stored_projection(note, "pick", core), _stored_projection(note, "omit", core)
    pick = linked.top_names(pick_tree, omit=False) if pick_tree is not None else None
    if attributes is not None:
        pick = attributes | {"id", "type", "scope"}
    fmt = note.get("format", "normalized")
    opts = RenderOptions(
        fmt="keyValues" if fmt == "simplified" else fmt,
        sys_attrs=bool(note.get("sysAttrs")),
        lang=doc.get("lang"),
        pick=pick,
        omit=linked.top_names(omit_tree, omit=True) if omit_tree is not None else None,
    )
    return Compiled(
        selectors=selectors,
        watched=set(doc["watchedAttributes"]) if doc.get("watchedAttributes") else None,
        triggers=list(doc.get("notificationTrigger", DEFAULT_TRIGGERS)),
        # a q written into a subscription may be percent-encoded as in a URL (the conformance suite
        # writes name=="Eiffel%20Tower"): it is matched decoded
        q=parse_q(unquote(doc["q"]), ctx) if doc.get("q") else None,
        geo=geo,
        scope=parse_scope_query(doc["scopeQ"]) if doc.get("scopeQ") else None,
        ctx=ctx,
        notify_ctx=notify_ctx,
        opts=opts,
        attributes=attributes,
        show_changes=bool(note.get("showChanges")),
        accept=note.get("endpoint", {}).get("accept", JSON),
        datasets={"" if d == "@none" else d for d in doc["datasetId"]} if doc.get("datasetId") else None,
        join=linked.parse_join(note.get("join"), note.get("joinLevel"), [], pick_tree, omit_tree),
    )


class Matcher:
    """Turns entity changes into queued notifications (the durable consumer's handler)."""

    ORDER = (
        "entityCreated",
        "entityDeleted",
        "entityUpdated",
        "attributeCreated",
        "attributeUpdated",
        "attributeDeleted",
    )

    def __init__(self, loader: ContextLoader, notifier: Notifier) -> None:
        self.loader = loader
        self.notifier = notifier
        self._compiled: dict[tuple[int, datetime], Compiled] = {}

    def compiled(self, row: NgsiSubscription) -> Compiled:
        key = (row.pk, row.modified_at)
        found = self._compiled.get(key)
        if found is None:
            if len(self._compiled) > 10_000:
                self._compiled.clear()
            found = self._compiled[key] = compile_subscription(row, self.loader)
        return found

    def _subscriptions(self, session: Session, tenant: str) -> list[NgsiSubscription]:
        cache: dict[str, list[NgsiSubscription]] = session.info.setdefault("ngsild_subscriptions", {})
        if tenant not in cache:
            cache[tenant] = list(
                session.scalars(
                    select(NgsiSubscription).where(
                        NgsiSubscription.tenant == tenant, NgsiSubscription.time_interval.is_(None)
                    )
                )
            )
        return cache[tenant]

    def _wake_after_commit(self, session: Session) -> None:
        if not session.info.get("ngsild_notify_hook"):
            session.info["ngsild_notify_hook"] = True
            sa_event.listen(session, "after_commit", lambda _s: self.notifier.wake(), once=True)

    def handle(self, session: Session, ev: Event) -> None:
        kind = ev.topic.rsplit(".", 1)[-1]
        change = EntityChange.model_validate(ev.payload)
        subs = self._subscriptions(session, change.tenant)
        if not subs:
            return
        now = utcnow()
        candidates = []
        for row in subs:
            if row.created_at > ev.created_at or subscription_status(row, now) != "active":
                continue
            comp = self.compiled(row)
            if comp.selectors and not any(_selector_matches(s, change) for s in comp.selectors):
                continue
            candidates.append((row, comp))
        if not candidates:
            return
        facts = _Facts.of(session, change, kind, self.loader.core)
        entity: StoredEntity | None = None
        for row, comp in candidates:
            reason = self._reason(comp, facts.reasons)
            if reason is None:
                continue
            if (
                row.throttling
                and row.last_queued_at is not None
                and (now - row.last_queued_at).total_seconds() < row.throttling
            ):
                continue
            if kind == "deleted":
                state = _entity_from_docs(change, facts.previous())
            else:
                if entity is None:
                    entity = load_entities(session, change.tenant, [change.id]).get(change.id)
                if entity is None:
                    continue  # deleted since: its deletion is notified by its own event
                state = entity
            if comp.q is not None and not q_matches(
                comp.q, state, comp.ctx, _linked_resolver(session, change, comp.q, state)
            ):
                continue
            if comp.geo is not None and not comp.geo.matches(state):
                continue
            if comp.scope is not None and not scope_matches(comp.scope, state.scope):
                continue
            joined = _joined(session, change.tenant, comp, [state]) if kind != "deleted" else []
            data = _render(comp, reason, state, facts, joined[0] if joined else None)
            body = _notification_body(row, comp, [data, *joined[1:]], reason)
            queue(session, row, body, now)
            row.last_queued_at = now
            self._wake_after_commit(session)

    def _reason(self, comp: Compiled, reasons: dict[str, set[str]]) -> str | None:
        for trigger in self.ORDER:
            if trigger not in comp.triggers or trigger not in reasons:
                continue
            names = reasons[trigger]
            if trigger.startswith("entity"):
                if comp.watched is None or names & comp.watched:
                    return trigger
            elif names and (comp.watched is None or names & comp.watched):
                return trigger
        return None


def _selector_matches(sel: _Selector, change: EntityChange) -> bool:
    if sel.id is not None and sel.id != change.id:
        return False
    if sel.pattern is not None and not sel.pattern.search(change.id):
        return False
    return sel.types.matches(change.type_iris)


def _at(change: EntityChange) -> tuple[datetime, datetime]:
    return change.at - timedelta(milliseconds=1), change.at + timedelta(milliseconds=1)


def _ops_at(session: Session, change: EntityChange, names: set[str]) -> dict[str, str]:
    """create or update, per attribute changed by this change (from its history rows)."""
    if not names:
        return {}
    lo, hi = _at(change)
    h = NgsiAttributeHistory
    rows = session.execute(
        select(h.name, h.op).where(
            h.tenant == change.tenant,
            h.entity_id == change.id,
            h.name.in_(sorted(names)),
            h.recorded_at >= lo,
            h.recorded_at <= hi,
        )
    ).all()
    ops: dict[str, str] = {}
    for name, op in rows:
        if op == "update" or name not in ops:
            ops[name] = op
    return ops


def _previous_docs(session: Session, change: EntityChange, names: set[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """name -> datasetId -> the instance before this change (absent if it did not exist)."""
    lo, _ = _at(change)
    h = NgsiAttributeHistory
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name in sorted(names):
        rows = session.execute(
            select(h.dataset_id, h.op, h.doc)
            .where(h.tenant == change.tenant, h.entity_id == change.id, h.name == name, h.recorded_at < lo)
            .order_by(h.recorded_at.desc(), h.id.desc())
            .limit(20)
        ).all()
        seen: set[str] = set()
        for ds, op, doc in rows:
            if ds in seen:
                continue
            seen.add(ds)
            if op != "delete" and isinstance(doc, dict):
                out.setdefault(name, {})[ds] = doc
    return out


def _instance_times(session: Session, change: EntityChange, names: set[str]) -> dict[tuple[str, str], Times]:
    """(name, datasetId) -> when each instance was last created and last modified before this change:
    the system attributes of an attribute deleted by it (sysAttrs, §4.8)."""
    if not names:
        return {}
    lo, _ = _at(change)
    h = NgsiAttributeHistory
    rows = session.execute(
        select(h.name, h.dataset_id, func.max(case((h.op == "create", h.recorded_at))), func.max(h.recorded_at))
        .where(h.tenant == change.tenant, h.entity_id == change.id, h.name.in_(sorted(names)), h.recorded_at < lo)
        .group_by(h.name, h.dataset_id)
    ).all()
    return {(name, ds): (created or modified, modified) for name, ds, created, modified in rows}


def _lifetime(session: Session, change: EntityChange) -> Times:
    """When a deleted entity was created and last modified (from its history), for sysAttrs."""
    lo, _ = _at(change)
    h = NgsiAttributeHistory
    row = session.execute(
        select(func.min(h.recorded_at), func.max(h.recorded_at)).where(
            h.tenant == change.tenant, h.entity_id == change.id, h.recorded_at < lo
        )
    ).one_or_none()
    if row is None or row[0] is None:
        return (change.at, change.at)
    return (row[0], row[1])


@dataclass
class _Facts:
    """What one entity change did, shared by every subscription it is matched against; the past state
    of the entity (its history) is read once, and only when a notification needs it."""

    session: Session
    change: EntityChange
    kind: str  # created | updated | deleted
    changed: set[str]  # attribute IRIs created or updated
    removed: set[str]  # attributes gone
    dropped: dict[str, set[str]]  # attribute -> the datasetIds deleted from it (it keeps other instances)
    reasons: dict[str, set[str]]  # trigger -> the attributes it concerns
    _previous: dict[str, dict[str, dict[str, Any]]] | None = None
    _times: dict[tuple[str, str], Times] | None = None
    _lifetime: Times | None = None

    @classmethod
    def of(cls, session: Session, change: EntityChange, kind: str, core: ActiveContext) -> _Facts:
        changed = {core.expand(n) for n in change.attributes}
        removed = {core.expand(n) for n in change.deleted_attributes}
        dropped = {core.expand(n): set(dss) for n, dss in change.deleted_instances.items()}
        deleted = removed | set(dropped)
        if kind == "created":
            reasons = {"entityCreated": changed, "attributeCreated": changed}
        elif kind == "deleted":
            reasons = {"entityDeleted": removed, "attributeDeleted": removed}
        else:
            ops = _ops_at(session, change, changed)
            reasons = {
                "entityUpdated": changed | deleted,
                "attributeCreated": {n for n in changed if ops.get(n) == "create"},
                "attributeUpdated": {n for n in changed if ops.get(n, "update") == "update"},
                "attributeDeleted": deleted,
            }
        return cls(session, change, kind, changed, removed, dropped, reasons)

    @property
    def at(self) -> str:
        return format_datetime(self.change.at)

    def previous(self) -> dict[str, dict[str, dict[str, Any]]]:
        """name -> datasetId -> the instance before this change."""
        if self._previous is None:
            self._previous = _previous_docs(self.session, self.change, self.changed | self.removed | set(self.dropped))
        return self._previous

    def times(self, name: str, ds: str) -> Times | None:
        if self._times is None:
            self._times = _instance_times(self.session, self.change, self.removed | set(self.dropped))
        return self._times.get((name, ds))

    def lifetime(self) -> Times:
        if self._lifetime is None:
            self._lifetime = _lifetime(self.session, self.change)
        return self._lifetime


def _entity_from_docs(change: EntityChange, docs: dict[str, dict[str, dict[str, Any]]]) -> StoredEntity:
    entity = StoredEntity(None, change.id, list(change.type_iris), change.scope, change.at, change.at)
    for name, per_ds in docs.items():
        entity.attrs[name] = {ds: Instance(doc, change.at, change.at) for ds, doc in per_ds.items()}
    return entity


def _wanted(name: str, comp: Compiled) -> bool:
    opts = comp.opts
    if opts.pick is not None and name not in opts.pick:
        return False
    return not (opts.omit is not None and name in opts.omit)


def _previous_value(doc: dict[str, Any], member: str, ctx: ActiveContext) -> Any:
    """The value member of an earlier instance as the notification shows it (a vocab compacted)."""
    return render_doc(doc, ctx, RenderOptions()).get(member)


def _deleted_instance(comp: Compiled, ds: str, doc: dict[str, Any], facts: _Facts, name: str) -> dict[str, Any]:
    """A deleted attribute instance (§5.8.6): its value member an NGSI-LD Null (for a LanguageProperty
    ``{"@none": "urn:ngsi-ld:null"}``), with its datasetId, its previous value (showChanges) and its
    createdAt, modifiedAt and deletedAt (sysAttrs)."""
    kind = str(doc.get("type", "Property"))
    member, prev_member = _VALUE_MEMBERS.get(kind, ("value", "previousValue"))
    out: dict[str, Any] = {"type": kind, member: {"@none": NULL} if kind == "LanguageProperty" else NULL}
    if ds:
        out["datasetId"] = ds
    if comp.show_changes and member in doc:
        out[prev_member] = _previous_value(doc, member, comp.notify_ctx)
    if comp.opts.sys_attrs:
        times = facts.times(name, ds)
        if times is not None:
            out["createdAt"] = format_datetime(times[0])
            out["modifiedAt"] = format_datetime(times[1])
        out["deletedAt"] = facts.at
    return out


def _null_attr(comp: Compiled, name: str, facts: _Facts) -> Any:
    """A deleted attribute: ``urn:ngsi-ld:null``, or (normalized, concise) its default instance, else
    its first, as a deleted instance."""
    if comp.opts.fmt == "keyValues":
        return NULL
    prev = facts.previous().get(name, {})
    ds = "" if "" in prev or not prev else min(prev)
    return _deleted_instance(comp, ds, prev.get(ds, {"type": "Property"}), facts, name)


def _with_dropped(comp: Compiled, name: str, state: StoredEntity, dss: set[str], facts: _Facts) -> Any:
    """An attribute that lost some of its instances: the ones left and the deleted ones as NGSI-LD Nulls
    (with their datasetId, §5.8.6); in keyValues a ``dataset`` map (§4.5.4)."""
    ctx = comp.notify_ctx
    kept = {ds: inst for ds, inst in state.attrs[name].items() if comp.datasets is None or ds in comp.datasets}
    prev = facts.previous().get(name, {})
    kind = next((inst.doc.get("type", "Property") for inst in kept.values()), "Property")
    if comp.opts.fmt == "keyValues":
        dataset = {(ds or "@none"): render_doc(inst.doc, ctx, comp.opts, inst) for ds, inst in sorted(kept.items())}
        return {"dataset": {**dataset, **{(ds or "@none"): NULL for ds in sorted(dss)}}}
    items = [render_doc(inst.doc, ctx, comp.opts, inst) for _, inst in sorted(kept.items())]
    items += [_deleted_instance(comp, ds, prev.get(ds, {"type": kind}), facts, name) for ds in sorted(dss)]
    return items[0] if len(items) == 1 else items


def _with_previous(rendered: Any, prev: dict[str, dict[str, Any]], comp: Compiled) -> Any:
    """Add previousValue (previousObject, ...) to a rendered attribute (normalized or concise)."""
    items = rendered if isinstance(rendered, list) else [rendered]
    out = []
    for item in items:
        ds = item.get("datasetId", "") if isinstance(item, dict) else ""
        doc = prev.get(ds)
        if doc is None:
            out.append(item)
            continue
        kind = str(doc.get("type", "Property"))
        member, prev_member = _VALUE_MEMBERS.get(kind, ("value", "previousValue"))
        if member not in doc:
            out.append(item)
            continue
        if not isinstance(item, dict):
            item = {"value": item}
        out.append({**item, prev_member: _previous_value(doc, member, comp.notify_ctx)})
    return out if isinstance(rendered, list) else out[0]


def _only_datasets(entity: StoredEntity, datasets: set[str] | None) -> StoredEntity:
    """The entity with only the attribute instances of the subscription's datasetIds (§5.2.12)."""
    if datasets is None:
        return entity
    kept = replace(entity, attrs={})
    for name, per_ds in entity.attrs.items():
        chosen = {ds: inst for ds, inst in per_ds.items() if ds in datasets}
        if chosen:
            kept.attrs[name] = chosen
    return kept


def _render_deleted(comp: Compiled, reason: str, facts: _Facts) -> dict[str, Any]:
    """A deleted entity (§5.8.6): id, type and deletedAt (with sysAttrs createdAt and modifiedAt); its
    attributes as NGSI-LD Nulls with showChanges (with their previous values), or, for attributeDeleted,
    the watched ones."""
    ctx = comp.notify_ctx
    change = facts.change
    types = [ctx.compact(t) for t in change.type_iris]
    out: dict[str, Any] = {"id": change.id, "type": types[0] if len(types) == 1 else types}
    if comp.opts.sys_attrs:
        created, modified = facts.lifetime()
        out["createdAt"] = format_datetime(created)
        out["modifiedAt"] = format_datetime(modified)
    out["deletedAt"] = facts.at
    if reason == "attributeDeleted" or comp.show_changes:
        shown = facts.removed
        if reason == "attributeDeleted" and not comp.show_changes and comp.watched is not None:
            shown = shown & comp.watched
        previous = facts.previous()
        for name in sorted(shown):
            if _wanted(name, comp) and name in previous:
                out[ctx.compact(name)] = _null_attr(comp, name, facts)
    return out


def _render(
    comp: Compiled, reason: str, state: StoredEntity, facts: _Facts, base: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The entity of a notification; ``base`` is the entity already rendered with its Linked Entities."""
    if facts.kind == "deleted":
        return _render_deleted(comp, reason, facts)
    ctx = comp.notify_ctx
    out = base if base is not None else render_entity(_only_datasets(state, comp.datasets), ctx, comp.opts)
    if comp.show_changes and comp.opts.fmt != "keyValues":
        for name in facts.changed:
            short = ctx.compact(name)
            if short in out and name in facts.previous():
                out[short] = _with_previous(out[short], facts.previous()[name], comp)
    if reason in ("attributeDeleted", "entityUpdated"):
        for name in sorted(facts.removed):
            if _wanted(name, comp) and name not in state.attrs:
                out[ctx.compact(name)] = _null_attr(comp, name, facts)
        for name, dss in sorted(facts.dropped.items()):
            dss = {ds for ds in dss if comp.datasets is None or ds in comp.datasets}
            if dss and _wanted(name, comp) and name in state.attrs:
                out[ctx.compact(name)] = _with_dropped(comp, name, state, dss, facts)
    return out


def _joined(session: Session, tenant: str, comp: Compiled, entities: list[StoredEntity]) -> list[dict[str, Any]]:
    """The notified entities rendered, with their Linked Entities when the subscription asks (§4.5.23):
    inline in their Relationships, or (flat) after them. With keyValues and sysAttrs an entity keeps its
    createdAt and modifiedAt (NotificationParams sysAttrs, §5.2.14)."""
    shown = [_only_datasets(e, comp.datasets) for e in entities]
    items = linked.render_joined(session, tenant, shown, comp.notify_ctx, comp.opts, comp.join, None)
    if comp.opts.sys_attrs and comp.opts.fmt == "keyValues":
        for entity, body in items:
            body["createdAt"] = format_datetime(entity.created_at)
            body["modifiedAt"] = format_datetime(entity.modified_at)
    return [body for _, body in items]


def _linked_resolver(session: Session, change: EntityChange, q: QNode, state: StoredEntity) -> Resolver | None:
    """The Linked Entities a ``rel{attr}`` q of a subscription reads (§4.9), from the entity's tenant."""
    targets = linked.linked_targets(session, change.tenant, q, None)
    if targets is None:
        return None
    targets.prefetch([state])
    return targets.get


def _as_feature(entity: dict[str, Any]) -> dict[str, Any]:
    props = {k: v for k, v in entity.items() if k != "id"}
    loc = entity.get("location")
    geometry = loc.get("value") if isinstance(loc, dict) and "type" in loc and "value" in loc else loc
    return {
        "id": entity.get("id"),
        "type": "Feature",
        "geometry": geometry if isinstance(geometry, dict) else None,
        "properties": props,
    }


def _notification_body(
    row: NgsiSubscription, comp: Compiled, data: list[dict[str, Any]], reason: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}",
        "type": "Notification",
        "subscriptionId": row.sub_id,
    }
    if comp.accept == GEOJSON:
        body["data"] = {"type": "FeatureCollection", "features": [_as_feature(e) for e in data]}
    else:
        body["data"] = data
    if reason is not None:
        body["triggerReason"] = reason
    return body


# --------------------------------------------------------------------------- periodic


def periodic_job(matcher: Matcher, settings: NotifySettings) -> Any:
    """The job that serves subscriptions with a ``timeInterval`` (and wakes the delivery)."""

    def run(db: Database) -> None:
        now = utcnow()
        queued = False
        with db.session() as session:
            rows = list(
                session.scalars(
                    select(NgsiSubscription).where(
                        NgsiSubscription.time_interval.is_not(None),
                        NgsiSubscription.is_active.is_(True),
                        NgsiSubscription.next_run_at <= now,
                    )
                )
            )
            for row in rows:
                if subscription_status(row, now) != "active" or row.time_interval is None:
                    continue
                row.next_run_at = now + timedelta(seconds=row.time_interval)
                try:
                    comp = matcher.compiled(row)
                    entities = _matching_entities(session, row.tenant, comp, settings.periodic_max_entities)
                except NgsiError as exc:
                    log.warning("periodic subscription %s skipped: %s", row.sub_id, exc.detail)
                    continue
                if not entities:
                    continue
                data = _joined(session, row.tenant, comp, entities)
                queue(session, row, _notification_body(row, comp, data, None), now)
                queued = True
        if queued or matcher.notifier.pending():
            matcher.notifier.wake()

    return run


def _matching_entities(session: Session, tenant: str, comp: Compiled, limit: int) -> list[StoredEntity]:
    found: dict[str, StoredEntity] = {}
    for sel in comp.selectors:
        query = EntityQuery(
            ids=[sel.id] if sel.id else None,
            id_pattern=sel.pattern,
            types=sel.types,
            q=comp.q,
            geo=comp.geo,
            scope=comp.scope,
        )
        entities, _ = run_query(session, tenant, query, comp.ctx, limit=limit, offset=0, count=False)
        for e in entities:
            found.setdefault(e.id, e)
    return list(found.values())[:limit]


def sweep_job(notifier: Notifier) -> Any:
    """The job that restarts delivery of whatever is pending (after a restart, retries)."""

    def run(_db: Database) -> None:
        if notifier.pending():
            notifier.wake()

    return run


__all__ = ["CONSUMER", "Matcher", "build_subscription_router", "periodic_job", "sweep_job"]
