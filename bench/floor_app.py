"""The framework's own cost per request, for the context bench: the same stack as ``ioc serve``
(uvicorn, FastAPI) with handlers that do nothing but read a small JSON body or return a small
JSON document, each run where the broker runs its own: the PATCH handler in the thread pool,
the GET handler on the event loop (Retrieve Entity on SQLite, ``http.read_by_key``).
``python -m uvicorn bench.floor_app:app``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, FastAPI, Response

app = FastAPI()

ENTITY = {
    "id": "urn:ngsi-ld:AirQualityObserved:1",
    "type": "AirQualityObserved",
    "m0": {"type": "Property", "value": 12.5, "observedAt": "2025-07-01T00:00:00Z"},
}


@app.patch("/entities/{entity_id}/attrs")
def patch(entity_id: str, body: Annotated[dict[str, Any], Body()]) -> Response:
    return Response(status_code=204)


@app.get("/entities/{entity_id}")
async def get(entity_id: str) -> dict[str, Any]:
    return {**ENTITY, "id": entity_id}
