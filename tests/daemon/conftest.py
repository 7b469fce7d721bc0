"""``iovctl daemon`` as a real process on a simulated host, and clients on its
unix sockets (httpx) or through the CLI (``--connect``)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers import Result, clean_env, run_in_process


def _listening(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


@dataclass
class Daemon:
    root: Path
    proc: subprocess.Popen[str]
    state_dir: Path
    socket: Path
    read_socket: Path
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def client(self, *, read_only: bool = False) -> httpx.Client:
        path = self.read_socket if read_only else self.socket
        c = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(path)), base_url="http://iovctl", timeout=60
        )
        self.clients.append(c)
        return c

    def cli(self, *args: str) -> Result:
        """``iovctl --connect ADMIN_SOCKET ARGS`` in-process."""
        return run_in_process(["--connect", self.url, *args])

    def direct(self, *args: str) -> Result:
        """``iovctl --state-dir STATE ARGS`` in-process: on the state itself."""
        return run_in_process(["--state-dir", str(self.state_dir), *args])

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        for c in self.clients:
            c.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err


def start_daemon(root: Path, *, sim: str = "demo", args: tuple[str, ...] = ()) -> Daemon:
    """Start ``iovctl daemon`` and wait until its admin socket answers."""
    state = root / "state"
    admin, reader = root / "a.sock", root / "r.sock"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "iovctl",
            "--sim",
            sim,
            "--state-dir",
            str(state),
            "daemon",
            "--socket",
            str(admin),
            "--read-socket",
            str(reader),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    deadline = time.monotonic() + 30
    while not (_listening(admin) and _listening(reader)):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _out, err = proc.communicate()
            raise AssertionError(f"the daemon did not start: {err}")
        time.sleep(0.05)
    return Daemon(root, proc, state, admin, reader)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a unix socket's path is at most 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="iovd-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon(short_dir: Path) -> Iterator[Daemon]:
    d = start_daemon(short_dir)
    yield d
    d.stop()


@pytest.fixture(scope="module")
def shared_daemon() -> Iterator[Daemon]:
    """One daemon for a module's tests that do not care what the others did."""
    root = Path(tempfile.mkdtemp(prefix="iovd-"))
    d = start_daemon(root)
    yield d
    d.stop()
    shutil.rmtree(root, ignore_errors=True)


def snapshot(client: httpx.Client) -> dict[str, Any]:
    """Everything a user can read, as the API shows it."""
    out = {}
    for path in ("host", "adapters", "vfs", "switches", "vms", "nics", "events"):
        got = client.get(f"/api/v1/{path}")
        assert got.status_code == 200, got.text
        out[path] = got.json()
    return out


