"""The JSON HTTP polling connector: fetch a list of records, map their fields, upsert the dossiers.

A connector names the URL, where the list sits in the answer (``items_path``, dotted), which
field of a record feeds each of ours (``mapping``, dotted paths) and optional value maps (e.g.
``{"service_level": {"4": "full", "3": "partial"}}``). A poll whose records do not all validate
writes nothing: the connector's status keeps the row-level errors for the operators.

A connector may send request headers of its own (``headers``: e.g. ``Authorization: Bearer …``
or an API-key header). Their values are credentials: they are sent only to the connector's URL
(redirects are not followed), and every answer of the API and every audit row shows them masked
(:func:`mask_headers`); only the header names are shown in clear.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from ioc.core import audit
from ioc.core.db import Database, utcnow

from .models import Connector
from .records import DOSSIER_FIELDS, Reference, check_rows, record_batch, upsert

log = logging.getLogger("ioc.services.connectors")
MAX_RESPONSE_BYTES = 20_000_000
REQUIRED_MAPPING = ("code", "procedure_code", "agency_id", "service_level", "channel", "received_at")
MAX_HEADERS = 20
MASK = "••••••"
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
_HEADER_VALUE = re.compile(r"^[\x20-\x7e\t]{1,4096}$")
#: Headers the HTTP client sets itself (or that would change the exchange's framing).
RESERVED_HEADERS = frozenset(
    ("host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer")
)


class ConnectorError(RuntimeError):
    """The endpoint could not be read or did not answer what the connector expects."""


def dig(doc: Any, path: str) -> Any:
    """The value at a dotted ``path`` of ``doc`` (list indices allowed), or None."""
    if not path:
        return doc
    current = doc
    for part in path.split("."):
        if isinstance(current, dict):
            current = current.get(part)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


def check_mapping(mapping: dict[str, Any], value_maps: dict[str, Any]) -> list[str]:
    """What is wrong with a mapping (empty when it is usable)."""
    problems = [f"unknown field '{k}'" for k in mapping if k not in DOSSIER_FIELDS]
    problems += [f"'{k}' must be mapped" for k in REQUIRED_MAPPING if k not in mapping]
    problems += [
        f"path of '{k}' must be a non-empty string" for k, v in mapping.items() if not isinstance(v, str) or not v
    ]
    for name, table in value_maps.items():
        if name not in DOSSIER_FIELDS or not isinstance(table, dict):
            problems.append(f"value map '{name}' must map a known field to an object")
    return problems


def check_headers(headers: dict[str, Any]) -> list[str]:
    """What is wrong with a connector's request headers (empty when they are usable); never quotes a value."""
    problems: list[str] = []
    if len(headers) > MAX_HEADERS:
        problems.append(f"at most {MAX_HEADERS} headers")
    seen: set[str] = set()
    for name, value in headers.items():
        shown = name[:100]
        if not _HEADER_NAME.match(name):
            problems.append(f"'{shown}' is not a valid header name")
            continue
        if name.lower() in RESERVED_HEADERS:
            problems.append(f"header '{name}' is set by the connector itself")
        if name.lower() in seen:
            problems.append(f"header '{name}' given twice")
        seen.add(name.lower())
        if not isinstance(value, str) or not _HEADER_VALUE.match(value):
            problems.append(f"value of '{name}' must be 1-4096 printable ASCII characters")
    return problems


def mask(value: str) -> str:
    """A header value as shown back: the authentication scheme (``Bearer``, ``Basic`` …) and a mask."""
    scheme, _, rest = value.partition(" ")
    if rest and re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,20}", scheme):
        return f"{scheme} {MASK}"
    return MASK


def mask_headers(headers: dict[str, Any] | None) -> dict[str, str]:
    """The headers with every value masked (for answers and audit rows)."""
    return {name: mask(str(value)) for name, value in (headers or {}).items()}


def merge_headers(old: dict[str, Any], new: dict[str, str]) -> dict[str, str]:
    """``new`` as the connector's headers, where a value sent back masked keeps the stored one."""
    kept = {name for name, value in new.items() if name in old and value == mask(str(old[name]))}
    return {name: str(old[name]) if name in kept else value for name, value in new.items()}


