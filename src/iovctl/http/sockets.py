"""The daemon's listening sockets, bound by iovctl itself (uvicorn would make a unix
socket 0666, anyone's; ``sockets=[...]`` takes ours as they are).

- admin: mode 0660 and group ``iovctl`` when that group exists (its members may
  change the host, as libvirt's read-write socket), else 0600: root only.
- read-only: 0666. Anyone on the machine may read the SR-IOV state (libvirt's
  read-only socket is 0777); mutations are refused on it (403).
- TCP: only when asked (``--listen``), and only with TLS (``--tls-cert/--tls-key``).
"""

from __future__ import annotations

import contextlib
import grp
import os
import socket
import stat
from pathlib import Path

from iovctl.errors import InvalidInput, StateError

ADMIN_GROUP = "iovctl"
BACKLOG = 256


def _refuse_live(path: Path) -> None:
    """A socket nobody listens on is a dead daemon's: removed. A live one: refused."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise StateError(
            "socket-path-taken",
            f"{path} exists and is not a socket",
            "give --socket/--read-socket a free path",
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise StateError(
        "socket-in-use",
        f"another process listens on {path}",
        "stop the other daemon, or give this one another --socket/--read-socket",
    )


def bind_unix(path: Path, mode: int, group: str | None = None) -> tuple[socket.socket, str]:
    """A listening unix socket at ``path`` with ``mode`` (and ``group``, when it exists);
    returns it and a sentence on who may connect. Never open wider than asked, not even
    for an instant: it is bound under a umask that leaves only the owner."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _refuse_live(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise StateError(
            "socket-bind-failed",
            f"cannot bind {path}: {exc.strerror}",
            "run as root, or pick a writable path",
        ) from exc
    finally:
        os.umask(old)
    gid = None
    if group is not None:
        with contextlib.suppress(KeyError):
            gid = grp.getgrnam(group).gr_gid
    if gid is not None:
        os.chown(path, -1, gid)
        who = f"owner and group {group}"
    elif group is not None:
        mode &= 0o700
        who = f"its owner only (no group {group!r}: create it to let its members in)"
    else:
        who = "everyone" if mode & 0o006 else "its owner"
    os.chmod(path, mode)
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock, f"{path} (mode {mode:04o}: {who})"


def bind_tcp(listen: str) -> socket.socket:
    """``HOST:PORT`` (``[::1]:8443`` for IPv6) as a listening socket."""
    host, sep, port_text = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidInput(
            "invalid-listen",
            f"--listen {listen!r} is not HOST:PORT",
            "e.g. --listen 127.0.0.1:8443",
        )
    try:
        info = socket.getaddrinfo(host, int(port_text), type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
    except OSError as exc:
        raise StateError(
            "listen-failed",
            f"cannot listen on {listen}: {exc.strerror or exc}",
            "pick a free address",
        ) from exc
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock
