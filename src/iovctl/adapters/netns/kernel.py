"""Thin helpers over the kernel for the namespace backends: namespaces, links, tools.

Everything here needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN for namespaces).
Netlink goes through pyroute2; ``tc`` for ingress redirects and ``nft`` run as
subprocesses only where pyroute2 cannot (nftables netdev hooks; pyroute2's nftables
API is a prototype without namespaces or ingress hooks). Kernel and library errors
become :class:`iovctl.errors.HardwareError` here, at the edge.

Must not import services, the CLI, the store or other adapters.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

from iovctl.errors import HardwareError

NETNS_RUN_DIR = "/var/run/netns"
CLONE_NEWNET = 0x40000000
#: Bound on every wait for the kernel (namespace teardown is asynchronous).
KERNEL_WAIT_S = 5.0
#: Bound on one external tool run.
TOOL_TIMEOUT_S = 10.0


def kernel_error(what: str, exc: Exception) -> HardwareError:
    """Translate a netlink/OS error into iovctl's tree, naming what was attempted."""
    code = getattr(exc, "code", None) or getattr(exc, "errno", None)
    text = os.strerror(code) if isinstance(code, int) and code > 0 else str(exc)
    return HardwareError(
        "kernel-refused",
        f"{what}: {text}",
        "run as root on a kernel with veth, bridge and network namespaces; "
        "`iovctl` cleanup removes half-made objects",
        code if isinstance(code, int) else None,
    )


def list_netns(prefix: str = "") -> list[str]:
    """Named network namespaces (``ip netns`` ones) starting with ``prefix``."""
    try:
        names = os.listdir(NETNS_RUN_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


def netns_exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_RUN_DIR, name))


def ensure_netns(name: str) -> bool:
    """Create namespace ``name`` with ``lo`` up unless it exists. True if created. Root."""
    if netns_exists(name):
        return False
    try:
        netns.create(name)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise kernel_error(f"creating network namespace {name}", exc) from exc
        return False
    with IPRoute(netns=name, flags=0) as ipr:
        ipr.link("set", index=1, state="up")
    return True


#: IFLA_AF_SPEC that stops a device from making IPv6 addresses (addr_gen_mode none):
#: ports of bridges and the NIC's insides must not chat (DAD, router solicitations).
NO_IPV6_ADDRESSES = {"attrs": [("AF_INET6", {"attrs": [("IFLA_INET6_ADDR_GEN_MODE", 1)]})]}


def quiet_ipv6(ns: str) -> None:
    """Turn IPv6 off for every device of namespace ``ns`` (sysctl). Root."""
    run_tool(
        [
            "sysctl",
            "-q",
            "-w",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ],
        ns,
    )


def remove_netns(name: str) -> None:
    """Unmount and forget namespace ``name`` (idempotent). Root.

    The kernel tears the namespace down asynchronously: its veth pairs disappear
    from other namespaces a moment later (see :func:`wait_until`).
    """
    if not netns_exists(name):
        return
    try:
        netns.remove(name)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.EINVAL):
            raise kernel_error(f"removing network namespace {name}", exc) from exc


