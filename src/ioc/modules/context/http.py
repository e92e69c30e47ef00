"""HTTP plumbing of the NGSI-LD API: media types, Link headers, tenants, access, parameters."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec
from urllib.parse import quote

from fastapi import Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ioc.core.auth import SESSION_STAMP, SESSION_STARTED, SESSION_USER, Principal, optional_principal
from ioc.core.db import Reads, get_database
from ioc.core.jsoncodec import dumps_bytes, loads

from .entity import STRICT_INPUT
from .errors import NgsiError, bad_request, invalid_request
from .ld import CORE_CONTEXT_URL, ActiveContext, ContextLoader, context_links, is_uri, link_header
from .settings import NgsiLdSettings

if TYPE_CHECKING:
    from .writes import EntityWrites

log = logging.getLogger("ioc.context")

JSON = "application/json"
JSONLD = "application/ld+json"
GEOJSON = "application/geo+json"
MERGE_PATCH = "application/merge-patch+json"
_TENANT = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")


#: Where the NGSI-LD API is served.
PREFIX = "/ngsi-ld/v1"


async def raw_body(request: Request) -> bytes:
    return await request.body()


Body = Annotated[bytes, Depends(raw_body)]

_P = ParamSpec("_P")


async def read_by_key(request: Request, read: Callable[_P, Response], *args: _P.args, **kwargs: _P.kwargs) -> Response:
    """Answer a read of one resource by its key (``read(*args, **kwargs)``), on the event loop when
    nothing in it can wait (``reads_on_loop``) and the database is a SQLite file (a by-key read is
    a few hundred microseconds of CPU; readers never wait for writers in WAL mode), in the thread
    pool otherwise. Handing the read to a worker thread, and the answer back, costs more than the
    read itself: the two threads' turns at the interpreter lock, about a fifth of a GET's CPU
    under concurrent clients. While a server serves, a route reads on the loop's own connections
    instead (``loop_reads``); this is the way when it does not (an app without its lifespan).
    """
    if reads_on_loop(request) and get_database(request).dialect == "sqlite":
        return read(*args, **kwargs)
    return await run_in_threadpool(read, *args, **kwargs)


def reads_on_loop(request: Request) -> bool:
    """Whether nothing of a read by key can wait but the database: the request's @context is the
    built-in core one (no ``Link`` header: no context to fetch), no Linked Entity is joined (no
    chain of reads) and no entity map is asked for (which would be a write)."""
    return (
        "link" not in request.headers
        and "join" not in request.query_params
        and "entityMap" not in request.query_params  # an entity map is written (§5.14)
        and "ngsild-entitymap" not in request.headers
    )


def writes_on_loop(request: Request) -> bool:
    """Whether a write's checks and parsing may run on the event loop (nothing in them can wait):
    its @context is the built-in core one, no ``Link`` header naming another, and its body is
    plain JSON (a JSON-LD body's @context may name contexts to fetch)."""
    return "link" not in request.headers and not request.headers.get("content-type", "").lower().startswith(JSONLD)


def loop_reads(request: Request) -> Reads | None:
    """The server's reads on the event loop (while serving) when the request's read by key may be
    done there (``reads_on_loop``); None otherwise."""
    reads = get_database(request).loop_reads
    return reads if reads is not None and reads_on_loop(request) else None


def _has_credentials(request: Request) -> bool:
    """Whether ``optional_principal`` would look anything up: a bearer token or API key, or a
    browser session that names a user (without them it answers None without the database)."""
    headers = request.headers
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() in ("bearer", "apikey") and credentials.strip():
        return True
    if headers.get("x-api-key") is not None:
        return True
    if "session" not in request.scope:
        return False
    session = request.session
    return (
        isinstance(session.get(SESSION_USER), int)
        and isinstance(session.get(SESSION_STARTED), int)
        and isinstance(session.get(SESSION_STAMP), str)
    )


def _principal_in_thread(request: Request) -> Principal | None:
    with get_database(request).session() as session:
        return optional_principal(request, session)


async def ngsi_principal(request: Request) -> Principal | None:
    """``optional_principal`` for the NGSI-LD routes, the same answer at less cost: an anonymous
    request is answered on the event loop (no session, no worker thread), one with credentials
    in one trip to the thread pool (instead of three: session, principal, session close)."""
    if not _has_credentials(request):
        return None
    return await run_in_threadpool(_principal_in_thread, request)


OptionalPrincipal = Annotated[Principal | None, Depends(ngsi_principal)]


@dataclass
class Broker:
    """The module's state, shared by its routes (no globals)."""

    settings: NgsiLdSettings
    loader: ContextLoader
    writes: EntityWrites  # single-entity writes, concurrent ones committed together


def media_type(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


def tenant_of(request: Request) -> str:
    raw = request.headers.get("ngsild-tenant")
    if raw is None or raw == "":
        return ""
    if not _TENANT.match(raw):
        raise bad_request(f"Invalid NGSILD-Tenant {raw!r}.")
    return raw


def _ranges(header: str) -> list[tuple[str, str, float]]:
    """The media ranges of an Accept header: (type, subtype, weight); a malformed q keeps weight 1."""
    out: list[tuple[str, str, float]] = []
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        mt = fields[0].lower()
        if "/" not in mt:
            continue
        main, _, sub = mt.partition("/")
        q = 1.0
        for f in fields[1:]:
            name, _, val = f.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(1.0, max(0.0, float(val.strip())))
                except ValueError:
                    q = 1.0
        out.append((main, sub, q))
    return out


def negotiate(header: str | None, offered: list[str]) -> str | None:
    """The representation to answer with (RFC 9110 §12.5.1 with ETSI GS CIM 009 §6.3.4 list order).

    Each offered type takes the weight of the most specific range that matches it; weight 0 is
    "not acceptable"; among the best weights the first of ``offered`` (the spec's list order) wins.
    """
    if not header or not header.strip():
        return offered[0]
    ranges = _ranges(header)
    best: tuple[float, int, str] | None = None
    for index, media in enumerate(offered):
        main, _, sub = media.partition("/")
        weight: float | None = None
        specificity = -1
        for r_main, r_sub, q in ranges:
            if r_main == main and r_sub == sub:
                spec = 2
            elif r_main == main and r_sub == "*":
                spec = 1
            elif r_main == "*" and r_sub == "*":
                spec = 0
            else:
                continue
            if spec > specificity:
                specificity, weight = spec, q
        if weight is None or weight <= 0:
            continue
        if best is None or weight > best[0]:
            best = (weight, index, media)
    return best[2] if best is not None else None


def accept(request: Request, *, geo: bool = False) -> str:
    """The representation to answer with (406 NotAcceptable when none fits)."""
    header = request.headers.get("accept")
    offered = [JSON, JSONLD] + ([GEOJSON] if geo else [])
    chosen = negotiate(header, offered)
    if chosen is None:
        raise NgsiError("NotAcceptable", f"None of {header!r} can be produced; use one of {', '.join(offered)}.")
    return chosen


def read_json(request: Request, raw: bytes, *, patch: bool = False) -> tuple[Any, str]:
    """The JSON body and its media type (415 for other media types, 400 for bad JSON)."""
    ct = media_type(request.headers.get("content-type"))
    allowed = (JSON, JSONLD, MERGE_PATCH) if patch else (JSON, JSONLD)
    if ct not in allowed:
        raise NgsiError(
            "UnsupportedMediaType", f"Content-Type {ct or '(none)'} is not supported; use {' or '.join(allowed)}."
        )
    STRICT_INPUT.set(True)
    if not raw.strip():
        raise invalid_request("The request has no body.")
    try:
        body = loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_request(f"The body is not valid JSON: {exc}.") from exc
    return body, (JSON if ct == MERGE_PATCH else ct)


def link_context(request: Request) -> str | None:
    links = context_links(request.headers.getlist("link"))
    if len(links) > 1:
        raise bad_request("More than one JSON-LD context Link header.")
    return links[0] if links else None


def body_context(broker: Broker, request: Request, body: Any, ct: str) -> ActiveContext:
    """The @context of a request body: Link header for JSON, the body's @context for JSON-LD."""
    link = link_context(request)
    has_ctx = isinstance(body, dict) and "@context" in body
    if ct == JSONLD:
        if link is not None:
            raise bad_request("A JSON-LD body must not come with a context Link header.")
        if not has_ctx:
            raise bad_request("A JSON-LD body needs an @context member.")
        return broker.loader.active(body["@context"])
    if has_ctx:
        raise bad_request("A JSON body must not carry an @context; use application/ld+json or a Link header.")
    return broker.loader.active(link)


def item_context(broker: Broker, request: Request, item: Any, ct: str) -> ActiveContext:
    """The @context of one entity of a batch body."""
    if ct == JSONLD:
        if not isinstance(item, dict) or "@context" not in item:
            raise bad_request("Every entity of a JSON-LD batch needs an @context member.")
        return broker.loader.active(item["@context"])
    if isinstance(item, dict) and "@context" in item:
        raise bad_request("A JSON body must not carry an @context.")
    return broker.loader.active(link_context(request))


def query_context(broker: Broker, request: Request) -> ActiveContext:
    return broker.loader.active(link_context(request))


class JsonAnswer(JSONResponse):
    """A JSON answer encoded by the codec of stored documents (orjson: entities by the hundred)."""

    def render(self, content: Any) -> bytes:
        return dumps_bytes(content)


def respond(
    data: Any,
    ctx: ActiveContext,
    media: str,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    body_json: bool = False,
) -> Response:
    """A JSON, JSON-LD or GeoJSON answer with the @context where the spec puts it.

    §6.3.6: JSON answers carry the @context in a Link header; JSON-LD answers in the body;
    GeoJSON answers in the body unless the request said ``Prefer: body=json`` (``body_json``),
    in which case the Link header carries it, as for JSON.
    """
    hdrs = dict(headers or {})
    source = ctx.source if ctx.source is not None else CORE_CONTEXT_URL
    if media == JSON or (media == GEOJSON and body_json):
        url = source if isinstance(source, str) else CORE_CONTEXT_URL
        hdrs["Link"] = link_header(url)
    else:
        context_value = source
        if isinstance(data, list) and media == JSONLD:
            data = [{"@context": context_value, **item} if isinstance(item, dict) else item for item in data]
        elif isinstance(data, dict):
            data = {"@context": context_value, **data} if media == JSONLD else {**data, "@context": context_value}
    return JsonAnswer(data, status_code=status, headers=hdrs, media_type=media)


#: What a pagination link leaves unescaped in a parameter's value (ids, patterns, q paths).
_LINK_SAFE = ":/*,;.()[]!~'|@"


_NOT_REPEATED = frozenset({"offset", "entityMap", "entityMapLifetime"})


def add_page_links(response: Response, request: Request, *, limit: int, offset: int, more: bool, media: str) -> None:
    """§5.5.9: the ``prev`` and ``next`` pages of a list in the Link header, beside the @context link.

    Each link repeats the request's path, without a trailing slash (``/subscriptions/`` pages
    as ``/subscriptions``; 031_02), and parameters (in name order) with the page's ``offset``;
    ``prev`` is left out on the first page, ``next`` when nothing remains (``more``), and both
    with ``limit=0``.
    """
    if limit <= 0:
        return
    # entityMap asks for a new entity map: the next pages name the map in a header instead (§5.5.9.3)
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in _NOT_REPEATED]
    path = request.url.path.rstrip("/")

    def link(page_offset: int, rel: str) -> str:
        items = sorted([*params, ("offset", str(page_offset))], key=lambda kv: kv[0])
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe=_LINK_SAFE)}" for k, v in items)
        return f'<{path}?{query}>;rel="{rel}";type="{media}"'

    links = []
    if offset > 0:
        links.append(link(max(0, offset - limit), "prev"))
    if more:
        links.append(link(offset + limit, "next"))
    if links:
        context_link = response.headers.get("Link")
        response.headers["Link"] = ", ".join([*([context_link] if context_link else []), *links])


