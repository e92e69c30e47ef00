"""NGSI-LD ProblemDetails (ETSI GS CIM 009 §5.5.2 and table 5.5.2-1) and the route class that answers them.

Everything under ``/ngsi-ld`` answers errors in this shape, never the core's RFC 7807 documents:
:class:`NgsiRoute` catches the module's :class:`NgsiError`, the core's ``Problem`` (raised by the
authentication dependencies), FastAPI's validation errors and HTTP exceptions, and turns each
into a ProblemDetails body with the spec's ``type`` URI, served as ``application/json``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, APIRouter
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route
from starlette.types import Scope

from ioc.core.problems import Problem

log = logging.getLogger("ioc.context")

ERROR_BASE = "https://uri.etsi.org/ngsi-ld/errors/"

#: type name -> (HTTP status, title)
ERROR_TYPES: dict[str, tuple[int, str]] = {
    "InvalidRequest": (400, "Invalid request"),
    "BadRequestData": (400, "Bad request data"),
    "AlreadyExists": (409, "Already exists"),
    "OperationNotSupported": (422, "Operation not supported"),
    "ResourceNotFound": (404, "Resource not found"),
    "InternalError": (500, "Internal error"),
    "TooComplexQuery": (403, "Too complex query"),
    "TooManyResults": (403, "Too many results"),
    "LdContextNotAvailable": (503, "LD context not available"),
    "NoMultiTenantSupport": (501, "No multi-tenant support"),
    "NonexistentTenant": (404, "Nonexistent tenant"),
    "NotAcceptable": (406, "Not acceptable"),
    "UnsupportedMediaType": (415, "Unsupported media type"),
    "Unauthorized": (401, "Unauthorized"),
    "Forbidden": (403, "Forbidden"),
    "PayloadTooLarge": (413, "Payload too large"),
    "MethodNotAllowed": (405, "Method not allowed"),
}


class NgsiError(Exception):
    """An NGSI-LD error: a type of :data:`ERROR_TYPES` and a detail that says what is wrong."""

    def __init__(
        self, type_name: str, detail: str, *, status: int | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        default_status, title = ERROR_TYPES[type_name]
        self.type_name = type_name
        self.status = status or default_status
        self.title = title
        self.detail = detail
        self.headers = headers

    @property
    def type_uri(self) -> str:
        return ERROR_BASE + self.type_name

    def to_dict(self) -> dict[str, Any]:
        """The ProblemDetails object (also used inside batch results)."""
        # The conformance suite checks that title and detail are non-empty and differ.
        detail = self.detail if self.detail and self.detail != self.title else f"{self.title}."
        return {"type": self.type_uri, "title": self.title, "status": self.status, "detail": detail}

    def response(self) -> JSONResponse:
        return JSONResponse(self.to_dict(), status_code=self.status, headers=self.headers)


def bad_request(detail: str) -> NgsiError:
    return NgsiError("BadRequestData", detail)


def invalid_request(detail: str) -> NgsiError:
    return NgsiError("InvalidRequest", detail)


def not_found(detail: str) -> NgsiError:
    return NgsiError("ResourceNotFound", detail)


_STATUS_TYPES = {
    400: "BadRequestData",
    401: "Unauthorized",
    403: "Forbidden",
    404: "ResourceNotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "AlreadyExists",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    422: "BadRequestData",
    503: "LdContextNotAvailable",
}


def from_status(status: int, detail: str, headers: dict[str, str] | None = None) -> NgsiError:
    """An NGSI-LD error for an HTTP status raised by code that does not speak NGSI-LD."""
    type_name = _STATUS_TYPES.get(status, "InternalError" if status >= 500 else "BadRequestData")
    return NgsiError(type_name, detail, status=status, headers=headers)


def convert(exc: Exception) -> NgsiError:
    """Any exception raised while serving an NGSI-LD request, as an :class:`NgsiError`."""
    if isinstance(exc, NgsiError):
        return exc
    if isinstance(exc, Problem):
        return from_status(exc.status, exc.detail, exc.headers)
    if isinstance(exc, RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return bad_request(f"Invalid parameter {where}: {first.get('msg', 'invalid')}")
    if isinstance(exc, StarletteHTTPException):
        headers = dict(exc.headers) if exc.headers else None
        return from_status(exc.status_code, str(exc.detail), headers)
    log.exception("NGSI-LD request failed", exc_info=exc)
    return NgsiError("InternalError", "The broker could not complete the request.")


_BODY_METHODS = frozenset({"POST", "PATCH", "PUT"})


class EntityIdConvertor(Convertor[str]):
    """``{entity_id:entity_id}`` in a route: an entity id (a URI, which may hold ``/``) that has no
    ``/attrs`` segment, where an entity's attributes begin: ``/entities/{id}`` and
    ``/entities/{id}/attrs`` then never take the path of an attribute, in whatever order the
    routes are tried."""

    regex = r"(?:(?!/attrs(?:/|$)).)+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("entity_id", EntityIdConvertor())


class _NgsiPaths:
    """Route matching for NGSI-LD paths, shared by :class:`NgsiRoute` and :class:`DirectRoute`.

    A trailing ``/`` is not significant in NGSI-LD paths (``/entities/`` is ``/entities``,
    ``/entities/{id}/attrs/`` is ``/entities/{id}/attrs``): clients, the ETSI conformance suite
    among them, build URLs both ways, so routes match the path without it. A request path that
    does not hold the route's path up to its first parameter cannot match, and is turned away
    without the route's regular expression (a request is tried against the routes one after
    another).
    """

    path: str
    literal_prefix: str

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope.get("type") == "http":
            path = scope.get("path", "")
            if self.literal_prefix not in path:
                # (the path the route sees is the request's without root_path: a part of it)
                return Match.NONE, {}
            if len(path) > 1 and path.endswith("/") and "/ngsi-ld/" in path:
                scope = {**scope, "path": path.rstrip("/") or "/"}
        matched: tuple[Match, Scope] = super().matches(scope)  # type: ignore[misc]
        return matched


Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]


def answering_ngsi(endpoint: Endpoint) -> Endpoint:
    """``endpoint`` answering as every NGSI-LD route does: a body without ``Content-Length`` is a
    bare 411, every error is ProblemDetails, and the request's tenant is given back."""

    async def handler(request: Request) -> Response:
        if request.method in _BODY_METHODS and "content-length" not in request.headers:
            # §6.3.4: a POST, PATCH or PUT without Content-Length is "just a 411 HTTP status code
            # (without any payload body)", decided before anything else (tenant included).
            return Response(status_code=411)
        try:
            response = await endpoint(request)
        except Exception as exc:  # every error of the NGSI-LD API has the NGSI-LD shape
            response = convert(exc).response()
        tenant = request.headers.get("ngsild-tenant")
        if tenant and "ngsild-tenant" not in response.headers:
            # §6.3.14: the Tenant of the request is given back in the response, errors included.
            response.headers["NGSILD-Tenant"] = tenant
        return response

    return handler


