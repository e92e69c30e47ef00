"""Delivery of NGSI-LD notifications: HTTP(S) POST or MQTT publish, at least once, with back-off.

Matching (``subscriptions.py``) writes each notification into ``ngsild_notifications`` in the
transaction of the event consumer. A :class:`Notifier` per process delivers them off the write
path, in a thread that runs while there is work and stops when there is none:

* it *claims* due rows (one conditional UPDATE per row, atomic on SQLite and PostgreSQL), so
  several ``ioc serve`` workers never send one notification twice at the same time; a worker
  that dies mid-delivery only delays it until the claim expires (then it is sent again);
* it sends outside any transaction and then records the outcome: counters and status on the
  subscription; the row is deleted once delivered, or retried with exponential back-off until
  ``max_attempts`` and then dropped (with a warning in the log);
* it is woken after the consumer commits, and by a periodic job (which also picks up, after a
  restart, whatever an earlier process left pending).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from ioc.core.db import Database, utcnow
from ioc.core.mqtt import MqttPublisher, parse_mqtt_url

from .entity import format_datetime
from .ld import CORE_CONTEXT_URL, link_header
from .subscriptions_models import NgsiNotification, NgsiSubscription

log = logging.getLogger("ioc.context.notify")

JSON = "application/json"
JSONLD = "application/ld+json"
GEOJSON = "application/geo+json"


class NotifySettings(BaseSettings):
    """Delivery of subscription notifications (environment prefix ``IOC_NGSILD_NOTIFY_``)."""

    model_config = SettingsConfigDict(env_prefix="IOC_NGSILD_NOTIFY_", extra="ignore")

    #: Seconds to wait for an endpoint (connect and answer) or for the MQTT broker's PUBACK.
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    #: Attempts per notification before it is dropped (counted in timesFailed each time).
    max_attempts: int = Field(default=6, ge=1, le=100)
    #: Back-off: the n-th retry waits base * 2^(n-1) seconds, at most ``retry_max_seconds``.
    retry_base_seconds: float = Field(default=2.0, gt=0)
    retry_max_seconds: float = Field(default=300.0, gt=0)
    #: How often the periodic job looks for pending notifications (after a restart, retries).
    sweep_seconds: float = Field(default=5.0, gt=0)
    #: How often subscriptions with a ``timeInterval`` are checked (their granularity).
    periodic_tick_seconds: float = Field(default=2.0, gt=0)
    #: Most entities in one periodic notification.
    periodic_max_entities: int = Field(default=1000, ge=1, le=100_000)
    #: Notifications claimed per round.
    batch: int = Field(default=50, ge=1, le=1000)


@dataclass
class Outcome:
    ok: bool
    error: str | None = None


def subscription_status(row: NgsiSubscription, now: datetime | None = None) -> str:
    """``active``, ``paused`` (isActive false) or ``expired`` (expiresAt passed)."""
    now = now or utcnow()
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active" if row.is_active else "paused"


def _key_values(items: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        if isinstance(item, dict) and isinstance(item.get("key"), str):
            out[item["key"]] = str(item.get("value", ""))
    return out


def request_parts(
    tenant: str, endpoint: dict[str, Any], notify_context: Any, body: dict[str, Any]
) -> tuple[dict[str, str], dict[str, Any]]:
    """The headers (or MQTT metadata) and the body of one notification."""
    accept = endpoint.get("accept") or JSON
    headers: dict[str, str] = {}
    body = {**body, "notifiedAt": format_datetime(utcnow())}
    context = notify_context if notify_context is not None else CORE_CONTEXT_URL
    if accept == JSONLD:
        # JSON-LD: the @context travels in the body, and with every entity of ``data`` (§5.3.1, §6.3.6)
        headers["Content-Type"] = JSONLD
        data = body.get("data")
        if isinstance(data, list):
            body["data"] = [{"@context": context, **e} if isinstance(e, dict) else e for e in data]
        body = {"@context": context, **body}
    else:
        headers["Content-Type"] = accept
        headers["Link"] = link_header(context_url(context))
    if tenant:
        headers["NGSILD-Tenant"] = tenant
    headers.update(_key_values(endpoint.get("receiverInfo")))
    return headers, body


def context_url(context: Any) -> str:
    """The URL for a ``Link`` header naming ``context`` (a URL, or an array holding one URL)."""
    if isinstance(context, str):
        return context
    if isinstance(context, list):
        urls = [c for c in context if isinstance(c, str)]
        if len(urls) == len(context) == 1:
            return urls[0]
    return CORE_CONTEXT_URL


class Notifier:
    """Sends this process's share of the pending notifications (see the module docstring)."""

    IDLE_SECONDS = 1.0

    def __init__(self, db: Database, settings: NotifySettings, running: Callable[[], bool]) -> None:
        self.db = db
        self.settings = settings
        self.running = running  # False once the app stopped: the thread then ends
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._publishers: dict[tuple[Any, ...], MqttPublisher] = {}
        self._inflight: dict[int, int] = {}  # subscription pk -> deliveries being sent and recorded
        self._settled = threading.Condition()

    def settle(self, subscription_pk: int, timeout: float = 2.0) -> None:
        """Wait (at most ``timeout``) until this process has recorded its deliveries in flight for a
        subscription, so that reading it right after its endpoint answered shows that delivery."""
        with self._settled:
            self._settled.wait_for(lambda: not self._inflight.get(subscription_pk), timeout)

    # -- thread -------------------------------------------------------------
    def wake(self) -> None:
        """Deliver what is due now (starts the delivery thread if it is not running)."""
        with self._lock:
            self._wake.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ioc-ngsild-notify", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        try:
            while self.running():
                self._wake.clear()
                try:
                    if self.deliver_due():
                        continue
                    wait = self._next_due_in()
                except Exception:  # the database went away: try again a little later
                    log.exception("notification delivery round failed")
                    wait = 5.0
                if wait is None:
                    if self._wake.wait(self.IDLE_SECONDS):
                        continue
                    with self._lock:
                        if not self._wake.is_set():
                            self._thread = None
                            return
                    continue
                self._wake.wait(min(max(wait, 0.05), 5.0))
        finally:
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None
            self._close_publishers()

    def _next_due_in(self) -> float | None:
        with self.db.session() as s:
            nxt = s.scalar(select(func.min(NgsiNotification.next_attempt_at)))
        if nxt is None:
            return None
        return float(max(0.0, (nxt - utcnow()).total_seconds()))

    def pending(self) -> int:
        with self.db.session() as s:
            return int(s.scalar(select(func.count()).select_from(NgsiNotification)) or 0)

    # -- delivery -------------------------------------------------------------
    def deliver_due(self) -> int:
        """Claim and send the notifications that are due; returns how many were attempted."""
        claimed = self._claim()
        if not claimed:
            return 0
        with httpx.Client(timeout=self.settings.timeout_seconds) as client:
            for note_id in claimed:
                self._deliver(client, note_id)
        return len(claimed)

    def _claim(self) -> list[int]:
        now = utcnow()
        until = now + timedelta(seconds=self.settings.timeout_seconds * 2 + 30)
        mine: list[int] = []
        with self.db.session() as s:
            ids = list(
                s.scalars(
                    select(NgsiNotification.id)
                    .where(
                        NgsiNotification.next_attempt_at <= now,
                        or_(NgsiNotification.claimed_until.is_(None), NgsiNotification.claimed_until < now),
                    )
                    .order_by(NgsiNotification.id)
                    .limit(self.settings.batch)
                )
            )
            for note_id in ids:
                result: Any = s.execute(
                    update(NgsiNotification)
                    .where(
                        NgsiNotification.id == note_id,
                        or_(NgsiNotification.claimed_until.is_(None), NgsiNotification.claimed_until < now),
                    )
                    .values(claimed_until=until)
                    .execution_options(synchronize_session=False)
                )
                if int(result.rowcount or 0) == 1:
                    mine.append(note_id)
        return mine

    def _deliver(self, client: httpx.Client, note_id: int) -> None:
        with self.db.session() as s:
            note = s.get(NgsiNotification, note_id)
            if note is None:
                return
            sub = s.get(NgsiSubscription, note.subscription_pk)
            if sub is None or subscription_status(sub) != "active":
                # deleted, paused or expired since: nothing is sent
                s.execute(delete(NgsiNotification).where(NgsiNotification.id == note_id))
                return
            tenant, body = note.tenant, dict(note.body)
            endpoint = dict(sub.doc.get("notification", {}).get("endpoint", {}))
            notify_context = sub.doc.get("jsonldContext", sub.context)
            sub_pk = sub.pk
        headers, payload = request_parts(tenant, endpoint, notify_context, body)
        with self._settled:
            self._inflight[sub_pk] = self._inflight.get(sub_pk, 0) + 1
        try:
            try:
                outcome = self._send(client, endpoint, headers, payload)
            except Exception as exc:  # whatever the endpoint did, it is a failed attempt
                outcome = Outcome(False, repr(exc))
            self._record(note_id, outcome)
        finally:
            with self._settled:
                left = self._inflight.get(sub_pk, 1) - 1
                if left > 0:
                    self._inflight[sub_pk] = left
                else:
                    self._inflight.pop(sub_pk, None)
                self._settled.notify_all()

    def _send(
        self, client: httpx.Client, endpoint: dict[str, Any], headers: dict[str, str], payload: dict[str, Any]
    ) -> Outcome:
        uri = str(endpoint.get("uri", ""))
        data = json.dumps(payload, ensure_ascii=False).encode()
        if uri.startswith(("mqtt://", "mqtts://")):
            target = parse_mqtt_url(uri)
            notifier_info = _key_values(endpoint.get("notifierInfo"))
            qos = int(notifier_info.get("MQTT-QoS", "0"))
            message = {"metadata": headers, "body": payload}
            publisher = self._publisher(uri, target)
            try:
                publisher.publish(target.topic, json.dumps(message, ensure_ascii=False).encode(), qos=qos)
            except ConnectionError as exc:
                return Outcome(False, str(exc))
            return Outcome(True)
        try:
            response = client.post(uri, content=data, headers=headers)
        except httpx.HTTPError as exc:
            return Outcome(False, f"{type(exc).__name__}: {exc}")
        if 200 <= response.status_code < 300:
            return Outcome(True)
        return Outcome(False, f"HTTP {response.status_code}")

    def _publisher(self, uri: str, target: Any) -> MqttPublisher:
        key = (target.host, target.port, target.tls, target.username, target.password)
        publisher = self._publishers.get(key)
        if publisher is None:
            publisher = self._publishers[key] = MqttPublisher(uri, timeout=self.settings.timeout_seconds)
        return publisher

    def _close_publishers(self) -> None:
        publishers, self._publishers = self._publishers, {}
        for publisher in publishers.values():
            try:
                publisher.close()
            except Exception:
                log.debug("closing an MQTT publisher failed", exc_info=True)

    def _record(self, note_id: int, outcome: Outcome) -> None:
        """Delete, reschedule or drop the notification, then count the attempt on its subscription.

        Plain UPDATE/DELETE statements, notification first and subscription second, the order in which
        deleting a subscription locks them: a subscription deleted (its notifications dropped) while
        its notification is on its way neither fails nor deadlocks the delivery round, and counters
        of one subscription delivered by several workers add up.
        """
        now = utcnow()
        note = NgsiNotification
        with self.db.session() as s:
            row = s.execute(
                select(note.subscription_pk, note.attempts, note.body).where(note.id == note_id)
            ).one_or_none()
            if row is None:
                return
            sub_pk, attempts, body = row
            attempts += 1
            error = (outcome.error or "failed")[:2000]
            if outcome.ok or attempts >= self.settings.max_attempts:
                s.execute(delete(note).where(note.id == note_id))
                if not outcome.ok:
                    log.warning(
                        "notification %s of subscription %s dropped after %d attempts: %s",
                        body.get("id"),
                        body.get("subscriptionId"),
                        attempts,
                        error,
                    )
            else:
                delay = min(self.settings.retry_base_seconds * 2 ** (attempts - 1), self.settings.retry_max_seconds)
                retry = {"attempts": attempts, "last_error": error, "next_attempt_at": now + timedelta(seconds=delay)}
                s.execute(
                    update(note)
                    .where(note.id == note_id)
                    .values(**retry, claimed_until=None)
                    .execution_options(synchronize_session=False)
                )
            sub = NgsiSubscription
            counters: dict[str, Any] = {"times_sent": sub.times_sent + 1, "last_notification": now}
            if outcome.ok:
                counters.update(last_success=now, last_status="ok")
            else:
                counters.update(times_failed=sub.times_failed + 1, last_failure=now, last_status="failed")
            counted = update(sub).where(sub.pk == sub_pk).values(**counters)
            s.execute(counted.execution_options(synchronize_session=False))


def queue(session: Session, sub: NgsiSubscription, body: dict[str, Any], now: datetime) -> None:
    """Add a notification of ``sub`` to the delivery queue, in the caller's transaction."""
    session.add(
        NgsiNotification(
            tenant=sub.tenant,
            subscription_pk=sub.pk,
            body=body,
            attempts=0,
            next_attempt_at=now,
            claimed_until=None,
            created_at=now,
        )
    )


def drop_pending(session: Session, subscription_pk: int) -> None:
    """Forget the notifications of a deleted subscription."""
    session.execute(delete(NgsiNotification).where(NgsiNotification.subscription_pk == subscription_pk))
