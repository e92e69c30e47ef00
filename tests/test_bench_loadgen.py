"""The benches' lean HTTP client (bench/loadgen.py) against a real uvicorn server."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
import uvicorn
from bench import loadgen
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

T = TypeVar("T")
app = FastAPI()
seen: list[tuple[str, str, bytes]] = []


@app.api_route("/echo/{name}", methods=["GET", "PATCH", "POST"])
async def echo(name: str, request: Request) -> Response:
    body = await request.body()
    seen.append((request.method, str(request.url.query), body))
    if name == "missing":
        return Response(status_code=404, content=b"no such thing")
    if name == "empty":
        return Response(status_code=204)
    return Response(content=b'{"name":"' + name.encode() + b'","len":' + str(len(body)).encode() + b"}")


@app.get("/chunked")
def chunked() -> StreamingResponse:
    return StreamingResponse(iter([b"ab", b"cde"]))


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/echo"
    server.should_exit = True
    thread.join(timeout=10)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run the client in a thread of its own: the suite may have an event loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def test_encode_writes_a_complete_request() -> None:
    data = loadgen.encode("PATCH", "/a", "h:1", {"json": {"x": 1}, "params": {"q": "a b"}, "headers": {"X-T": "1"}})
    assert data == (
        b"PATCH /a?q=a+b HTTP/1.1\r\nHost: h:1\r\nX-T: 1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 8\r\n\r\n{"x": 1}'
    )
    assert loadgen.encode("GET", "/a", "h:1", {}) == b"GET /a HTTP/1.1\r\nHost: h:1\r\n\r\n"


def test_requests_over_keep_alive_connections(base: str) -> None:
    seen.clear()

    def make(i: int) -> tuple[str, str, dict[str, Any], int]:
        if i % 3 == 0:
            return "PATCH", f"/n{i}", {"json": {"i": i}}, 200
        if i % 3 == 1:
            return "GET", "/empty", {"params": {"i": i}}, 204
        return "GET", f"/n{i}", {}, 200

    rate, latencies = _run(loadgen.run(base, 60, make, clients=4))
    assert rate > 0
    assert len(latencies) == 60
    assert sorted(m for m, _, _ in seen) == ["GET"] * 40 + ["PATCH"] * 20
    assert (b'{"i": 0}') in [b for _, _, b in seen]
    assert sorted(q for m, q, _ in seen if q) == sorted(f"i={i}" for i in range(60) if i % 3 == 1)


def test_an_unexpected_status_fails_the_run_or_is_counted(base: str) -> None:
    def make(i: int) -> tuple[str, str, dict[str, Any], int]:
        return "GET", "/missing" if i == 2 else f"/n{i}", {}, 200

    errors: list[str] = []
    _run(loadgen.run(base, 5, make, clients=2, errors=errors))
    assert errors == ["404 b'no such thing'"]
    with pytest.raises(AssertionError, match="404"):
        _run(loadgen.run(base, 5, make, clients=1))


def test_a_chunked_answer_is_read_whole(base: str) -> None:
    # every answer must be read to its end, or the next one on the connection would be misread
    root = base.rsplit("/echo", 1)[0]
    _rate, latencies = _run(loadgen.run(root, 10, lambda i: ("GET", "/chunked", {}, 200), clients=1))
    assert len(latencies) == 10
