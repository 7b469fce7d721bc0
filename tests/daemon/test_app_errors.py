"""Errors of every origin in the one shape, in-process (ASGI): the framework's own
request validation (a router of the console or the metrics may use typed
parameters), an unknown route, and a bug."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter

from iovctl.http.app import create_app
from iovctl.http.gateway import Gateway
from iovctl.wiring import Options


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_framework_errors_are_iovctl_errors(tmp_path: Path) -> None:
    app = create_app(Gateway(Options(state_dir=tmp_path / "state", sim="demo")))
    extra = APIRouter()

    @extra.get("/typed")
    async def typed(count: int) -> dict[str, int]:
        return {"count": count}

    @extra.get("/bug")
    async def bug() -> None:
        raise RuntimeError("boom")

    app.include_router(extra)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as c:
        got = await c.get("/typed?count=many")
        assert got.status_code == 400
        assert got.json()["error"]["code"] == "usage" and "count" in got.json()["error"]["message"]
        assert (await c.get("/typed?count=3")).json() == {"count": 3}
        got = await c.get("/bug")
        assert got.status_code == 500 and got.json()["error"]["code"] == "internal"
        got = await c.post("/api/v1/host")
        assert got.status_code == 405 and got.json()["error"]["code"] == "method-not-allowed"
