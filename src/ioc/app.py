"""The application factory: ``create_app(settings)`` builds the service without touching any I/O.

The database is only connected to, and the event bus only started, when the app starts
serving (the lifespan).
"""

from __future__ import annotations

import gc
import importlib
import logging
import pkgutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import ioc.modules
from ioc import __version__
from ioc.api import admin_units, alarms, auth, events, ops
from ioc.core.auth import AccessPolicy, LoginThrottle, Role
from ioc.core.db import Database
from ioc.core.events import EventBus
from ioc.core.jobs import Scheduler
from ioc.core.mqtt import MqttPublisher, bridge_handler
from ioc.core.problems import (
    Problem,
    handle_http_exception,
    handle_problem,
    handle_unexpected,
    handle_validation_error,
    problem_response,
)
from ioc.core.registry import ModuleContext, Registry
from ioc.settings import Settings

log = logging.getLogger("ioc.app")


def available_modules() -> list[str]:
    """The module packages shipped in ``ioc.modules``."""
    return sorted(info.name for info in pkgutil.iter_modules(ioc.modules.__path__) if info.ispkg)


def load_modules(ctx_factory: Callable[[str], ModuleContext], names: list[str]) -> None:
    """Import each module and call its ``setup(ctx)``."""
    for name in names:
        module = importlib.import_module(f"ioc.modules.{name}")
        setup = getattr(module, "setup", None)
        if not callable(setup):
            raise RuntimeError(f"module ioc.modules.{name} has no setup(ctx)")
        ctx = ctx_factory(name)
        setup(ctx)
        ctx.registry.modules.append(name)


class BodyLimit:
    """Refuse request bodies above the limit (413, RFC 7807) before the app reads them."""

    def __init__(self, app: ASGIApp, default: int, per_prefix: dict[str, int]) -> None:
        self.app = app
        self.default = default
        self.per_prefix = per_prefix

    def limit_for(self, path: str) -> int:
        best = ("", self.default)
        for prefix, limit in self.per_prefix.items():
            if path.startswith(prefix) and len(prefix) > len(best[0]):
                best = (prefix, limit)
        return best[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        too_big = Problem(413, f"Nội dung vượt quá {limit} byte (request body too large).", code="payload-too-large")
        if declared is not None:
            try:
                if int(declared) > limit:
                    await problem_response(too_big)(scope, receive, send)
                    return
            except ValueError:
                await problem_response(Problem(400, "Content-Length không hợp lệ."))(scope, receive, send)
                return
        received = 0
        response_started = False
        rejected = False

        async def limited_receive() -> Message:
            # Past the limit, answer 413 ourselves and tell the app the client went away, so the
            # app never sees the rest of the body and whatever it answers is dropped.
            nonlocal received, rejected, response_started
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    rejected = True
                    if not response_started:
                        response_started = True
                        await problem_response(too_big)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if rejected:
                return
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, limited_receive, guarded_send)


class SecurityHeadersAndAccessLog:
    """Security headers on every response and one access-log line per request (plain ASGI: no extra task)."""

    QUIET_PATHS = frozenset({"/healthz", "/readyz"})

    def __init__(self, app: ASGIApp, csp: str) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", csp.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"),
            (b"x-frame-options", b"DENY"),
        ]
        self.log = logging.getLogger("ioc.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in self.headers if name not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            if scope["path"] not in self.QUIET_PATHS:
                client = scope.get("client")
                self.log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "ms": round((time.perf_counter() - started) * 1000, 1),
                        "client": client[0] if client else None,
                    },
                )


def _content_security_policy(settings: Settings) -> str:
    img = ["'self'", "data:", "blob:"]
    if settings.map.tile_url:
        parts = urlsplit(settings.map.tile_url.replace("{s}", "a"))
        if parts.scheme and parts.netloc:
            host = parts.netloc.replace("a.", "*.", 1) if "{s}" in settings.map.tile_url else parts.netloc
            img.append(f"{parts.scheme}://{host}")
    return (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        f"img-src {' '.join(img)}; font-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'self'; form-action 'self'"
    )


MACHINE_PREFIXES = ("/api/", "/ngsi-ld/", "/open311/", "/healthz", "/readyz", "/openapi.json", "/static/")
ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]


def _browser_aware(handler: ExceptionHandler) -> ExceptionHandler:
    """A person navigating to a page gets an HTML error page; every API keeps its problem document."""

    async def handle(request: Request, exc: Exception) -> Response:
        wants_html = "text/html" in request.headers.get("accept", "")
        if wants_html and request.method == "GET" and not request.url.path.startswith(MACHINE_PREFIXES):
            from ioc.web.routes import render_error

            status = exc.status if isinstance(exc, Problem) else getattr(exc, "status_code", 500)
            return render_error(request, status)
        return await handler(request, exc)

    return handle