class NgsiRoute(_NgsiPaths, APIRoute):
    """An APIRoute whose every error is answered as NGSI-LD ProblemDetails (:func:`answering_ngsi`)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.literal_prefix = self.path.split("{", 1)[0]

    def get_route_handler(self) -> Endpoint:
        return answering_ngsi(super().get_route_handler())


class DirectRoute(_NgsiPaths, Route):
    """An :class:`NgsiRoute` served by Starlette alone, ahead of every router.

    For the most frequent requests (Retrieve Entity, Update Attributes), whose endpoints take the
    bare ``Request`` and read their own parameters, FastAPI's route machinery (the matching
    through included routers, dependency solving, two exit stacks) cost more than a third of
    the answer. The APIRoute stays in its router: OpenAPI documents it from there, and it
    answers what this one does not match.
    """

    def __init__(self, route: NgsiRoute) -> None:
        d = route.dependant
        if d.dependencies or d.path_params or d.query_params or d.header_params or d.body_params:
            raise ValueError(f"{route.name}: a direct route's endpoint reads its own parameters")
        super().__init__(route.path, answering_ngsi(route.endpoint), name=route.name, include_in_schema=False)
        self.methods = set(route.methods or ())  # GET alone, without the HEAD a Starlette route adds
        self.literal_prefix = route.literal_prefix


def direct_routes(router: APIRouter, names: tuple[str, ...]) -> list[DirectRoute]:
    """The routes of ``router`` named ``names``, served directly (:class:`DirectRoute`)."""
    found = {r.name: r for r in router.routes if isinstance(r, NgsiRoute)}
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"no NGSI-LD route named {missing}")
    return [DirectRoute(found[n]) for n in names]
