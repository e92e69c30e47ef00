"""Temporal queries of NGSI-LD (ETSI GS CIM 009 v1.8 §4.11, §6.18-6.20) on the history table.

``ngsild_attribute_history`` holds one row per change of an attribute instance; every row that
is not a deletion is one instance of the attribute's temporal evolution. Reads go per
(entity, attribute, datasetId) through the (tenant, entity, attribute, time) indexes with a
``LIMIT``; aggregations are ``GROUP BY`` period buckets on the numeric column, computed by the
database (SQLite and PostgreSQL alike). Buckets of calendar length (months, years) and
attributes whose values are not all numbers are aggregated in Python from the same rows.

Time relations: ``before`` is ``t < timeAt``, ``after`` is ``t >= timeAt`` and ``between`` is
``timeAt <= t < endTimeAt``, so a client pages forward with ``after`` and the end of the last
page without losing an instance. ``timeproperty=deletedAt`` reads the deletions instead: the
rows an attribute deletion left, at the time they were recorded (§4.5.7).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Integer,
    String,
    Text,
    cast,
    distinct,
    exists,
    func,
    literal_column,
    null,
    select,
    text,
    true,
    type_coerce,
)
from sqlalchemy.orm import Session

from .entity import parse_datetime
from .errors import bad_request
from .models import NgsiAttributeHistory as H
from .models import NgsiEntity

TIMERELS = ("before", "after", "between")
TIMEPROPERTIES = ("observedAt", "createdAt", "modifiedAt", "deletedAt")
AGGR_METHODS = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")
_DURATION = re.compile(
    r"^P(?:(?P<Y>\d+)Y)?(?:(?P<M>\d+)M)?(?:(?P<W>\d+)W)?(?:(?P<D>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Duration:
    """An ISO 8601 duration: calendar months plus a fixed number of milliseconds."""

    months: int
    millis: int
    text: str

    @property
    def zero(self) -> bool:
        return self.months == 0 and self.millis == 0

    def add(self, start: datetime, times: int = 1) -> datetime:
        """``start`` plus ``times`` durations (months first, then the fixed part)."""
        out = _add_months(start, self.months * times) if self.months else start
        return out + timedelta(milliseconds=self.millis * times)


def _add_months(value: datetime, months: int) -> datetime:
    index = value.year * 12 + value.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    days = [31, 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28, 31, 30, 31, 30]
    days += [31, 31, 30, 31, 30, 31]
    return value.replace(year=year, month=month, day=min(value.day, days[month - 1]))


def parse_duration(text: str) -> Duration:
    """``P1D``, ``PT1H``, ``P1M``, ``PT15M``, ``P1W``...; 400 BadRequestData when not a duration."""
    m = _DURATION.match(text)
    if not m or text in ("P", "PT") or text.endswith("T"):
        raise bad_request(f"aggrPeriodDuration must be an ISO 8601 duration such as P1D or PT1H, got {text!r}.")
    g = {k: v for k, v in m.groupdict().items() if v is not None}
    months = int(g.get("Y", 0)) * 12 + int(g.get("M", 0))
    seconds = (
        int(g.get("W", 0)) * 604800
        + int(g.get("D", 0)) * 86400
        + int(g.get("h", 0)) * 3600
        + int(g.get("m", 0)) * 60
        + float(g.get("s", 0))
    )
    return Duration(months, round(seconds * 1000), text)


@dataclass
class TemporalQuery:
    """The temporal part of a request: time relation, time property, lastN, aggregation."""

    timerel: str | None = None
    time_at: datetime | None = None
    end_time_at: datetime | None = None
    timeproperty: str = "observedAt"
    last_n: int | None = None
    aggr_methods: list[str] = field(default_factory=list)
    aggr_period: Duration | None = None  # None or zero: the whole time range
    datasets: list[str] | None = None  # the datasetIds asked for ('' the default instance, §4.5.5)

    @property
    def column(self) -> Any:
        """The history column the time property maps to."""
        return H.observed_at if self.timeproperty == "observedAt" else H.recorded_at

    @property
    def deleted(self) -> bool:
        """Whether the deletions are read (``timeproperty=deletedAt``) rather than the instances."""
        return self.timeproperty == "deletedAt"

    def conditions(self) -> list[ColumnElement[bool]]:
        """The history rows the query selects: instances (or deletions), datasetIds, time relation."""
        col = self.column
        out = [H.op == "delete" if self.deleted else H.op != "delete"]
        if self.datasets is not None:
            out.append(H.dataset_id.in_(self.datasets))
        if self.timerel == "before":
            out.append(col < self.time_at)
        elif self.timerel == "after":
            out.append(col >= self.time_at)
        elif self.timerel == "between":
            out += [col >= self.time_at, col < self.end_time_at]
        return out

    def selects(self, tenant: str, names: list[str] | None) -> ColumnElement[bool]:
        """Entities with at least one instance (of ``names``, if given) the query selects: the
        others are not part of the answer to a temporal query (§5.7.4.4)."""
        where = [H.tenant == tenant, H.entity_id == NgsiEntity.entity_id, *self.conditions()]
        if names is not None:
            where.append(H.name.in_(names))
        return exists().where(*where)


def parse_temporal(params: Mapping[str, str], *, aggregated: bool) -> TemporalQuery:
    """The temporal parameters (``timerel``, ``timeAt``, ``endTimeAt``, ``timeproperty``, ``lastN``,
    ``aggrMethods``, ``aggrPeriodDuration``); 400 BadRequestData for anything invalid."""
    q = TemporalQuery()
    timerel = params.get("timerel")
    time_at = params.get("timeAt", params.get("time"))
    end_at = params.get("endTimeAt", params.get("endTime"))
    if timerel is not None:
        if timerel not in TIMERELS:
            raise bad_request(f"timerel must be before, after or between, got {timerel!r}.")
        if time_at is None:
            raise bad_request("timerel needs timeAt.")
        q.timerel = timerel
        q.time_at = _time_param(time_at, "timeAt")
        if timerel == "between":
            if end_at is None:
                raise bad_request("timerel=between needs endTimeAt.")
            q.end_time_at = _time_param(end_at, "endTimeAt")
            if q.end_time_at <= q.time_at:
                raise bad_request("endTimeAt must be later than timeAt.")
        elif end_at is not None:
            raise bad_request("endTimeAt only goes with timerel=between.")
    elif time_at is not None or end_at is not None:
        raise bad_request("timeAt and endTimeAt need timerel.")
    prop = params.get("timeproperty")
    if prop is not None:
        if prop not in TIMEPROPERTIES:
            raise bad_request(f"timeproperty must be one of {', '.join(TIMEPROPERTIES)}, got {prop!r}.")
        q.timeproperty = prop
    raw_n = params.get("lastN")
    if raw_n is not None:
        if not re.fullmatch(r"\d+", raw_n) or int(raw_n) < 1:
            raise bad_request("lastN must be a positive integer.")
        q.last_n = int(raw_n)
    methods = params.get("aggrMethods")
    if methods is not None:
        items = [m.strip() for m in methods.split(",")]
        unknown = [m for m in items if m not in AGGR_METHODS]
        if unknown or not items:
            raise bad_request(f"Unknown aggrMethods {', '.join(unknown) or '(empty)'}; use {', '.join(AGGR_METHODS)}.")
        q.aggr_methods = list(dict.fromkeys(items))
    elif aggregated:
        raise bad_request("options=aggregatedValues needs aggrMethods.")
    period = params.get("aggrPeriodDuration")
    if period is not None:
        q.aggr_period = parse_duration(period)
    return q


def _time_param(raw: str, name: str) -> datetime:
    if not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d", raw):
        raise bad_request(f"{name} must be a DateTime (e.g. 2025-07-01T00:00:00Z), got {raw!r}.")
    try:
        return parse_datetime(raw, name)
    except Exception as exc:  # parse_datetime raises BadRequestData already; keep the message
        raise bad_request(f"{name} is not a valid DateTime: {raw!r}.") from exc


# --------------------------------------------------------------------------- reading instances


@dataclass(slots=True)
class Row:
    """One instance as read: raw JSON text of the stored document and raw time values.

    Times are what the driver returns without conversion (text on SQLite, in one fixed format,
    so they compare in time order; datetimes on PostgreSQL): decoding 8,760 documents and
    timestamps per year of hourly values would cost more than the query itself.
    """

    instance_id: str
    dataset_id: str
    doc_text: str
    value_num: float | None
    time: Any
    recorded_at: Any
    _doc: dict[str, Any] | None = None

    @property
    def doc(self) -> dict[str, Any]:
        if self._doc is None:
            loaded = json.loads(self.doc_text) if self.doc_text else {}
            self._doc = loaded if isinstance(loaded, dict) else {}
        return self._doc


@dataclass
class Bucket:
    start: datetime
    end: datetime
    values: dict[str, Any]


@dataclass
class Group:
    """One attribute's temporal evolution in an entity (every datasetId)."""

    entity_id: str
    name: str
    kind: str = "Property"
    rows: list[Row] = field(default_factory=list)
    truncated: bool = False  # more instances in range than returned
    paged_out: bool = False  # it had instances in range, pagination cut them all (rendered empty)
    aggregates: dict[str, list[Bucket]] = field(default_factory=dict)  # datasetId -> buckets
    kinds: dict[str, str] = field(default_factory=dict)  # datasetId -> attribute type
    #: one more condition on the instances read (a temporal scopeQ: the times a matching scope was valid)
    where: ColumnElement[bool] | None = None

    def datasets(self) -> list[str]:
        found = {r.dataset_id for r in self.rows} | set(self.aggregates) | set(self.kinds)
        return sorted(found)