#: The collector's thresholds in a serving process: a young collection every 10,000 container
#: allocations instead of 700. A batch of 1,000 entities allocates some 10^6 objects, most of them
#: alive until the request ends; at 700 the collector walked them again and again, ~10 % of the
#: batch even with the heap frozen (docs/PERFORMANCE.md). Cyclic garbage waits a little longer.
SERVING_GC_THRESHOLDS = (10_000, 10, 10)


def create_app(settings: Settings | None = None, *, freeze_heap: bool = False) -> FastAPI:
    """Build the IOC service for ``settings`` (from the environment when omitted).

    ``freeze_heap`` (a serving process): once started, what was built to serve (modules, routes,
    contexts, caches), which lives as long as the process, is frozen out of the garbage
    collector's full passes, which would otherwise walk all of it again every few thousand
    allocations (a pause of ~100 ms in the middle of a request); and the collector runs less
    often (``SERVING_GC_THRESHOLDS``).
    """
    settings = settings or Settings()
    settings.check_for_start()
    db = Database(settings.database_url)
    bus = EventBus(db, poll_seconds=settings.events_poll_seconds, round_gap_seconds=settings.events_round_gap_seconds)
    registry = Registry()
    policy = AccessPolicy()
    scheduler = Scheduler(
        db, tick_seconds=settings.jobs.tick_seconds, first_delay_seconds=settings.jobs.first_delay_seconds
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        publisher: MqttPublisher | None = None
        if settings.mqtt.url:
            publisher = MqttPublisher(settings.mqtt.url, client_id=f"ioc-bridge-{uuid.uuid4().hex[:8]}")
            bus.consume("mqtt-bridge", "*", bridge_handler(publisher, settings.mqtt.topic_prefix), start="latest")
        await db.open_loop_reads()
        db.start_checkpoints()
        bus.start()
        if settings.jobs.enabled:
            scheduler.start()
        if freeze_heap:
            gc.collect()
            gc.freeze()
            gc.set_threshold(*SERVING_GC_THRESHOLDS)
        log.info("ioc started", extra={"version": __version__, "database": db.dialect, "modules": registry.modules})
        try:
            yield
        finally:
            scheduler.stop()
            bus.stop()
            if publisher:
                publisher.close()
            await db.close_loop_reads()
            db.dispose()

    app = FastAPI(
        title="Vinh IOC",
        version=__version__,
        description="Trung tâm điều hành đô thị thông minh — Intelligent Operations Center of Vinh",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        # FastAPI's native OpenTelemetry: the IOC configures no provider, and looking for one
        # (three global lookups) on every request cost ~2 % of a read by key
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.db = db
    app.state.bus = bus
    app.state.registry = registry
    app.state.policy = policy
    app.state.scheduler = scheduler
    app.state.login_throttle = LoginThrottle(settings.login_attempts_per_minute)

    app.add_exception_handler(Problem, _browser_aware(handle_problem))
    app.add_exception_handler(StarletteHTTPException, _browser_aware(handle_http_exception))
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(Exception, handle_unexpected)

    names = settings.modules if settings.modules is not None else available_modules()
    load_modules(lambda name: ModuleContext(name, settings, db, bus, registry), names)
    for perm, description in registry.permissions.items():
        policy.add(perm, description)
    for role, perms in registry.grants.items():
        for perm in perms:
            if perm not in policy.permissions:
                raise RuntimeError(f"role {role} granted the undeclared permission {perm!r}")
            policy.grants[Role(role)].add(perm)

    registry.allow_body(admin_units.BULK_LOCATE_PATH, admin_units.MAX_BULK_BODY_BYTES)
    # The NGSI-LD routers first (in their own order): no other route lives under /ngsi-ld/, and
    # routes are matched one after another, so the broker's requests skip the API's routes.
    ngsi = [(r, p) for r, p in registry.routers if (p + r.prefix).startswith("/ngsi-ld/")]
    for router, prefix in ngsi:
        app.include_router(router, prefix=prefix)
    for router in (ops.router, auth.router, admin_units.router, alarms.router, events.router):
        app.include_router(router)
    for router, prefix in registry.routers:
        if (router, prefix) not in ngsi:
            app.include_router(router, prefix=prefix)
    # the modules' direct routes before every router's
    app.router.routes[:0] = registry.routes
    scheduler.jobs.extend(registry.jobs.values())

    from ioc.web.routes import mount_web

    mount_web(app)

    csp = _content_security_policy(settings)
    app.add_middleware(SecurityHeadersAndAccessLog, csp=csp)
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key,
        session_cookie="ioc_session",
        max_age=settings.session_hours * 3600,
        same_site="lax",
        https_only=settings.env == "production",
    )
    app.add_middleware(BodyLimit, default=settings.max_body_bytes, per_prefix=registry.body_limits)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (several workers): settings from the environment."""
    return create_app(Settings(), freeze_heap=True)