def prefers_json_body(request: Request) -> bool:
    """Whether the request says ``Prefer: body=json`` (§6.3.6, GeoJSON without an in-body @context)."""
    for raw in request.headers.getlist("prefer"):
        for pref in raw.split(","):
            if pref.strip().replace(" ", "").lower() == "body=json":
                return True
    return False


def options_of(request: Request) -> set[str]:
    found: set[str] = set()
    for raw in request.query_params.getlist("options"):
        found.update(o.strip() for o in raw.split(",") if o.strip())
    return found


def csv_param(request: Request, name: str) -> list[str] | None:
    values = request.query_params.getlist(name)
    if not values:
        return None
    items = [v.strip() for raw in values for v in raw.split(",")]
    if not all(items):
        raise bad_request(f"Empty item in {name}.")
    return items


def int_param(request: Request, name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"\d+", raw):
        raise bad_request(f"{name} must be a non-negative integer.")
    value = int(raw)
    if value < minimum or (maximum is not None and value > maximum):
        detail = f"{name} must be between {minimum} and {maximum}." if maximum is not None else f"{name} too small."
        raise bad_request(detail)
    return value


def bool_param(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return False
    if raw not in ("true", "false"):
        raise bad_request(f"{name} must be true or false.")
    return raw == "true"


def require_write(broker: Broker, principal: Principal | None) -> None:
    if broker.settings.anonymous_writes:
        return
    if principal is None:
        raise NgsiError(
            "Unauthorized", "Writes need an API key or a bearer token.", headers={"WWW-Authenticate": "Bearer"}
        )
    if not principal.has("context:write"):
        raise NgsiError("Forbidden", "The permission context:write is required.")


def readable_types(broker: Broker, principal: Principal | None) -> set[str] | None:
    """None when every type is readable, else the IRIs and names of the public types."""
    s = broker.settings
    if s.anonymous_writes or s.anonymous_reads or "*" in s.public_types:
        return None
    if principal is not None:
        if principal.has("context:read") or principal.has("context:write"):
            return None
        raise NgsiError("Forbidden", "The permission context:read is required.")
    core = broker.loader.core
    return {core.expand(t) for t in s.public_types}


def dataset_ids(items: list[str] | None) -> list[str] | None:
    """``datasetId`` (§4.5.5): the instances to read, ``@none`` the default one ('' as stored)."""
    if items is None:
        return None
    for item in items:
        if item != "@none" and not is_uri(item):
            raise bad_request(f"datasetId must be a URI or @none, got {item!r}.")
    return ["" if item == "@none" else item for item in items]