def to_datetime(raw: Any) -> datetime:
    """A raw time value of a :class:`Row` as an aware datetime."""
    if isinstance(raw, str):
        return datetime.fromisoformat(raw).replace(tzinfo=UTC)
    assert isinstance(raw, datetime)
    return raw.astimezone(UTC) if raw.tzinfo else raw.replace(tzinfo=UTC)


def format_time(raw: Any) -> str | None:
    """NGSI-LD DateTime text (UTC, milliseconds, ``Z``) of a raw time value or a datetime."""
    if raw is None:
        return None
    if isinstance(raw, str):  # SQLite: 'YYYY-MM-DD HH:MM:SS[.ffffff]'
        frac = raw[19:23] if len(raw) >= 23 else ".000"
        return f"{raw[:10]}T{raw[11:19]}{frac}Z"
    return to_datetime(raw).isoformat(timespec="milliseconds")[:-6] + "Z"  # ...+00:00 -> Z


def raw_columns(session: Session, col: Any) -> tuple[Any, Any, Any]:
    """(document text, time, recorded time) without the ORM types' conversions."""
    if session.get_bind().dialect.name == "postgresql":
        naked = DateTime(timezone=True)
        return cast(H.doc, Text), type_coerce(col, naked), type_coerce(H.recorded_at, naked)
    return type_coerce(H.doc, Text), type_coerce(col, String), type_coerce(H.recorded_at, String)