def wait_until(check: Callable[[], bool], timeout: float = KERNEL_WAIT_S) -> bool:
    """Poll ``check`` every 10 ms until true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


class Links:
    """rtnetlink handles per namespace (None = the host's), opened on first use.

    One instance serves one command; :meth:`close` releases the sockets. A handle
    into a namespace costs a fork (pyroute2), so handles are reused.
    """

    def __init__(self) -> None:
        self._handles: dict[str | None, IPRoute] = {}

    def __call__(self, ns: str | None = None) -> IPRoute:
        handle = self._handles.get(ns)
        if handle is None:
            try:
                handle = IPRoute() if ns is None else IPRoute(netns=ns, flags=0)
            except (OSError, NetlinkError) as exc:
                raise kernel_error(f"opening netlink in namespace {ns}", exc) from exc
            self._handles[ns] = handle
        return handle

    def forget(self, ns: str) -> None:
        """Drop the handle of a namespace that is going away."""
        handle = self._handles.pop(ns, None)
        if handle is not None:
            handle.close()

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()

    def index(self, name: str, ns: str | None = None) -> int | None:
        """Interface index of ``name`` in ``ns``, None when it does not exist."""
        found = self(ns).link_lookup(ifname=name)
        return int(found[0]) if found else None

    def get(self, name: str, ns: str | None = None) -> Any | None:
        """The RTM_NEWLINK message of ``name`` in ``ns``, None when missing."""
        index = self.index(name, ns)
        if index is None:
            return None
        try:
            return self(ns).get_links(index)[0]
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise kernel_error(f"reading {name}", exc) from exc

    def names(self, ns: str | None = None) -> list[str]:
        return sorted(str(m.get("IFLA_IFNAME")) for m in self(ns).get_links())

    def set(self, what: str, ns: str | None = None, **kwargs: Any) -> None:
        """``link set`` with errors translated."""
        try:
            self(ns).link("set", **kwargs)
        except NetlinkError as exc:
            raise kernel_error(what, exc) from exc

    def add(self, what: str, ns: str | None = None, **kwargs: Any) -> None:
        """``link add``; an existing link of that name is not an error (ensure)."""
        try:
            self(ns).link("add", **kwargs)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise kernel_error(what, exc) from exc

    def delete(self, name: str, ns: str | None = None) -> None:
        """Delete link ``name`` if it exists (its veth peer goes with it)."""
        index = self.index(name, ns)
        if index is None:
            return
        try:
            self(ns).link("del", index=index)
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:
                raise kernel_error(f"deleting {name}", exc) from exc

    def brport(self, what: str, name: str, ns: str | None = None, **flags: int) -> None:
        """Set bridge-port flags (learning, unicast_flood, isolated, ...) on ``name``."""
        index = self.index(name, ns)
        try:
            self(ns).brport("set", index=index, **flags)
        except NetlinkError as exc:
            raise kernel_error(what, exc) from exc


def brport_flags(message: Any) -> dict[str, int]:
    """IFLA_BRPORT_* of a link message as ``{"learning": 0, "isolated": 1, ...}``."""
    info = message.get_nested("IFLA_LINKINFO", "IFLA_INFO_SLAVE_DATA")
    if not info:
        return {}
    return {
        str(k).removeprefix("IFLA_BRPORT_").lower(): v
        for k, v in info["attrs"]
        if isinstance(v, int)
    }


def run_tool(argv: list[str], ns: str | None = None, stdin: str | None = None) -> str:
    """Run ``tc``/``nft``/``bridge`` (in ``ns`` via ``ip netns exec``); stdout. Root."""
    full = ["ip", "netns", "exec", ns, *argv] if ns else argv
    try:
        done = subprocess.run(
            full, input=stdin, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False
        )
    except FileNotFoundError as exc:
        raise HardwareError(
            "tool-missing",
            f"{argv[0]} is not installed",
            f"install it: apt-get install -y {'nftables' if argv[0] == 'nft' else 'iproute2'}",
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise HardwareError("tool-timeout", f"{' '.join(argv)} did not finish") from exc
    if done.returncode != 0:
        raise HardwareError(
            "kernel-refused",
            f"{' '.join(argv[:3])} in {ns or 'the host namespace'}: {done.stderr.strip()}",
            "check that the kernel has nftables (netdev family) and tc mirred",
        )
    return done.stdout


_libc: ctypes.CDLL | None = None


def _setns(path: str) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
    finally:
        os.close(fd)


def socket_in_netns(ns: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket living in namespace ``ns``, made by a short-lived thread that entered it.

    setns(CLONE_NEWNET) changes only the calling thread, and a socket keeps the
    namespace it was created in. Root.
    """
    result: list[socket.socket | BaseException] = []

    def make() -> None:
        try:
            _setns(os.path.join(NETNS_RUN_DIR, ns))
            result.append(socket.socket(family, kind, proto))
        except BaseException as exc:  # handed to the caller below
            result.append(exc)

    worker = threading.Thread(target=make, name=f"setns-{ns}")
    worker.start()
    worker.join(KERNEL_WAIT_S)
    if not result:
        raise HardwareError("kernel-refused", f"could not open a socket in namespace {ns}")
    made = result[0]
    if isinstance(made, BaseException):
        raise kernel_error(f"opening a socket in namespace {ns}", made)  # type: ignore[arg-type]
    return made


def open_announcer(ns: str, ifname: str) -> socket.socket:
    """A raw socket on ``ifname`` in ``ns`` for :func:`announce`. Root.

    Opened before a path switch so that the switch itself waits for nothing.
    """
    sock = socket_in_netns(ns, socket.AF_PACKET, socket.SOCK_RAW)
    try:
        sock.bind((ifname, 0))
    except OSError as exc:
        sock.close()
        raise kernel_error(f"opening {ifname} in {ns} for announcements", exc) from exc
    return sock


def announce(sock: socket.socket, mac: str, ipv4: str | None) -> None:
    """Send a gratuitous ARP for ``mac`` (and ``ipv4``), like bonding on failover.

    Every bridge on the way learns where the MAC lives now; peers refresh their ARP
    caches. Without an IPv4 address a broadcast frame from the MAC is enough for the
    bridges. The socket is closed afterwards.
    """
    hw = bytes.fromhex(mac.replace(":", ""))
    ip = socket.inet_aton(ipv4) if ipv4 else bytes(4)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + hw + ip + bytes(6) + ip
    try:
        sock.send(b"\xff" * 6 + hw + b"\x08\x06" + arp)
    except OSError as exc:
        raise kernel_error(f"announcing {mac}", exc) from exc
    finally:
        sock.close()


@contextmanager
def tolerate(*codes: int) -> Iterator[None]:
    """Ignore netlink errors with these errno codes (idempotent deletes)."""
    try:
        yield
    except NetlinkError as exc:
        if exc.code not in codes:
            raise
