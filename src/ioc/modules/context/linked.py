"""Linked Entity Retrieval (ETSI GS CIM 009 v1.8 §4.5.23) and Linked Entity ``q`` (§4.9).

``join=inline`` puts each Linked Entity, rendered like the entity that links to it, in the
``entity`` member of the Relationship (``entityList`` of a ListRelationship; in keyValues the
Linked Entity takes the place of its id); ``join=flat`` appends the Linked Entities to the
response array, each once. ``joinLevel`` (default 1) is how many hops are followed; ``pick`` and
``omit`` project Linked Entities with braces (``locatedAt{id,name}``, §4.21). The targets are
loaded one query per level, from the requester's tenant, and only where the requester may read
their type. A Linked Entity is never inlined inside itself (A → B → A stops at B), and
``containedBy`` names entities that are not retrieved at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.orm import Session

from .entity import check_name
from .errors import NgsiError, bad_request
from .ld import ActiveContext, is_uri
from .query import QNode, QPath, doc_object_ids, has_links, object_ids
from .render import RenderOptions, render_doc, render_entity
from .store import StoredEntity, load_entities

#: A pick/omit tree: member name (IRI, or id/type/scope) -> the projection of its Linked Entity.
Projection = dict[str, "Projection | None"]

JOINS = ("flat", "inline", "@none")
#: Most Linked Entities one response holds (each inlined copy counts).
MAX_LINKED = 10_000
#: Deepest joinLevel accepted.
MAX_JOIN_LEVEL = 100
_CORE_MEMBERS = ("id", "type", "scope")
#: The or-operators between the terms of a projection (§4.21), and every character that ends a name.
_OR_OPS = ",|"
_PROJECTION_MARKS = _OR_OPS + "{}"
_PROJECTION_NAME = re.compile(r"[^,|{}]+")


@dataclass(frozen=True)
class Join:
    """The Linked Entity retrieval a request asks for (§4.5.23)."""

    mode: str  # "flat" | "inline"
    level: int = 1
    contained_by: frozenset[str] = frozenset()
    pick: Projection | None = None
    omit: Projection | None = None


# --------------------------------------------------------------------------- parameters


def parse_projection(text: str, ctx: ActiveContext, param: str) -> Projection:
    """A ``pick``/``omit`` value (§4.21): ``name[{...}]`` terms separated by ``,`` or ``|`` (both the
    or-operator); 400 BadRequestData when malformed or nested past ``MAX_JOIN_LEVEL`` hops."""
    pos = 0

    def members(depth: int) -> Projection:
        nonlocal pos
        if depth > MAX_JOIN_LEVEL:
            raise bad_request(f"{param}: nested deeper than the {MAX_JOIN_LEVEL} hops joinLevel allows.")
        out: Projection = {}
        while True:
            start = pos
            while pos < len(text) and text[pos] not in _PROJECTION_MARKS:
                pos += 1
            name = text[start:pos].strip()
            if not name:
                raise bad_request(f"{param}: a member name is missing at position {start} of {text!r}.")
            check_name(name, f"{param} member")
            sub: Projection | None = None
            if pos < len(text) and text[pos] == "{":
                pos += 1
                sub = members(depth + 1)
                if pos >= len(text) or text[pos] != "}":
                    raise bad_request(f"{param}: unclosed brace in {text!r}.")
                pos += 1
            out[name if name in _CORE_MEMBERS else ctx.expand(name)] = sub
            if pos < len(text) and text[pos] in _OR_OPS:
                pos += 1
                continue
            return out

    tree = members(0)
    if pos != len(text):
        raise bad_request(f"{param}: unexpected {text[pos]!r} at position {pos} of {text!r}.")
    return tree


def rename_projection(text: str, rename: Callable[[str], str]) -> str:
    """A valid projection with every member name but ``id``, ``type`` and ``scope`` passed through
    ``rename`` (expand or compact), its separators and braces as written."""

    def one(match: re.Match[str]) -> str:
        name = match.group().strip()
        return name if name in _CORE_MEMBERS else rename(name)

    return _PROJECTION_NAME.sub(one, text)


def projection_depth(tree: Projection | None) -> int:
    """How many Linked Entity hops a projection takes: one per level of braces (§4.21)."""
    if not tree:
        return 0
    return max((1 + projection_depth(sub) for sub in tree.values() if sub is not None), default=0)


def require_join(join: Join | None, hops: int, what: str) -> None:
    """§5.7.2.4: a ``pick``/``omit``/``q`` reaching ``hops`` Linked Entities deep needs a join of at
    least that ``joinLevel`` (itself at most ``MAX_JOIN_LEVEL``); 400 BadRequestData otherwise."""
    if hops == 0:
        return
    if join is None:
        raise bad_request(f"{what} reads Linked Entities ({{...}}): it needs join=flat or join=inline.")
    if hops > join.level:
        raise bad_request(f"{what} goes {hops} Linked Entity hops deep, beyond joinLevel={join.level}.")


def projection_param(values: list[str], ctx: ActiveContext, param: str, join: str | None) -> Projection | None:
    """The ``pick`` or ``omit`` query parameter; braces need ``join=flat|inline`` (§4.21)."""
    if not values:
        return None
    text = ",".join(values)
    tree = parse_projection(text, ctx, param)
    if any(sub is not None for sub in tree.values()) and join not in ("flat", "inline"):
        raise bad_request(f"Projecting Linked Entity attributes ({param}=...{{...}}) needs join=flat or join=inline.")
    return tree


def top_names(tree: Projection, *, omit: bool) -> set[str]:
    """The members a projection keeps (pick) or drops (omit) at its own level: an omitted member
    with braces stays, only its Linked Entity is projected."""
    return {name for name, sub in tree.items() if not (omit and sub is not None)}


def parse_join(
    join: Any, level: Any, contained_by: list[str], pick: Projection | None, omit: Projection | None
) -> Join | None:
    """``join``, ``joinLevel`` and ``containedBy`` (§4.5.23; as members of a Query, §5.2.23): None for no join."""
    if join is not None and join not in JOINS:
        raise bad_request(f"join must be flat, inline or @none, got {join!r}.")
    depth = 1
    if level is not None:
        if isinstance(level, str) and re.fullmatch(r"[0-9]{1,6}", level):
            depth = int(level)
        elif isinstance(level, int) and not isinstance(level, bool):
            depth = level
        else:
            raise bad_request(f"joinLevel must be a positive integer, got {level!r}.")
        if not 1 <= depth <= MAX_JOIN_LEVEL:
            raise bad_request(f"joinLevel must be between 1 and {MAX_JOIN_LEVEL}.")
    for eid in contained_by:
        if not is_uri(eid):
            raise bad_request(f"containedBy holds entity ids (URIs), got {eid!r}.")
    if join in (None, "@none"):
        return None
    found = Join(join, depth, frozenset(contained_by), pick, omit)
    require_join(found, projection_depth(pick), "pick")
    require_join(found, projection_depth(omit), "omit")
    return found


# --------------------------------------------------------------------------- the link graph


@dataclass
class _Node:
    """An entity in the answer, how it is rendered, and the Linked Entities found for it."""

    entity: StoredEntity
    opts: RenderOptions
    pick: Projection | None
    omit: Projection | None
    path: frozenset[str]  # ids from the root to here (never inlined again below)
    links: dict[tuple[str, str], dict[str, _Node]] = field(default_factory=dict)  # (attr, datasetId) -> id -> node


def _kept(name: str, opts: RenderOptions) -> bool:
    return (opts.pick is None or name in opts.pick) and (opts.omit is None or name not in opts.omit)


def _relationships(node: _Node) -> Iterator[tuple[str, str, str]]:
    """(attribute, datasetId, target id) of every Relationship the node shows, by attribute and
    datasetId (flat answers list Linked Entities in this order, the same on every database)."""
    for name, per_ds in sorted(node.entity.attrs.items()):
        if not _kept(name, node.opts):
            continue
        for ds, inst in sorted(per_ds.items()):
            for target in doc_object_ids(inst.doc):
                yield name, ds, target


def _child(node: _Node, name: str, target: StoredEntity) -> _Node:
    """The node of a Linked Entity reached through ``name``: projected by the braces after ``name``."""
    pick = node.pick.get(name) if node.pick is not None else None
    omit = node.omit.get(name) if node.omit is not None else None
    opts = replace(
        node.opts,
        pick=set(pick) if pick is not None else None,
        omit=top_names(omit, omit=True) if omit is not None else None,
    )
    return _Node(target, opts, pick, omit, node.path | {target.id})


class _Loader:
    """Linked Entities by id, loaded in bulk from one tenant and kept for the request."""

    def __init__(self, session: Session, tenant: str, readable: set[str] | None) -> None:
        self.session = session
        self.tenant = tenant
        self.readable = readable
        self.found: dict[str, StoredEntity | None] = {}

    def load(self, ids: set[str]) -> None:
        missing = sorted(i for i in ids if i not in self.found)
        if not missing:
            return
        loaded = load_entities(self.session, self.tenant, missing)
        for eid in missing:
            entity = loaded.get(eid)
            visible = entity is not None and (self.readable is None or bool(set(entity.types) & self.readable))
            self.found[eid] = entity if visible else None

    def get(self, eid: str) -> StoredEntity | None:
        return self.found.get(eid)


def _build(
    session: Session,
    tenant: str,
    entities: list[StoredEntity],
    opts: RenderOptions,
    join: Join,
    readable: set[str] | None,
) -> list[_Node]:
    """The roots with their Linked Entities, ``join.level`` hops deep, one query per hop.

    flat: every entity once in the whole answer; inline: per Relationship, except the entities
    already on the way from the root (cycles end there)."""
    loader = _Loader(session, tenant, readable)
    roots = [_Node(e, opts, join.pick, join.omit, frozenset({e.id})) for e in entities]
    seen = {e.id for e in entities} | join.contained_by  # flat: what the answer already holds
    frontier = roots
    count = 0
    for _ in range(join.level):
        if not frontier:
            break
        loader.load({target for node in frontier for _, _, target in _relationships(node)})
        following: list[_Node] = []
        for node in frontier:
            for name, ds, target_id in _relationships(node):
                target = loader.get(target_id)
                if target is None or target_id in node.path or target_id in join.contained_by:
                    continue
                if join.mode == "flat":
                    if target_id in seen:
                        continue
                    seen.add(target_id)
                child = _child(node, name, target)
                node.links.setdefault((name, ds), {})[target_id] = child
                following.append(child)
                count += 1
                if count > MAX_LINKED:
                    raise NgsiError("TooManyResults", f"More than {MAX_LINKED} Linked Entities; lower joinLevel.")
        frontier = following
    return roots


# --------------------------------------------------------------------------- rendering


def _attach(doc: dict[str, Any], rendered: Any, found: dict[str, Any], fmt: str) -> Any:
    """A Relationship instance with its Linked Entities (§4.5.23.3): ``entity`` (``entityList`` for a
    ListRelationship); in keyValues the Linked Entity stands in place of its id."""
    ids = doc_object_ids(doc)
    if fmt == "keyValues":
        values = [found.get(i, i) for i in ids]
        return values if doc.get("type") == "ListRelationship" or isinstance(doc.get("object"), list) else values[0]
    entities = [found[i] for i in ids if i in found]
    if doc.get("type") == "ListRelationship":
        rendered["entityList"] = entities
    else:
        rendered["entity"] = entities if isinstance(doc.get("object"), list) else entities[0]
    return rendered


def _render_inline(node: _Node, ctx: ActiveContext) -> dict[str, Any]:
    body = render_entity(node.entity, ctx, node.opts)
    names = {name for name, _ in node.links}
    for name in names:
        per_ds = node.entity.attrs[name]
        values: dict[str, Any] = {}
        for ds, inst in sorted(per_ds.items()):
            rendered = render_doc(inst.doc, ctx, node.opts, inst)
            children = node.links.get((name, ds))
            if children:
                found = {eid: _render_inline(child, ctx) for eid, child in children.items()}
                rendered = _attach(inst.doc, rendered, found, node.opts.fmt)
            values[ds] = rendered
        if node.opts.fmt == "keyValues" and len(values) > 1:
            body[ctx.compact(name)] = {"dataset": {(ds or "@none"): v for ds, v in values.items()}}
        else:
            body[ctx.compact(name)] = next(iter(values.values())) if len(values) == 1 else list(values.values())
    return body


def _flat(roots: list[_Node]) -> Iterator[_Node]:
    """The roots, then their Linked Entities level by level."""
    level = roots
    while level:
        yield from level
        level = [child for node in level for children in node.links.values() for child in children.values()]


def render_joined(
    session: Session,
    tenant: str,
    entities: list[StoredEntity],
    ctx: ActiveContext,
    opts: RenderOptions,
    join: Join | None,
    readable: set[str] | None,
) -> list[tuple[StoredEntity, dict[str, Any]]]:
    """The entities of an answer and their bodies: with ``join=flat`` the Linked Entities follow
    as further items, with ``join=inline`` they sit inside their Relationships (§4.5.23)."""
    if join is None:
        return [(e, render_entity(e, ctx, opts)) for e in entities]
    roots = _build(session, tenant, entities, opts, join, readable)
    if join.mode == "inline":
        return [(node.entity, _render_inline(node, ctx)) for node in roots]
    return [(node.entity, render_entity(node.entity, ctx, node.opts)) for node in _flat(roots)]


# --------------------------------------------------------------------------- Linked Entity q


class LinkedTargets:
    """The Linked Entities that the ``rel{attr}`` terms of a q read (§4.9), loaded one query per
    level for each batch of candidates and kept for the whole query."""

    def __init__(self, session: Session, tenant: str, q: QNode, readable: set[str] | None) -> None:
        self.loader = _Loader(session, tenant, readable)
        self.paths = list(_linked_paths(q))

    def prefetch(self, entities: list[StoredEntity]) -> None:
        frontier = [(path, entities) for path in self.paths]
        while frontier:
            self.loader.load({t for path, sources in frontier for e in sources for t in object_ids(e, path.attr)})
            following: list[tuple[QPath, list[StoredEntity]]] = []
            for path, sources in frontier:
                assert path.link is not None
                if path.link.link is None:
                    continue
                targets = [self.loader.get(t) for e in sources for t in object_ids(e, path.attr)]
                following.append((path.link, [t for t in targets if t is not None]))
            frontier = following

    def get(self, eid: str) -> StoredEntity | None:
        return self.loader.get(eid)


def _linked_paths(node: QNode) -> Iterator[QPath]:
    if node.op != "term":
        for item in node.items:
            yield from _linked_paths(item)
    elif node.path is not None and node.path.link is not None:
        yield node.path


def link_depth(node: QNode) -> int:
    """How many Linked Entity hops the deepest ``rel{...}`` term of a q takes (0 for none)."""
    deepest = 0
    for path in _linked_paths(node):
        depth = 0
        step: QPath | None = path
        while step is not None and step.link is not None:
            depth += 1
            step = step.link
        deepest = max(deepest, depth)
    return deepest


def linked_targets(session: Session, tenant: str, q: QNode | None, readable: set[str] | None) -> LinkedTargets | None:
    """A loader of the q's Linked Entities, or None when the q reads none."""
    if q is None or not has_links(q):
        return None
    return LinkedTargets(session, tenant, q, readable)


def join_param(params: Any, ctx: ActiveContext, query: dict[str, Any] | None = None) -> Join | None:
    """The Linked Entity retrieval of a request: ``join`` and ``joinLevel`` from the query parameters,
    or from the Query object of ``POST /entityOperations/query`` (§5.2.23) when given; ``containedBy``
    and the braces of ``pick``/``omit`` from the query parameters."""
    if query is None and not params:
        return None  # the most frequent read names nothing to join
    source = query if query is not None else params
    join = source.get("join")
    contained = [i.strip() for raw in params.getlist("containedBy") for i in raw.split(",") if i.strip()]
    return parse_join(
        join,
        source.get("joinLevel"),
        contained,
        projection_param(params.getlist("pick"), ctx, "pick", join),
        projection_param(params.getlist("omit"), ctx, "omit", join),
    )
