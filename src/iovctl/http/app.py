"""The daemon's ASGI application: the API, the console and the metrics, mounted per
socket role.

``create_app(gateway, role)``: the admin socket serves everything; the read-only
socket (``role="reader"``) the same reads and no mutation (403 ``read-only``). With
``tokens`` (the TCP listener) each request's role is its bearer token's
(:mod:`iovctl.http.auth`). Each part is a module with
``router(gateway, role) -> APIRouter``. Every error, the framework's own included
(unknown route, wrong method, a malformed request), is ``{"error": {...}}``.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from iovctl import __version__
from iovctl.domain.text import shown
from iovctl.errors import IovctlError
from iovctl.http.auth import Role, authenticate
from iovctl.http.errors import error_body, status_of
from iovctl.http.gateway import Gateway
from iovctl.http.tokens import TokenStore

__all__ = ["Role", "create_app"]

#: The framework's statuses, as iovctl error codes.
_HTTP_CODES = {404: "not-found", 405: "method-not-allowed"}


def create_app(gateway: Gateway, role: Role = "admin", tokens: TokenStore | None = None) -> FastAPI:
    from iovctl.http import api_v1
    from iovctl.http import metrics as metrics_v1

    app = FastAPI(
        title="iovctl",
        version=__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(authenticate)],
        redirect_slashes=False,
    )
    app.state.gateway = gateway
    app.state.role = role
    app.state.tokens = tokens

    @app.exception_handler(IovctlError)
    async def _iovctl_error(request: Request, exc: IovctlError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.code == "unauthorized" else None
        return JSONResponse(error_body(exc), status_code=status_of(exc), headers=headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, f"http-{exc.status_code}")
        if exc.status_code == 404:
            message = f"no route {shown(request.url.path, 200)}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {shown(request.url.path, 200)}"
        else:
            message = str(exc.detail)
        error = IovctlError(code, message, "see the API's routes: /api/v1/openapi.json")
        return JSONResponse(error_body(error), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        where = "; ".join(
            f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in exc.errors()
        )
        error = IovctlError(
            "usage", shown(where, 500), "see the API's schema: /api/v1/openapi.json"
        )
        return JSONResponse(error_body(error), status_code=400)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        error = IovctlError(
            "internal",
            f"{type(exc).__name__}: {shown(str(exc), 300)}",
            "this is a bug in iovctl; see the daemon's log and report it",
        )
        return JSONResponse(error_body(error), status_code=500)

    app.include_router(api_v1.router(gateway, role))
    from iovctl.http import console

    app.include_router(console.router(gateway, role))
    app.include_router(metrics_v1.router(gateway, role))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(api_v1.SCHEMAS)
            schemas["Error"] = api_v1.ERROR_SCHEMA
            schemas["Operation"] = api_v1.OPERATION_SCHEMA
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
