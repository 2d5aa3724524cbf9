"""The one table from errors to HTTP answers.

Every error answers ``{"errorType": ..., "errorMessage": ...}`` with the status of its
class in :mod:`faasbox.errors` and the header ``X-Amzn-ErrorType`` (docs/api.md).
Request validation errors become ``400 InvalidParameterValueException``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from faasbox.errors import FaasboxError, InvalidParameterError

log = logging.getLogger("faasbox.server")

#: errorType for plain HTTP errors raised by routing itself (unknown path, method...).
_HTTP_CODES = {
    400: "InvalidRequestContentException",  # e.g. a body that is not JSON
    404: "ResourceNotFoundException",
    405: "MethodNotAllowedException",
    413: "RequestTooLargeException",
}


def error_response(code: str, message: str, status: int) -> JSONResponse:
    return JSONResponse(
        {"errorType": code, "errorMessage": message},
        status_code=status,
        headers={"X-Amzn-ErrorType": code},
    )


def _faasbox_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FaasboxError)
    return error_response(exc.code, exc.message, exc.http_status)


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err.get("loc", ()) if part != "body")
        problems.append(f"{where}: {err.get('msg', 'invalid')}" if where else err["msg"])
    message = "invalid request: " + "; ".join(problems)
    return error_response(InvalidParameterError.code, message, InvalidParameterError.http_status)


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    # a 4xx is the caller's: never labelled as the service's own fault
    default = "InvalidRequestException" if exc.status_code < 500 else "ServiceException"
    code = _HTTP_CODES.get(exc.status_code, default)
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 400 and message == "There was an error parsing the body":
        message = "the request body could not be parsed: not JSON, not UTF-8, or too deeply nested"
    if exc.status_code == 404:
        message = f"no such resource: {request.method} {request.url.path}"
    response = error_response(code, message, exc.status_code)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response("ServiceException", f"internal error: {type(exc).__name__}", 500)


def install(app: FastAPI) -> None:
    """Register every error handler of the API on ``app``."""
    app.add_exception_handler(FaasboxError, _faasbox_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
