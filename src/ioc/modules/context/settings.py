"""Settings of the NGSI-LD context broker (environment prefix ``IOC_NGSILD_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class NgsiLdSettings(BaseSettings):
    """What an operator may tune; safe defaults (credentials required for every write)."""

    model_config = SettingsConfigDict(env_prefix="IOC_NGSILD_", extra="ignore")

    #: Writes without credentials: only for closed networks and conformance runs (logged loudly).
    anonymous_writes: bool = False
    #: Reads without credentials of every entity type (implied by ``anonymous_writes``).
    anonymous_reads: bool = False
    #: Entity types anyone may read (short names of the core context or full IRIs; ``*`` is all).
    public_types: list[str] = Field(default_factory=list)
    #: Seconds to wait for a remote @context.
    context_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    #: A fetched @context is refreshed after this many seconds (the stale copy serves meanwhile).
    context_refresh_seconds: int = Field(default=3600, ge=1)
    #: Largest accepted @context document.
    context_max_bytes: int = Field(default=2_000_000, ge=1024)
    #: ``limit`` when the request gives none, and the largest ``limit`` accepted.
    default_limit: int = Field(default=20, ge=1)
    max_limit: int = Field(default=1000, ge=1)
    #: Body limit for ``/entityOperations`` (10,000+ entities per request).
    batch_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1_048_576)
    #: Largest number of entities in one batch request.
    batch_max_entities: int = Field(default=100_000, ge=1)
    #: Body limit for the other NGSI-LD paths.
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=65_536)
    #: Temporal API: most instances of one attribute in one answer (more → 206 and Content-Range).
    temporal_max_instances: int = Field(default=1000, ge=1)
    #: Entity maps (§5.14): how long one lives when the query does not say (``entityMapLifetime``) ...
    entity_map_lifetime_seconds: int = Field(default=3600, ge=1)
    #: ... and the longest it may live, whatever the query or an update asks.
    entity_map_max_lifetime_seconds: int = Field(default=86_400, ge=1)
    #: How often transient entities and attribute instances past their ``expiresAt`` are deleted.
    expiry_sweep_seconds: float = Field(default=60.0, gt=0)
    #: Check entities of the Smart Data Models types the city uses against their schemas (400 when invalid).
    validate_models: bool = False
    #: A device is offline (alarm raised) once it missed this many of its expected reports in a row.
    device_offline_misses: int = Field(default=3, ge=1, le=1000)
    #: How often the offline check runs.
    device_check_seconds: float = Field(default=60.0, gt=0)
    #: Subscribe to device telemetry on the core's MQTT broker (``IOC_MQTT__URL``) when one is set.
    mqtt_ingest: bool = True
    #: MQTT shared-subscription group, so several workers share the telemetry (empty: every worker gets all).
    mqtt_share_group: str = "ioc-ingest"
