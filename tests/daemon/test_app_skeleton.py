"""The daemon's app over ASGI: a read through the gateway, an error as JSON."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from iovctl.errors import Conflict, InvalidInput, NotFound
from iovctl.http.app import create_app
from iovctl.http.errors import status_of
from iovctl.http.gateway import Gateway
from iovctl.wiring import Options


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    return Gateway(Options(state_dir=tmp_path / "state", sim="demo"))


@pytest.mark.anyio
async def test_host_is_the_json_the_cli_prints(gateway: Gateway) -> None:
    app = create_app(gateway)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://iovctl"
    ) as client:
        got = await client.get("/api/v1/host")
    assert got.status_code == 200
    assert {"adapters", "iov_support"} <= set(got.json())


def test_error_families_have_their_status() -> None:
    assert status_of(InvalidInput("x", "m")) == 400
    assert status_of(NotFound("x", "m")) == 404
    assert status_of(Conflict("x", "m")) == 409
