"""A console server for tests: uvicorn in a thread on a loopback port, over a
simulated host with a small VF pool that its VMs compete for."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from iovctl.http.app import Role, create_app
from iovctl.http.gateway import Gateway
from iovctl.services import api
from iovctl.wiring import Options


def build_host(gateway: Gateway) -> None:
    """The demo host with a 3-VF pool and four VMs that want it (weights 50, 50, 10,
    80); web1 and web2 run and hold two VFs."""

    def write(call: Any) -> None:
        gateway.call(call, writes=True)

    write(lambda c: api.adapter_enable(c, "enp1s0", 3))
    write(lambda c: api.switch_create(c, "external", "enp1s0", True))
    write(lambda c: api.switch_create(c, "office", "eno1", True))
    for vm, weight in (("web1", 50), ("web2", 50), ("batch", 10), ("db", 80)):
        write(lambda c, vm=vm: api.vm_create(c, vm))
        write(lambda c, vm=vm, w=weight: api.nic_add(c, vm, "external", iov_weight=w))
    write(lambda c: api.vm_start(c, "web1"))
    write(lambda c: api.vm_start(c, "web2"))


def demo_host(base: Path, state_dir: Path) -> Gateway:
    """A fresh copy of :func:`build_host`'s state in ``state_dir``; built once under
    ``base`` (a session's temporary folder), copied for each test."""
    template = base / "console-demo-host"
    if not template.exists():
        build_host(Gateway(Options(state_dir=template / "state", sim="demo")))
    shutil.copytree(template / "state", state_dir)
    return Gateway(Options(state_dir=state_dir))


class ServerThread:
    """uvicorn serving one app on a loopback port it was handed, in a thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.005)

    def stop(self) -> None:
        self.server.should_exit = True

    def join(self) -> None:
        self.thread.join(10)
        self.sock.close()

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.join()


@contextmanager
def serve(gateway: Gateway) -> Iterator[dict[Role, str]]:
    """The console on two ports, as the daemon's two sockets serve it: role -> URL.
    Both stop together (uvicorn looks for the word every 0.1 s)."""
    roles: tuple[Role, ...] = ("admin", "reader")
    servers = [ServerThread(create_app(gateway, role)) for role in roles]
    for s in servers:
        s.start()
    try:
        yield {role: s.url for role, s in zip(roles, servers, strict=True)}
    finally:
        for s in servers:
            s.stop()
        for s in servers:
            s.join()
