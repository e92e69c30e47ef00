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
from fastapi.routing import APIRoute
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
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


class NgsiRoute(APIRoute):
    """An APIRoute whose every error is answered as NGSI-LD ProblemDetails.

    A trailing ``/`` is not significant in NGSI-LD paths (``/entities/`` is ``/entities``,
    ``/entities/{id}/attrs/`` is ``/entities/{id}/attrs``): clients, the ETSI conformance suite
    among them, build URLs both ways, so routes match the path without it.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        # The path up to its first parameter: a request path that does not hold it cannot match,
        # and is turned away without the route's regular expression (a request is tried against
        # the routes one after another).
        self.literal_prefix = self.path.split("{", 1)[0]

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope.get("type") == "http":
            path = scope.get("path", "")
            if self.literal_prefix not in path:
                # (the path the route sees is the request's without root_path: a part of it)
                return Match.NONE, {}
            if len(path) > 1 and path.endswith("/") and "/ngsi-ld/" in path:
                scope = {**scope, "path": path.rstrip("/") or "/"}
        return super().matches(scope)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            if request.method in _BODY_METHODS and "content-length" not in request.headers:
                # §6.3.4: a POST, PATCH or PUT without Content-Length is "just a 411 HTTP status code
                # (without any payload body)", decided before anything else (tenant included).
                return Response(status_code=411)
            try:
                response = await original(request)
            except Exception as exc:  # every error of the NGSI-LD API has the NGSI-LD shape
                response = convert(exc).response()
            tenant = request.headers.get("ngsild-tenant")
            if tenant and "ngsild-tenant" not in response.headers:
                # §6.3.14: the Tenant of the request is given back in the response, errors included.
                response.headers["NGSILD-Tenant"] = tenant
            return response

        return handler
