"""Who may connect, as the kernel decides it: with a group ``iovctl`` the admin socket
is 0660 and that group's; a user outside it reaches only the read-only socket.
Privileged: it adds the group to the host (and removes it again) and runs a client
as ``nobody``."""

from __future__ import annotations

import grp
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.conftest import start_daemon

pytestmark = pytest.mark.privileged

#: A client as another user: connect, GET /api/v1/host, print the status line or
#: the errno's name.
PROBE = """
import errno, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print(errno.errorcode[exc.errno]); sys.exit(0)
s.sendall(b"GET /api/v1/host HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
print(s.makefile("rb").readline().decode().strip())
"""


@pytest.fixture
def iovctl_group() -> Iterator[int]:
    try:
        yield grp.getgrnam("iovctl").gr_gid
        return
    except KeyError:
        pass
    subprocess.run(["groupadd", "--system", "iovctl"], check=True)
    try:
        yield grp.getgrnam("iovctl").gr_gid
    finally:
        subprocess.run(["groupdel", "iovctl"], check=False)


def _as_nobody(path: Path) -> str:
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to run a client as nobody")
    got = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
         sys.executable, "-I", "-c", PROBE, str(path)],
        capture_output=True, text=True, check=False, timeout=30,
    )
    assert got.returncode == 0, got.stderr
    return got.stdout.strip()


def test_the_admin_socket_is_the_groups_and_others_only_read(
    iovctl_group: int, short_dir: Path
) -> None:
    os.chmod(short_dir, 0o755)  # others may reach the sockets; the modes decide
    d = start_daemon(short_dir)
    try:
        admin = d.socket.stat()
        assert stat.S_IMODE(admin.st_mode) == 0o660 and admin.st_gid == iovctl_group
        assert _as_nobody(d.socket) == "EACCES"
        assert _as_nobody(d.read_socket) == "HTTP/1.1 200 OK"
    finally:
        d.stop()
