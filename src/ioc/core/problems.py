"""RFC 7807 problem details: the error format of every API that has no standard of its own."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://vinh-ioc.example/problems/"

_TITLES = {
    400: "Yêu cầu không hợp lệ (Bad Request)",
    401: "Chưa xác thực (Unauthorized)",
    403: "Không có quyền (Forbidden)",
    404: "Không tìm thấy (Not Found)",
    405: "Phương thức không được hỗ trợ (Method Not Allowed)",
    409: "Xung đột (Conflict)",
    413: "Nội dung quá lớn (Payload Too Large)",
    415: "Kiểu nội dung không được hỗ trợ (Unsupported Media Type)",
    422: "Dữ liệu không hợp lệ (Unprocessable Content)",
    429: "Quá nhiều yêu cầu (Too Many Requests)",
    500: "Lỗi máy chủ (Internal Server Error)",
    503: "Dịch vụ chưa sẵn sàng (Service Unavailable)",
}


class Problem(Exception):
    """An error answered as ``application/problem+json``.

    ``code`` is a short machine-readable slug; it becomes the problem ``type`` URI.
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code or _default_code(status)
        self.title = title or _TITLES.get(status, "Lỗi")
        self.headers = headers
        self.extra = extra

    def to_dict(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


def _default_code(status: int) -> str:
    return {
        400: "bad-request",
        401: "unauthorized",
        403: "forbidden",
        404: "not-found",
        405: "method-not-allowed",
        409: "conflict",
        413: "payload-too-large",
        415: "unsupported-media-type",
        422: "validation-error",
        429: "too-many-requests",
        503: "unavailable",
    }.get(status, "error")


def problem_response(problem: Problem, request: Request | None = None) -> JSONResponse:
    return JSONResponse(
        problem.to_dict(request.url.path if request else None),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=problem.headers,
    )


async def handle_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(exc, request)


async def handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    headers = dict(exc.headers) if exc.headers else None
    return problem_response(Problem(exc.status_code, detail, headers=headers), request)


async def handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": [str(part) for part in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in exc.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid"}
    where = ".".join(str(p) for p in first["loc"])
    problem = Problem(
        422, f"Dữ liệu không hợp lệ tại '{where}': {first['msg']}", code="validation-error", errors=errors
    )
    return problem_response(problem, request)


async def handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    """Any error nobody foresaw: logged with its traceback, answered as a 500 problem without details."""
    import logging

    logging.getLogger("ioc.errors").error(
        "unhandled error", exc_info=exc, extra={"path": request.url.path, "method": request.method}
    )
    problem = Problem(500, "Lỗi máy chủ; sự cố đã được ghi lại (internal error, logged).", code="internal-error")
    return problem_response(problem, request)