def find_groups(
    session: Session, tenant: str, entity_ids: list[str], names: list[str] | None
) -> dict[str, list[Group]]:
    """The attributes each entity has history for, by entity id, sorted by name.

    The names come from the (tenant, entity, attribute, time) index with a skip scan (one index
    probe per attribute, however long its history), not from reading every history row.
    """
    out: dict[str, list[Group]] = {}
    conn = session.connection()
    for eid in entity_ids:
        if names is not None:
            found = [
                n
                for n in names
                if conn.execute(
                    select(H.id).where(H.tenant == tenant, H.entity_id == eid, H.name == n).limit(1)
                ).first()
            ]
        else:
            found = list(conn.execute(_SKIP_SCAN, {"tenant": tenant, "eid": eid}).scalars())
        out[eid] = [Group(eid, n) for n in sorted(found) if n is not None]
    return out


_SKIP_SCAN = text(
    """
    WITH RECURSIVE names(name) AS (
        SELECT min(name) FROM ngsild_attribute_history WHERE tenant = :tenant AND entity_id = :eid
        UNION ALL
        SELECT (SELECT min(h.name) FROM ngsild_attribute_history h
                WHERE h.tenant = :tenant AND h.entity_id = :eid AND h.name > names.name)
        FROM names WHERE names.name IS NOT NULL
    )
    SELECT name FROM names WHERE name IS NOT NULL
    """
)


#: The history op of a deleted-instance record given in a temporal evolution (§4.5.7, value
#: member NGSI-LD Null): an instance to show, but no value to aggregate.
NULL_OP = "null"


