"""A client that goes away mid-write loses nothing: the write runs to its end in its
worker thread (Gateway.write is never cancelled) and the next reader sees it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

from iovctl.http.app import create_app
from iovctl.http.gateway import Gateway
from iovctl.http.sockets import bind_unix
from iovctl.services.context import Context
from iovctl.wiring import Options

T = TypeVar("T")


class HeldGateway(Gateway):
    """Writes stop at their start until released (a VF count change, a hot-plug)."""

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.finished: list[Any] = []

    def call(self, call: Callable[[Context], T], *, writes: bool) -> T:
        if writes:
            self.entered.set()
            assert self.release.wait(30), "never released"
        result = super().call(call, writes=writes)
        if writes:
            self.finished.append(result)
        return result


@pytest.fixture
def served(short_dir: Path) -> Iterator[tuple[HeldGateway, Path]]:
    gateway = HeldGateway(Options(state_dir=short_dir / "state", sim="demo"))
    gateway.call(lambda c: None, writes=False)
    path = short_dir / "a.sock"
    sock, _ = bind_unix(path, 0o600)
    server = uvicorn.Server(uvicorn.Config(create_app(gateway), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield gateway, path
    gateway.release.set()
    server.should_exit = True
    thread.join(10)
    sock.close()


def test_a_write_whose_client_hung_up_still_happens(served: tuple[HeldGateway, Path]) -> None:
    gateway, path = served
    body = b'{"name": "vm1"}'
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(str(path))
    raw.sendall(
        b"POST /api/v1/vms HTTP/1.1\r\nHost: iovctl\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    assert gateway.entered.wait(10), "the write never started"
    raw.close()  # the client is gone while the write is under way
    time.sleep(0.2)  # the server has seen the hang-up
    assert gateway.finished == []
    gateway.release.set()
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://x") as c:
        deadline = time.monotonic() + 10
        while not gateway.finished and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [vm["name"] for vm in c.get("/api/v1/vms").json()] == ["vm1"]
        codes = [e["code"] for e in c.get("/api/v1/events").json()]
    assert "vm-created" in codes
    assert len(gateway.finished) == 1
