"""The Entity Scope in the temporal API (ETSI GS CIM 009 v1.8 §4.18, §4.5.6, §5.7.4.4, annex C.5.16).

Every change of an entity's scope is a row of ``ngsild_attribute_history`` under the name of the
core property ``scope``: its instances are Properties whose value is the scope as given, and a
removal is a deletion row. "A given Scope is considered valid from the time it has been set until
the time it has been explicitly removed by an update or delete operation" (§4.18), so the rows of
an entity, in time order, cut its time line into intervals, each with the scope then valid (none
after a deletion).

A temporal query with ``scopeQ`` selects the entities having a matching scope valid at some time
of the query's time range, and of those only the attribute instances whose time falls where a
matching scope was valid. An entity without any scope history (written before scope changes were
recorded) is selected by its current scope as in a query of current state, all of its instances
kept. The time axis is the query's ``timeproperty``: observedAt (an instance without one counts at
its recording time), else the recording time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from .entity import SCOPE
from .models import NgsiAttributeHistory as H
from .models import NgsiEntity
from .scope import ScopeExpr, matches, scope_sql
from .store import StoredEntity, one_of
from .temporal_query import Group, Row, TemporalQuery, raw_columns

#: A time range [start, end), ``end`` None for one still open.
Window = tuple[datetime, datetime | None]
_UNKNOWN = object()


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@dataclass
class ScopeValidity:
    """scopeQ of a temporal query: the SQL prefilter, the exact check per entity (with the history of
    its scope), and for each selected entity the time ranges its attribute instances are read from."""

    expr: ScopeExpr
    tq: TemporalQuery
    tenant: str
    #: entity id -> the ranges of the query's time range in which a matching scope was valid; None
    #: for an entity without scope history (its current scope decides, every instance is kept)
    windows: dict[str, list[Window] | None] = field(default_factory=dict)

    def sql(self, dialect: str) -> ColumnElement[bool]:
        """Entities that may match: a current scope matching the query, or any history of the scope."""
        current, _ = scope_sql(self.expr, dialect)
        recorded = exists().where(H.tenant == self.tenant, H.entity_id == NgsiEntity.entity_id, H.name == SCOPE)
        return or_(current, recorded)

    def prefetch(self, session: Session, entities: Iterable[StoredEntity]) -> None:
        """Read the scope history of these entities (one statement per chunk) and work out their ranges."""
        ids = [e.id for e in entities if e.id not in self.windows]
        dialect = session.get_bind().dialect.name
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows: dict[str, list[tuple[datetime, int, str, Any]]] = {eid: [] for eid in chunk}
            stmt = select(H.entity_id, H.op, H.doc, H.observed_at, H.recorded_at, H.id).where(
                H.tenant == self.tenant, H.name == SCOPE, one_of(H.entity_id, chunk, dialect)
            )
            for eid, op, doc, observed, recorded, pk in session.execute(stmt):
                t = observed if self.tq.timeproperty == "observedAt" and observed is not None else recorded
                value = doc.get("value") if op != "delete" and isinstance(doc, dict) else None
                rows[eid].append((_aware(t), pk, op, value))
            for eid, history in rows.items():
                self.windows[eid] = self._windows(sorted(history, key=lambda r: (r[0], r[1]))) if history else None

    def _windows(self, history: list[tuple[datetime, int, str, Any]]) -> list[Window]:
        """The parts of the query's time range in which a scope matching the query was valid."""
        lo, hi = self._range()
        out: list[Window] = []
        for i, (start, _pk, op, value) in enumerate(history):
            end = history[i + 1][0] if i + 1 < len(history) else None
            if op == "delete" or value is None or not matches(self.expr, value):
                continue
            if lo is not None and start < lo:
                start = lo
            if hi is not None and (end is None or end > hi):
                end = hi
            if end is not None and end <= start:
                continue  # no time of the range (or a scope replaced at the very time it was set)
            if out and out[-1][1] == start:  # the same scope set again, or another matching one
                start = out.pop()[0]
            out.append((start, end))
        return out

    def _range(self) -> tuple[datetime | None, datetime | None]:
        tq = self.tq
        if tq.timerel == "before":
            return None, tq.time_at
        if tq.timerel == "after":
            return tq.time_at, None
        if tq.timerel == "between":
            return tq.time_at, tq.end_time_at
        return None, None

    def holds(self, entity: StoredEntity) -> bool:
        """The exact check of an entity (after :meth:`prefetch`)."""
        windows = self.windows.get(entity.id, _UNKNOWN)
        if windows is _UNKNOWN or windows is None:
            return matches(self.expr, entity.scope)
        return bool(windows)


def window_condition(windows: list[Window], timeproperty: str) -> ColumnElement[bool]:
    """History rows whose time falls in one of the ranges (on the axis of ``timeproperty``)."""
    t: Any = func.coalesce(H.observed_at, H.recorded_at) if timeproperty == "observedAt" else H.recorded_at
    parts = [and_(t >= start, t < end) if end is not None else t >= start for start, end in windows]
    return or_(*parts) if parts else H.id.is_(None)


def carry_scope(session: Session, tenant: str, g: Group, tq: TemporalQuery) -> None:
    """The scope valid when the time range starts was set before it: it is still part of the entity
    in that range (C.5.16), so its instance comes first (unless a deletion ended it, or lastN is met)."""
    if g.name != SCOPE or tq.deleted or tq.timerel not in ("after", "between") or tq.time_at is None:
        return
    if tq.last_n is not None and len(g.rows) >= tq.last_n:
        return
    if tq.datasets is not None and "" not in tq.datasets:
        return
    col = tq.column
    doc, t, rec = raw_columns(session, col)
    row = (
        session.connection()
        .execute(
            select(H.op, H.instance_id, H.dataset_id, doc, H.value_num, t, rec)
            .where(H.tenant == tenant, H.entity_id == g.entity_id, H.name == SCOPE, col < tq.time_at)
            .order_by(col.desc(), H.id.desc())
            .limit(1)
        )
        .first()
    )
    if row is None or row[0] == "delete":
        return
    _op, iid, ds, doc_text, num, time_value, recorded = row
    g.rows.insert(0, Row(iid, ds, doc_text or "", num, time_value, recorded))
    g.kinds.setdefault(ds, "Property")
    g.kind = "Property"