def map_record(item: Any, mapping: dict[str, str], value_maps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One of our rows from one of their records."""
    row: dict[str, Any] = {}
    for ours, path in mapping.items():
        value = dig(item, path)
        table = value_maps.get(ours)
        if table is not None and value is not None and str(value) in table:
            value = table[str(value)]
        row[ours] = value
    return row


def fetch(
    url: str, items_path: str, client: httpx.Client | None = None, headers: dict[str, str] | None = None
) -> list[Any]:
    """The list of records at ``url`` (at most :data:`MAX_RESPONSE_BYTES`), sending ``headers``."""
    own = client is None
    http = client or httpx.Client(timeout=30.0, follow_redirects=False)
    sent = {"Accept": "application/json", **(headers or {})}
    try:
        with http.stream("GET", url, headers=sent, follow_redirects=False) as response:
            if response.status_code != 200:
                raise ConnectorError(f"HTTP {response.status_code} from {url}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise ConnectorError(f"answer larger than {MAX_RESPONSE_BYTES} bytes")
    except httpx.HTTPError as exc:
        raise ConnectorError(f"cannot reach {url}: {exc}") from exc
    finally:
        if own:
            http.close()
    try:
        doc = json.loads(bytes(body))
    except ValueError as exc:
        raise ConnectorError(f"answer is not JSON: {exc}") from exc
    items = dig(doc, items_path)
    if not isinstance(items, list):
        raise ConnectorError(f"no list at '{items_path or '(root)'}' in the answer")
    return items


def poll(session: Session, connector: Connector, client: httpx.Client | None = None) -> dict[str, Any]:
    """Poll one connector now; writes the dossiers and the connector's status in ``session``."""
    connector.last_run_at = utcnow()
    try:
        items = fetch(connector.url, connector.items_path, client, dict(connector.headers or {}))
    except ConnectorError as exc:
        connector.last_status, connector.last_error, connector.last_counts = "error", str(exc)[:2000], None
        return {"status": "error", "error": str(exc)}
    rows = [(i + 1, map_record(item, connector.mapping, connector.value_maps)) for i, item in enumerate(items)]
    checked = check_rows("dossiers", rows, Reference.load(session))
    if checked.issues:
        errors = [i.as_dict() for i in checked.issues]
        connector.last_status = "error"
        connector.last_error = json.dumps(
            {
                "message": f"{checked.total_issues} bản ghi không hợp lệ: không ghi gì (nothing written)",
                "errors": errors[:50],
            },
            ensure_ascii=False,
        )[:10000]
        connector.last_counts = {"records": len(rows), "invalid": checked.total_issues}
        return {"status": "error", "errors": errors}
    counts = upsert(
        session, "dossiers", checked.rows, source="poll", source_ref=f"connector:{connector.name}:record {{line}}"
    )
    if counts.inserted or counts.updated:
        batch = record_batch(
            session, "dossiers", "poll", counts, len(rows), filename=connector.url, actor=f"connector:{connector.name}"
        )
        audit.record(
            session, None, "services.poll", "connector", connector.id, after={"batch": batch.id, **counts.as_dict()}
        )
    connector.last_status, connector.last_error = "ok", None
    connector.last_counts = {"records": len(rows), **counts.as_dict()}
    return {"status": "ok", "records": len(rows), **counts.as_dict()}


def poll_due(db: Database) -> int:
    """Poll every enabled connector whose interval has passed; returns how many were polled."""
    with db.session() as s:
        connectors = list(s.scalars(select(Connector.id).where(Connector.enabled.is_(True))))
    polled = 0
    for connector_id in connectors:
        with db.session() as s:
            connector = s.get(Connector, connector_id)
            if connector is None:
                continue
            due = (
                connector.last_run_at is None
                or connector.last_run_at + timedelta(minutes=connector.interval_minutes) <= utcnow()
            )
            if not due:
                continue
            outcome = poll(s, connector)
            polled += 1
            if outcome["status"] != "ok":
                log.warning("connector %s: %s", connector.name, str(outcome)[:500])
    return polled
