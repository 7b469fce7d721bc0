"""``/api/v1``: the same objects as ``-o json``, one route per command."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from iovctl.http.gateway import Gateway
from iovctl.services import api
from iovctl.services.views import to_json


def router(gateway: Gateway, role: str) -> APIRouter:
    r = APIRouter(prefix="/api/v1")

    @r.get("/host")
    async def host() -> Any:
        return to_json(await gateway.read(api.host_show))

    return r
