"""Leases: which process runs an operation, and whether it is still alive.

A lease is a file in ``<state dir>/leases/`` that its process holds an exclusive
``flock`` on. The kernel drops the lock when the process dies, however it dies
(SIGKILL included), so a free lock means the operation's owner is gone and
another command may finish its steps. Waiting for a live owner is a blocking
lock on its file, with a deadline. A store in memory has no other processes:
its leases live and die with the store object.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import time
from pathlib import Path

LEASE_DIR = "leases"


class Leases:
    def __init__(self, state_dir: Path | None) -> None:
        self._dir = state_dir / LEASE_DIR if state_dir is not None else None
        self._token: str | None = None
        self._fd: int | None = None

    def own(self) -> str:
        """This process's lease, taken on first use and held until :meth:`close`."""
        if self._token is None:
            token = secrets.token_hex(8)
            if self._dir is not None:
                self._dir.mkdir(mode=0o700, exist_ok=True)
                fd = os.open(self._dir / token, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._fd = fd
            self._token = token
        return self._token

    def alive(self, token: str) -> bool:
        """Whether the lease's process is still running (ours is)."""
        if token == self._token:
            return True
        if self._dir is None:
            return False  # an in-memory store's other leases were closed
        try:
            fd = os.open(self._dir / token, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def wait(self, token: str, timeout: float) -> bool:
        """Wait until the lease is free; False if it is still held at the deadline."""
        deadline = time.monotonic() + timeout
        delay = 0.002
        while self.alive(token):
            if time.monotonic() > deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        return True

    def forget(self, token: str) -> None:
        """Remove a dead lease's file (its operations were taken over)."""
        if self._dir is not None and token != self._token:
            with contextlib.suppress(FileNotFoundError):
                (self._dir / token).unlink()

    def close(self) -> None:
        if self._fd is not None and self._dir is not None and self._token is not None:
            with contextlib.suppress(FileNotFoundError):
                (self._dir / self._token).unlink()
            os.close(self._fd)
        self._fd = None
        self._token = None
