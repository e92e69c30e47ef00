"""A lean HTTP/1.1 load generator for the benches: keep-alive connections on asyncio streams.

httpx costs the client a few milliseconds of CPU per request; on a 2-core machine shared with the
server that caps a bench near 300 requests/s whatever the server does. This client writes each
request as bytes and reads the answer by its ``Content-Length`` (or chunked), about ten times
cheaper, so the figures measure the server. Plain HTTP on 127.0.0.1 only, no redirects or TLS.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

#: (method, path, keyword arguments as httpx takes them: ``json``/``params``/``headers``, expected status)
Request = tuple[str, str, dict[str, Any], int]


def encode(method: str, path: str, host: str, kwargs: dict[str, Any]) -> bytes:
    """One request as bytes (``json`` body, ``params`` query, extra ``headers``)."""
    if kwargs.get("params"):
        path += "?" + urlencode(kwargs["params"])
    headers = {"Host": host, **kwargs.get("headers", {})}
    body = b""
    if "json" in kwargs:
        body = json.dumps(kwargs["json"]).encode()
        headers.setdefault("Content-Type", "application/json")
    if body or method in ("POST", "PUT", "PATCH"):
        headers["Content-Length"] = str(len(body))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode("latin-1") + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split(b" ", 2)[1])
    length: int | None = None
    chunked = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            length = int(value)
        elif key == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            parts.append(await reader.readexactly(size))
            await reader.readline()
        return status, b"".join(parts)
    return status, (await reader.readexactly(length) if length else b"")


async def run(
    base: str, n_requests: int, make: Callable[[int], Request], clients: int, errors: list[str] | None = None
) -> tuple[float, list[float]]:
    """``n_requests`` requests over ``clients`` keep-alive connections; (rate/s, latencies in ms).

    An unexpected status fails the run, or, with ``errors`` given, is counted there."""
    url = urlsplit(base)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    prefix = url.path.rstrip("/")
    latencies: list[float] = []
    todo = iter(range(n_requests))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in todo:
                method, path, kwargs, ok = make(i)
                data = encode(method, prefix + path, f"{host}:{port}", kwargs)
                t = time.perf_counter()
                writer.write(data)
                status, body = await _read_response(reader)
                latencies.append((time.perf_counter() - t) * 1000)
                if status != ok:
                    if errors is None:
                        raise AssertionError(f"{method} {path}: {status} {body[:300]!r}")
                    errors.append(f"{status} {body[:200]!r}")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return n_requests / (time.perf_counter() - started), latencies
