"""The daemon's app over ASGI: a read through the gateway, an error as JSON."""

from __future__ import annotations

from pathlib import Path

import anyio
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


@pytest.mark.anyio
async def test_followers_see_a_write_of_the_daemon(gateway: Gateway) -> None:
    from iovctl.services import api

    await gateway.read(api.host_show)  # the state directory exists
    seen: list[str] = []
    async with anyio.create_task_group() as tg:

        async def follow() -> None:
            async for batch in gateway.follow_events(since=await gateway.read(api.newest_event)):
                seen.extend(e.code for e in batch)
                tg.cancel_scope.cancel()

        tg.start_soon(follow)
        await anyio.sleep(0.05)
        await gateway.write(lambda c: api.switch_create(c, "sw0", "enp1s0", False))
    assert "switch-created" in seen
