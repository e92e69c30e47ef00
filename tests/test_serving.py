"""``ioc serve --workers N``: a listening socket per worker, connections spread over the workers."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from ioc.serving import listening_socket

from .conftest import LiveServer, wait_for


def test_several_sockets_listen_on_one_port() -> None:
    first = listening_socket("127.0.0.1", 0)
    port = first.getsockname()[1]
    second = listening_socket("127.0.0.1", port)
    try:
        assert second.getsockname()[1] == port
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        first.close()
        second.close()


def _workers(server: LiveServer) -> list[int]:
    """The server's worker processes (not multiprocessing's resource tracker)."""
    pids = []
    for child in Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split():
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                pids.append(int(child))
        except OSError:  # exited meanwhile
            continue
    return pids


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _established_to(port: int) -> set[str]:
    """Inodes of the server side of established TCP connections to ``port`` (/proc/net/tcp)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                inodes.add(fields[9])
    return inodes


def _hold_connections(port: int, n: int, inspect: Callable[[], None]) -> None:
    """``n`` keep-alive connections opened at once, each answered once, held open while
    ``inspect`` runs. On an event loop of its own, in a thread of its own: the test's thread may
    already run one (a browser test's Playwright keeps one for the session)."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(_connections(port, n, inspect))
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(120)
    if failures:
        raise failures[0]
    assert not thread.is_alive()


async def _connections(port: int, n: int, inspect: Callable[[], None]) -> None:
    streams = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in range(n)))  # all at once
    try:
        for reader, writer in streams:
            writer.write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            await writer.drain()
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        inspect()
    finally:
        for _, writer in streams:
            writer.close()


def test_keep_alive_connections_are_spread_over_the_workers(start_server: Callable[..., LiveServer]) -> None:
    """16 connections opened at once (as a load test or a proxy's pool would): every worker
    serves some of them. On one shared socket the first worker to wake took nearly all."""
    server = start_server(workers=2)
    wait_for(lambda: len(_workers(server)) == 2, timeout=60)
    workers = _workers(server)
    held: dict[int, int] = {}

    def count() -> None:
        established = _established_to(server.port)
        for pid in workers:
            held[pid] = len(_socket_inodes(pid) & established)

    _hold_connections(server.port, 16, count)
    assert sum(held.values()) == 16, held
    assert all(n > 0 for n in held.values()), held


def test_a_worker_that_dies_is_replaced_and_the_server_stops_whole(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(workers=2)
    wait_for(lambda: len(_workers(server)) == 2, timeout=60)
    first, second = _workers(server)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: first not in _workers(server) and len(_workers(server)) == 2, timeout=60)
    replacement = next(pid for pid in _workers(server) if pid != second)

    held: dict[int, int] = {}

    def count() -> None:
        established = _established_to(server.port)
        for pid in (second, replacement):
            held[pid] = len(_socket_inodes(pid) & established)

    _hold_connections(server.port, 16, count)
    assert held[replacement] > 0 and sum(held.values()) == 16, held  # it serves the dead one's socket
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(60) == 0
    for pid in (second, replacement):  # no worker outlives the server
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_a_worker_that_cannot_start_stops_the_server(tmp_path: Path) -> None:
    """Workers that fail before they serve (here the app cannot be built: no such database
    driver) would fail the same way again: the server stops with an error instead of starting
    them over and over."""
    env = {
        **os.environ,
        "IOC_DATABASE_URL": "nosuchdriver://nowhere/none",
        "IOC_VAR_DIR": str(tmp_path),
        "IOC_SECRET_KEY": "a-secret-for-this-test-only-0123456789abcdef",
    }
    done = subprocess.run(
        [sys.executable, "-m", "ioc", "serve", "--port", "0", "--workers", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "failed to start" in done.stdout + done.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_answers_with_one_or_several_workers(start_server: Callable[..., LiveServer], workers: int) -> None:
    server = start_server(workers=workers)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert conn.recv(64).startswith(b"HTTP/1.1 200")
