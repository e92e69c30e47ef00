"""Serving with several worker processes, each accepting on a listening socket of its own.

uvicorn's ``--workers`` hands one listening socket to every worker, and whichever worker wakes
first accepts what is waiting: a burst of new keep-alive connections (16 clients opening at
once, a reverse proxy's upstream pool) mostly lands on one worker, which then serves them all
for their lifetime while the others idle. Here each worker gets its own socket bound to the
same address with ``SO_REUSEPORT``, and the kernel spreads new connections over the sockets by
their addresses. The parent supervises: a worker that dies is started again on its socket. A
worker that fails on its own before any has served (the app cannot start: a setting, the code)
stops the server, as it would fail the same way again; one that ends before it serves once the
server has served (killed while starting, the database away a moment) is started again after a
wait that doubles up to 30 s. SIGINT or SIGTERM stops every worker gracefully (uvicorn's own
shutdown), then the parent. Where the platform has no ``SO_REUSEPORT``, or with one worker,
uvicorn serves as it is.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

import uvicorn

log = logging.getLogger("ioc.serving")

#: Pending connections each worker's socket queues (uvicorn's default).
BACKLOG = 2048
#: The longest wait before another worker is started in place of one that ended before it served.
RETRY_MAX_SECONDS = 30.0
#: How long a worker may take to finish its requests once asked to stop.
STOP_SECONDS = 30.0
#: uvicorn's exit code for a server that could not start (``uvicorn.config.STARTUP_FAILURE``).
STARTUP_FAILURE = 3


def serve(app: str, *, host: str, port: int, workers: int, **options: Any) -> int:
    """Serve the app factory ``app`` ("module:function") with ``workers`` processes; the exit code."""
    if workers <= 1 or not hasattr(socket, "SO_REUSEPORT"):
        uvicorn.run(app, factory=True, host=host, port=port, workers=workers, **options)
        return 0
    uvicorn.Config(app, factory=True, **options)  # configures logging, as in every worker
    first = listening_socket(host, port)
    port = first.getsockname()[1]  # port 0: the one the kernel chose, for every socket
    sockets = [first, *(listening_socket(host, port) for _ in range(workers - 1))]
    return _Supervisor(app, sockets, options).run()


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on (host, port) that other sockets may bind too (``SO_REUSEPORT``)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
        0
    ]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _worker(app: str, sock: socket.socket, options: dict[str, Any], ready: Any) -> None:  # pragma: no cover - a child
    """One worker: uvicorn on its own socket; ``ready`` is set once it serves (startup complete)."""
    server = uvicorn.Server(uvicorn.Config(app, factory=True, **options))

    def tell_when_serving() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            ready.set()

    threading.Thread(target=tell_when_serving, daemon=True).start()
    server.run(sockets=[sock])
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)


@dataclass
class _Slot:
    """A listening socket and the worker serving it (None while waiting to start another)."""

    sock: socket.socket
    process: BaseProcess | None = None
    serving: Any = None  # the worker's event: set once it serves
    failures: int = 0  # workers in a row that ended before they served
    start_at: float = 0.0


class _Supervisor:
    def __init__(self, app: str, sockets: list[socket.socket], options: dict[str, Any]) -> None:
        self.app = app
        self.slots = [_Slot(sock) for sock in sockets]
        self.options = options
        self.context = multiprocessing.get_context("spawn")
        self.stopping = threading.Event()
        self.served = False  # a worker has served: the app and its settings can start

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stopping.set())
        host, port = self.slots[0].sock.getsockname()[:2]
        log.info("serving on %s:%s with %d workers, one listening socket each", host, port, len(self.slots))
        for slot in self.slots:
            self._start(slot)
        code = 0
        while not self.stopping.wait(0.5) and code == 0:
            for slot in self.slots:
                code = self._look_after(slot)
                if code:
                    break
        self._stop_all()
        for slot in self.slots:
            slot.sock.close()
        return code

    def _look_after(self, slot: _Slot) -> int:
        """Start, note or replace the worker of ``slot``; 1 when the server must stop."""
        if slot.process is None:
            if time.monotonic() >= slot.start_at:
                self._start(slot)
            return 0
        if slot.serving.is_set():
            self.served, slot.failures = True, 0
        if slot.process.is_alive():
            return 0
        pid, exitcode = slot.process.pid, slot.process.exitcode
        if slot.serving.is_set():
            log.warning("worker %s exited (code %s): starting another", pid, exitcode)
            self._start(slot)
            return 0
        if not self.served and (exitcode or 0) > 0:  # it failed on its own, and would again
            log.error("worker %s failed to start (exit code %s): stopping", pid, exitcode)
            return 1
        slot.failures += 1
        delay = min(RETRY_MAX_SECONDS, 2.0 ** (slot.failures - 1))
        log.error("worker %s ended before it served (exit code %s): another in %.0f s", pid, exitcode, delay)
        slot.process, slot.start_at = None, time.monotonic() + delay
        return 0

    def _start(self, slot: _Slot) -> None:
        slot.serving = self.context.Event()
        slot.process = self.context.Process(
            target=_worker, args=(self.app, slot.sock, self.options, slot.serving), daemon=False
        )
        slot.process.start()

    def _stop_all(self) -> None:
        running = [slot.process for slot in self.slots if slot.process is not None]
        for process in running:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        deadline = time.monotonic() + STOP_SECONDS
        for process in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("worker %s did not stop in %.0f s: killed", process.pid, STOP_SECONDS)
                process.kill()
                process.join()