def _where(tenant: str, g: Group, tq: TemporalQuery) -> list[ColumnElement[bool]]:
    where = [H.tenant == tenant, H.entity_id == g.entity_id, H.name == g.name, *tq.conditions()]
    if g.where is not None:
        where.append(g.where)
    return where


def _live_kind(session: Session, tenant: str, g: Group) -> str:
    """The attribute's type, from its instances (a deletion row does not record it)."""
    where = [H.tenant == tenant, H.entity_id == g.entity_id, H.name == g.name, *TemporalQuery().conditions()]
    kind = session.connection().execute(select(H.kind).where(*where).limit(1))
    return kind.scalar() or "Property"


def read_rows(session: Session, tenant: str, g: Group, tq: TemporalQuery, limit: int, *, recorded: bool = True) -> None:
    """Fill ``g.rows`` with at most ``limit`` instances in time order (the last ones with lastN);
    without ``recorded`` their recording times are not read (None: only sysAttrs shows them)."""
    col = tq.column
    doc, t, rec = raw_columns(session, col)
    where = _where(tenant, g, tq)
    backward = tq.last_n is not None  # the newest first, turned round below

    def read(condition: ColumnElement[bool], order: list[Any], n: int) -> Sequence[Any]:
        stmt = (
            select(H.instance_id, H.dataset_id, doc, H.value_num, t, rec if recorded else null(), H.kind)
            .where(*where, condition)
            .order_by(*order)
            .limit(n)
        )
        return session.connection().execute(stmt).all()

    timed = [col.desc(), H.id.desc()] if backward else [col.asc(), H.id.asc()]
    # Instances without the time come before the oldest (and are in no time range). They are read
    # apart from the timed ones, which the (…, time) index then gives in its order on both
    # databases: PostgreSQL's index keeps NULLs after the latest time, and a single ORDER BY
    # putting them first sorted every instance of the attribute (lastN=24 of a year: 14 ms
    # against 0.2 ms).
    parts: list[tuple[ColumnElement[bool], list[Any]]]
    if tq.timerel is not None:
        parts = [(true(), timed)]
    elif backward:
        parts = [(col.is_not(None), timed), (col.is_(None), [H.id.desc()])]
    else:
        parts = [(col.is_(None), [H.id.asc()]), (col.is_not(None), timed)]
    result: list[Any] = []
    for condition, order in parts:
        if len(result) <= limit:
            result += read(condition, order, limit + 1 - len(result))
    g.truncated = len(result) > limit
    rows = []
    for iid, ds, doc_text, num, time_value, recorded, kind in result[:limit]:
        rows.append(Row(iid, ds, doc_text or "", num, time_value, recorded))
        g.kinds[ds] = kind or g.kinds.get(ds) or _live_kind(session, tenant, g)
    if tq.last_n is not None:
        rows.reverse()
    g.rows = rows
    g.kind = next(iter(g.kinds.values())) if rows else _live_kind(session, tenant, g)


@dataclass
class Page:
    """Where temporal pagination cut the answer: a ``Content-Range`` of ``date-time``."""

    start: Any
    end: Any
    size: str


def paginate(groups: Iterable[Group], tq: TemporalQuery, limit: int) -> Page | None:
    """Cut every attribute at the same time when one of them reached the server's limit (§6.3.10).

    Forward (no lastN): up to the earliest last instance among the cut attributes; backward
    (lastN above the limit): down to the latest first instance among them. Instances beyond
    the cut are dropped from every attribute, so the page is complete for its time range; an
    attribute whose instances all fall beyond the cut stays in the answer, empty.
    """
    groups = list(groups)
    cut_groups = [g for g in groups if g.truncated and any(r.time is not None for r in g.rows)]
    if not cut_groups or (tq.last_n is not None and tq.last_n <= limit):
        return None
    if tq.last_n is None:
        cut = min(max(r.time for r in g.rows if r.time is not None) for g in cut_groups)
        for g in groups:
            g.paged_out = bool(g.rows)
            g.rows = [r for r in g.rows if r.time is None or r.time <= cut]
            g.paged_out = g.paged_out and not g.rows
        times = [r.time for g in groups for r in g.rows if r.time is not None]
        start = tq.time_at if tq.timerel in ("after", "between") and tq.time_at else min(times)
        return Page(start, cut, "*")
    cut = max(min(r.time for r in g.rows if r.time is not None) for g in cut_groups)
    for g in groups:
        g.paged_out = bool(g.rows)
        g.rows = [r for r in g.rows if r.time is not None and r.time >= cut]
        g.paged_out = g.paged_out and not g.rows
    times = [r.time for g in groups for r in g.rows if r.time is not None]
    if tq.timerel == "before" and tq.time_at:
        start = tq.time_at
    elif tq.timerel == "between" and tq.end_time_at:
        start = tq.end_time_at
    else:
        start = max(times)
    return Page(start, cut, str(tq.last_n))


