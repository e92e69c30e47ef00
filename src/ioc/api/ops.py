"""Operations: liveness, readiness and a short status for the IT staff."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from ioc import __version__
from ioc.core.db import Database
from ioc.core.migrate import current_revisions, head_revisions, is_current

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Alive: the process answers."""
    return {"status": "ok", "version": __version__}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """Ready: the database answers and its schema is at the newest migration."""
    db: Database = request.app.state.db
    checks: dict[str, Any] = {}
    ok = True
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
        current, heads, ok = current_revisions(db.engine), head_revisions(), is_current(db.engine)
        checks["migrations"] = {"current": sorted(current), "heads": sorted(heads), "ok": ok}
    except Exception as exc:  # any failure to reach the database means not ready
        checks["database"] = f"error: {exc.__class__.__name__}"
        ok = False
    bus = request.app.state.bus
    checks["events"] = {"delivered": bus.stats.delivered, "consumer_failures": bus.stats.consumer_failures}
    body = {"status": "ok" if ok else "unavailable", "checks": checks}
    return JSONResponse(body, status_code=200 if ok else 503)
