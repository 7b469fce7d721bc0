"""The daemon's ASGI application: the API, the console and the metrics, mounted per
socket role.

``create_app(gateway, role)``: the admin socket serves everything; the read-only
socket (``role="reader"``) the same reads and no mutation. Each part is a module with
``router(gateway, role) -> APIRouter``.
"""

from __future__ import annotations

from typing import Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from iovctl import __version__
from iovctl.errors import IovctlError
from iovctl.http.errors import error_body, status_of
from iovctl.http.gateway import Gateway

Role = Literal["admin", "reader"]


def create_app(gateway: Gateway, role: Role = "admin") -> FastAPI:
    from iovctl.http import api_v1
    from iovctl.http import metrics as metrics_v1

    app = FastAPI(title="iovctl", version=__version__, openapi_url="/api/v1/openapi.json")
    app.state.gateway = gateway
    app.state.role = role

    @app.exception_handler(IovctlError)
    async def _iovctl_error(request: Request, exc: IovctlError) -> JSONResponse:
        return JSONResponse(error_body(exc), status_code=status_of(exc))

    app.include_router(api_v1.router(gateway, role))
    from iovctl.http import console

    app.include_router(console.router(gateway, role))
    app.include_router(metrics_v1.router(gateway, role))
    return app