# --------------------------------------------------------------------------- aggregation


def _epoch_ms(session: Session, col: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.floor(func.extract("epoch", col) * 1000), BigInteger)
    # SQLite: milliseconds from the Julian day (one function call per row; exact to well under 1 ms)
    return cast((func.julianday(col) - 2440587.5) * 86400000.0 + 0.5, Integer)


def _int(value: int) -> Any:
    return type_coerce(literal_column(str(int(value))), BigInteger)


def _ms(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000


def origin_of(session: Session, tenant: str, groups: list[Group], tq: TemporalQuery) -> datetime | None:
    """Where the first period starts: timeAt for after/between, else the entity's oldest instance in range."""
    if tq.timerel in ("after", "between") and tq.time_at is not None:
        return tq.time_at
    oldest: datetime | None = None
    for g in groups:
        first = session.scalar(select(func.min(tq.column)).where(*_where(tenant, g, tq)))
        if first is not None and (oldest is None or first < oldest):
            oldest = first
    return oldest


def aggregate(session: Session, tenant: str, g: Group, tq: TemporalQuery, origin: datetime | None) -> None:
    """Fill ``g.aggregates``: per datasetId, one bucket per non-empty period (or one for the whole range)."""
    period = tq.aggr_period if tq.aggr_period is not None and not tq.aggr_period.zero else None
    col = tq.column
    g.kind = _live_kind(session, tenant, g)
    if period is not None and (period.months or origin is None):
        g.aggregates = _aggregate_python(_value_rows(session, tenant, g, tq), tq, period, origin)
        return
    where = [*_where(tenant, g, tq), col.is_not(None), H.op != NULL_OP]
    if period is not None:
        assert origin is not None
        # integer division (``//``): SQLAlchemy renders ``/`` as true division
        bucket: Any = (_epoch_ms(session, col) - _int(_ms(origin))) // _int(period.millis)
    else:
        bucket = literal_column("0")
    v = H.value_num
    # only what the asked methods need (a count of distinct values sorts each period's values; the
    # first and last times are the bounds only without a period); both counts always, to tell
    # numbers from other values
    wanted = {m for method in tq.aggr_methods for m in _NEEDS.get(method, ())}
    measures: dict[str, Any] = {  # by the _Stats field each fills
        "distinct": func.count(distinct(v)),
        "total": func.sum(v),
        "lo": func.min(v),
        "hi": func.max(v),
        "sumsq": func.sum(v * v),
    }
    picked = [name for name in measures if name in wanted]
    bounds = [func.min(col), func.max(col)] if period is None else []
    stmt = (
        select(
            H.dataset_id, bucket.label("bucket"), func.count(), func.count(v), *(measures[n] for n in picked), *bounds
        )
        .where(*where)
        .group_by(H.dataset_id, literal_column("bucket"))
        .order_by(H.dataset_id, literal_column("bucket"))
    )
    rows = session.connection().execute(stmt).all()
    g.kinds = {r[0]: g.kind for r in rows}
    if any(r[2] != r[3] for r in rows):  # some values are not numbers: aggregate from the documents
        g.aggregates = _aggregate_python(_value_rows(session, tenant, g, tq), tq, period, origin)
        return
    out: dict[str, list[Bucket]] = {}
    for row in rows:
        ds, k, n = row[0], row[1], row[2]
        stats = _Stats(n, n, **dict(zip(picked, row[4 : 4 + len(picked)], strict=True)))
        if period is not None:
            assert origin is not None
            start = period.add(origin, int(k))
            end = period.add(origin, int(k) + 1)
        else:
            start, end = row[-2], row[-1]
        out.setdefault(ds, []).append(Bucket(start, end, {m: stats.value(m) for m in tq.aggr_methods}))
    g.aggregates = out


#: The :class:`_Stats` fields each aggregation method is computed from (with the counts, always
#: selected), and so the SQL measures it needs.
_NEEDS: dict[str, tuple[str, ...]] = {
    "distinctCount": ("distinct",),
    "sum": ("total",),
    "avg": ("total",),
    "min": ("lo",),
    "max": ("hi",),
    "sumsq": ("sumsq",),
    "stddev": ("total", "sumsq"),
}


def _value_rows(session: Session, tenant: str, g: Group, tq: TemporalQuery) -> list[tuple[str, datetime, Any]]:
    col = tq.column
    stmt = (
        select(H.dataset_id, col, H.value_num, H.doc)
        .where(*_where(tenant, g, tq), col.is_not(None), H.op != NULL_OP)
        .order_by(col, H.id)
    )
    out: list[tuple[str, datetime, Any]] = []
    for ds, t, num, doc in session.execute(stmt):
        out.append((ds, t, num if num is not None else instance_value(doc or {})))
    return out


def instance_value(doc: dict[str, Any]) -> Any:
    """The value of a stored instance, whatever its attribute type."""
    for key in ("value", "object", "languageMap", "vocab", "json", "valueList", "objectList"):
        if key in doc:
            return doc[key]
    return None


@dataclass
class _Stats:
    count: int  # instances
    n: int  # numeric values
    # from SQL only what the asked methods need (``_NEEDS``): the others stay None
    distinct: int | None = None
    total: float | None = None
    lo: Any = None
    hi: Any = None
    sumsq: float | None = None

    def value(self, method: str) -> Any:
        if method == "totalCount":
            return self.count
        if method == "distinctCount":
            return self.distinct
        if method == "sum":
            return self.total
        if method == "avg":
            return None if self.total is None or not self.n else self.total / self.n
        if method == "min":
            return self.lo
        if method == "max":
            return self.hi
        if method == "sumsq":
            return self.sumsq
        # stddev: the sample standard deviation (as PostgreSQL's stddev), 0 for a single value
        if self.total is None or self.sumsq is None or self.n < 2:
            return None if self.total is None else 0.0
        variance = (self.sumsq - self.total * self.total / self.n) / (self.n - 1)
        return math.sqrt(max(variance, 0.0))


def _aggregate_python(
    rows: list[tuple[str, datetime, Any]], tq: TemporalQuery, period: Duration | None, origin: datetime | None
) -> dict[str, list[Bucket]]:
    if not rows:
        return {}
    if origin is None:
        origin = min(t for _, t, _ in rows)
    by_bucket: dict[tuple[str, int], list[tuple[datetime, Any]]] = {}
    for ds, t, value in rows:
        k = _bucket_of(t, origin, period) if period is not None else 0
        by_bucket.setdefault((ds, k), []).append((t, value))
    out: dict[str, list[Bucket]] = {}
    for ds, k in sorted(by_bucket):
        items = by_bucket[(ds, k)]
        if period is not None:
            start, end = period.add(origin, k), period.add(origin, k + 1)
        else:
            start, end = items[0][0], items[-1][0]
        values = [v for _, v in items]
        nums = [float(v) for v in values if isinstance(v, int | float)]
        texts = [v for v in values if isinstance(v, str)]
        ordered: list[Any] = nums or texts
        stats = _Stats(
            len(values),
            len(nums),
            len({json.dumps(v, sort_keys=True) for v in values}),
            math.fsum(nums) if nums else None,
            min(ordered) if ordered else None,
            max(ordered) if ordered else None,
            math.fsum(x * x for x in nums) if nums else None,
        )
        out.setdefault(ds, []).append(Bucket(start, end, {m: stats.value(m) for m in tq.aggr_methods}))
    return out


def _bucket_of(t: datetime, origin: datetime, period: Duration) -> int:
    if not period.months:
        return (_ms(t) - _ms(origin)) // period.millis
    # calendar periods: estimate from whole months, then step to the bucket holding t
    months = (t.year - origin.year) * 12 + (t.month - origin.month)
    k = max(0, months // period.months - 1)
    while period.add(origin, k + 1) <= t:
        k += 1
    while k > 0 and period.add(origin, k) > t:
        k -= 1
    return k
