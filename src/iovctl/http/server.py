"""``iovctl daemon``: the HTTP API on its sockets, until SIGTERM or SIGINT.

One process, one event loop, one uvicorn server per socket (each serves the app of
its role). On a signal every server stops taking requests, the writes under way
finish (their threads are never abandoned), the ``?wait=false`` operations too,
then the sockets are removed and the state directory's lock is let go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from iovctl.adapters.daemon_lock import DaemonLock
from iovctl.errors import InvalidInput
from iovctl.http.app import create_app
from iovctl.http.follower import Follower
from iovctl.http.gateway import Gateway
from iovctl.http.sockets import ADMIN_GROUP, bind_tcp, bind_unix
from iovctl.http.tokens import TokenStore
from iovctl.services import api
from iovctl.services.failover_watch import BOUND_S
from iovctl.wiring import Options

log = logging.getLogger("iovctl.daemon")

#: Seconds the servers give open connections (event streams) to end on shutdown.
GRACE_SECONDS = 3
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    options: Options
    socket: Path
    read_socket: Path | None
    listen: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Seconds a guest may take to use its VF (services.failover_watch).
    failover_wait: float = BOUND_S


class _Server(uvicorn.Server):
    """Signals are the daemon's to handle (one handler stops every server)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def check(config: DaemonConfig) -> None:
    if config.listen is not None and (config.tls_cert is None or config.tls_key is None):
        raise InvalidInput(
            "tls-required",
            "--listen needs --tls-cert and --tls-key: the API is never served in clear text over TCP",
            "give a certificate and its key (bearer tokens: iovctl token add NAME --role reader)",
        )
    if config.listen is None and (config.tls_cert or config.tls_key):
        raise InvalidInput(
            "tls-without-listen", "--tls-cert/--tls-key need --listen", "add --listen HOST:PORT"
        )
    if config.failover_wait < 1:
        raise InvalidInput(
            "invalid-failover-wait",
            f"--failover-wait {config.failover_wait:.0f} is too short for any guest to boot",
            "give the seconds a guest may take to use its VF, at least 1 (default 300)",
        )
    for path in (config.tls_cert, config.tls_key):
        if path is not None and not path.is_file():
            raise InvalidInput("tls-file-missing", f"no file {path}", "give the PEM file's path")


def serve(config: DaemonConfig) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code."""
    check(config)
    logging.basicConfig(level=logging.INFO, format="iovctl daemon: %(message)s")
    # From here on a signal stops the daemon cleanly, even before it serves.
    early: list[int] = []
    previous = {sig: signal.signal(sig, lambda n, f: early.append(n)) for sig in STOP_SIGNALS}
    gateway = Gateway(config.options)
    gateway.call(api.host_show, writes=False)  # the state directory, bound to its host
    state_dir = config.options.state_dir
    assert state_dir is not None
    lock = DaemonLock(state_dir)
    lock.acquire(str(config.socket))
    bound: list[tuple[socket.socket, Path | None]] = []
    said: list[str] = []  # logged once every socket is bound: a refusal comes alone
    follower = Follower(gateway, failover_bound=config.failover_wait)
    try:
        admin, who = bind_unix(config.socket, 0o660, ADMIN_GROUP)
        bound.append((admin, config.socket))
        said.append(f"admin socket {who}")
        plan: list[tuple[socket.socket, FastAPI, DaemonConfig | None]] = [
            (admin, create_app(gateway, "admin"), None)
        ]
        if config.read_socket is not None:
            reader, who = bind_unix(config.read_socket, 0o666)
            bound.append((reader, config.read_socket))
            said.append(f"read-only socket {who}")
            plan.append((reader, create_app(gateway, "reader"), None))
        if config.listen is not None:
            tcp = bind_tcp(config.listen)
            bound.append((tcp, None))
            said.append(f"TLS on {config.listen}, bearer tokens of {TokenStore(state_dir).path}")
            plan.append((tcp, create_app(gateway, "reader", TokenStore(state_dir)), config))
        for line in said:
            log.info("%s", line)
        log.info("serving state directory %s", state_dir)
        # Holds the lock already: its writes are the daemon's, through the gateway.
        follower.start()
        asyncio.run(_run(gateway, plan, early))
    finally:
        follower.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sock, path in bound:
            sock.close()
            if path is not None:
                path.unlink(missing_ok=True)
        lock.release()
    log.info("stopped")
    return 0


async def _run(
    gateway: Gateway,
    plan: list[tuple[socket.socket, FastAPI, DaemonConfig | None]],
    early: list[int],
) -> None:
    servers: list[tuple[_Server, socket.socket]] = []
    for sock, app, tls in plan:
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=GRACE_SECONDS,
            ssl_certfile=str(tls.tls_cert) if tls and tls.tls_cert else None,
            ssl_keyfile=str(tls.tls_key) if tls and tls.tls_key else None,
        )
        servers.append((_Server(config), sock))
    loop = asyncio.get_running_loop()

    def stop(sig: int) -> None:
        log.info("%s: stopping", signal.Signals(sig).name)
        gateway.end_follows()
        for server, _ in servers:
            server.should_exit = True

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop, sig)
    for number in early:
        stop(number)
    try:
        await asyncio.gather(*(server.serve(sockets=[sock]) for server, sock in servers))
        await gateway.operations.drain()
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
