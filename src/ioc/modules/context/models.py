"""Tables of the NGSI-LD broker: tenants, entities, their types and attributes, history, @contexts.

Names (attributes, types) are stored as expanded IRIs, so the same attribute reached through two
@contexts is one attribute. Every table carries the tenant, which is created on its first
write. The current state lives in ``ngsild_attributes`` (one row per attribute instance, i.e.
per (entity, attribute, datasetId)); every change of state is also appended to
``ngsild_attribute_history`` so the temporal API reads history by (tenant, entity, attribute,
time) through an index instead of scanning. GeoProperties carry their bbox in four columns: a
geo-query prefilters on them in SQL (both databases) and decides exactly with shapely.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ioc.core.db import Base, JsonDoc, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer(), "sqlite")
IRI = 1024


class NgsiTenant(Base):
    """A tenant (``NGSILD-Tenant``); the default tenant is the empty name and always exists."""

    __tablename__ = "ngsild_tenants"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class NgsiEntity(Base):
    """An entity: id, types, scope and system times; its attributes are rows of NgsiAttribute."""

    __tablename__ = "ngsild_entities"
    __table_args__ = (UniqueConstraint("tenant", "entity_id", name="uq_ngsild_entities_tenant_entity_id"),)

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    entity_id: Mapped[str] = mapped_column(String(IRI))
    types: Mapped[list[str]] = mapped_column(JsonDoc)
    scope: Mapped[Any | None] = mapped_column(JsonDoc, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # A transient entity's ``expiresAt`` (v1.9.1): the job context.expiry.sweep deletes it then.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class NgsiEntityType(Base):
    """One type of an entity (an entity may have several), indexed for ``type=`` queries."""

    __tablename__ = "ngsild_entity_types"
    __table_args__ = (Index("ix_ngsild_entity_types_tenant_type", "tenant", "type_iri", "entity_pk"),)

    entity_pk: Mapped[int] = mapped_column(
        BigId, ForeignKey("ngsild_entities.pk", ondelete="CASCADE"), primary_key=True
    )
    type_iri: Mapped[str] = mapped_column(String(IRI), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))


class NgsiAttribute(Base):
    """The current state of one attribute instance (entity, attribute IRI, datasetId)."""

    __tablename__ = "ngsild_attributes"
    __table_args__ = (
        Index("ix_ngsild_attributes_num", "tenant", "name", "value_num"),
        Index("ix_ngsild_attributes_text", "tenant", "name", "value_text"),
        Index("ix_ngsild_attributes_bbox", "tenant", "name", "min_lon", "min_lat"),
    )

    entity_pk: Mapped[int] = mapped_column(
        BigId, ForeignKey("ngsild_entities.pk", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(IRI), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(String(IRI), primary_key=True, default="")  # "" = default instance
    tenant: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(24))  # Property, Relationship, GeoProperty, ...
    value_kind: Mapped[str] = mapped_column(String(8))  # num | text | bool | other: what the columns below hold
    value_num: Mapped[float | None] = mapped_column(Float, nullable=True)
    value_text: Mapped[str | None] = mapped_column(String(256), nullable=True)
    doc: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    observed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime())
    min_lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    min_lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Spatial grid key of a GeoProperty's bbox (store.geo_cell), indexed with the bbox and the entity
    # so a geo-query reads the few cells around its geometry from the index alone.
    geo_cell: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The instance's ``expiresAt`` (v1.9.1), a copy of the doc's: when the instance is deleted.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


# Appended (context_0004): indexes of the query path.
Index(
    "ix_ngsild_attributes_geo",
    NgsiAttribute.tenant,
    NgsiAttribute.name,
    NgsiAttribute.geo_cell,
    NgsiAttribute.min_lon,
    NgsiAttribute.min_lat,
    NgsiAttribute.max_lon,
    NgsiAttribute.max_lat,
    NgsiAttribute.entity_pk,
    # only GeoProperties: the other attributes stay out of the index and cost it nothing on writes
    sqlite_where=NgsiAttribute.geo_cell.is_not(None),
    postgresql_where=NgsiAttribute.geo_cell.is_not(None),
)

# Appended (context_0006): the transient entities and attribute instances, for the expiry sweep;
# partial, so the (many) rows without an expiresAt cost the index nothing.
Index(
    "ix_ngsild_entities_expires",
    NgsiEntity.expires_at,
    sqlite_where=NgsiEntity.expires_at.is_not(None),
    postgresql_where=NgsiEntity.expires_at.is_not(None),
)
Index(
    "ix_ngsild_attributes_expires",
    NgsiAttribute.expires_at,
    sqlite_where=NgsiAttribute.expires_at.is_not(None),
    postgresql_where=NgsiAttribute.expires_at.is_not(None),
)


class NgsiAttributeHistory(Base):
    """Every change of state of an attribute instance, append-only (the temporal store)."""

    __tablename__ = "ngsild_attribute_history"
    __table_args__ = (
        Index("ix_ngsild_history_observed", "tenant", "entity_id", "name", "observed_at"),
        Index("ix_ngsild_history_recorded", "tenant", "entity_id", "name", "recorded_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    entity_id: Mapped[str] = mapped_column(String(IRI))
    name: Mapped[str] = mapped_column(String(IRI))
    dataset_id: Mapped[str] = mapped_column(String(IRI), default="")
    instance_id: Mapped[str] = mapped_column(String(64))
    op: Mapped[str] = mapped_column(String(8))  # create | update | delete | null (a deleted-instance record)
    kind: Mapped[str | None] = mapped_column(String(24), nullable=True)
    value_num: Mapped[float | None] = mapped_column(Float, nullable=True)  # for aggregations
    doc: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc, nullable=True)
    observed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class NgsiContext(Base):
    """An @context the broker holds: hosted (added by a user) or cached (fetched from a URL)."""

    __tablename__ = "ngsild_contexts"

    local_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The tenant a Hosted or ImplicitlyCreated @context was added under: only that tenant lists,
    # serves and deletes it (§5.5.10). Cached ones are copies of public documents, shared.
    tenant: Mapped[str] = mapped_column(String(128), default="", server_default="")
    url: Mapped[str | None] = mapped_column(String(2048), nullable=True, unique=True)  # cached: where from
    kind: Mapped[str] = mapped_column(String(24))  # Hosted | Cached | ImplicitlyCreated
    body: Mapped[Any] = mapped_column(JsonDoc)  # the @context value
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class NgsiEntityMap(Base):
    """An entity map (§5.14, ``entity_maps.py``): the entities a query found, in its order, until it expires."""

    __tablename__ = "ngsild_entity_maps"
    __table_args__ = (Index("ix_ngsild_entity_maps_expires", "expires_at"),)

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    map_id: Mapped[str] = mapped_column(String(IRI), primary_key=True)
    entity_ids: Mapped[list[str]] = mapped_column(JsonDoc)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# Subscriptions and their notification queue live in their own file; imported here so the
# metadata (migrations, schema checks) sees them.
from . import subscriptions_models  # noqa: E402, F401
