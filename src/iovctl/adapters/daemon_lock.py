"""The daemon's claim on a state directory: one ``iovctl daemon`` per directory,
and the CLI's way to know that one runs (it is then the single writer).

``daemon.lock`` in the state directory, held with ``flock`` for the daemon's life
(the kernel drops it when the process dies: a killed daemon leaves no stale claim),
and holding the daemon's pid and admin socket as JSON.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from iovctl.errors import StateError

FILE_NAME = "daemon.lock"


@dataclass(frozen=True, slots=True)
class DaemonInfo:
    pid: int
    socket: str


def running_daemon(state_dir: Path) -> DaemonInfo | None:
    """The daemon that holds ``state_dir``, or None (no lock taken, nothing created)."""
    path = state_dir / FILE_NAME
    try:
        f = path.open("r")
    except OSError:
        return None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                doc = json.loads(f.read() or "{}")
                return DaemonInfo(int(doc.get("pid", 0)), str(doc.get("socket", "")))
            except ValueError:
                return DaemonInfo(0, "")
        fcntl.flock(f, fcntl.LOCK_UN)
        return None


class DaemonLock:
    """Held by a running daemon; :meth:`acquire` refuses a second one."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME
        self._file: IO[str] | None = None

    def acquire(self, socket: str) -> None:
        """Raises StateError(``daemon-running``) when another daemon holds the directory."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.path.open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            other = f.read().strip()
            f.close()
            raise StateError(
                "daemon-running",
                f"another iovctl daemon serves state directory {self.path.parent} ({other})",
                "stop it first (systemctl stop iovctld), or give this one another --state-dir",
            ) from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "socket": socket}))
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def single_writer(state_dir: Path) -> None:
    """Raises StateError(``daemon-running``) when a daemon serves ``state_dir``: the CLI
    then writes through it (``--connect``), never beside it."""
    info = running_daemon(state_dir)
    if info is None:
        return
    target = f"unix://{info.socket}" if info.socket else "unix:///run/iovctl/iovctl.sock"
    raise StateError(
        "daemon-running",
        f"iovctl daemon (pid {info.pid}) is the single writer of state directory {state_dir}",
        f"run the command through it: iovctl --connect {target} ... (or IOVCTL_CONNECT)",
    )
