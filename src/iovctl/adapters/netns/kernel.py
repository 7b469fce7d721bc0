"""Thin helpers over the kernel for the namespace backends: namespaces, links, tools.

Everything here needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN for namespaces).
Netlink goes through pyroute2; ``tc`` for ingress redirects and ``nft`` run as
subprocesses only where pyroute2 cannot (nftables netdev hooks; pyroute2's nftables
API is a prototype without namespaces or ingress hooks). Deleting nftables chains
and tables is a raw nfnetlink batch: one round trip instead of an ``nft`` process,
and the only way to delete a table *only if it is empty* (NLM_F_NONREC, which
nft(8) never sends). Kernel and library errors become
:class:`iovctl.errors.HardwareError` here, at the edge.

Must not import services, the CLI, the store or other adapters.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from iovctl.errors import HardwareError

T = TypeVar("T")

NETNS_RUN_DIR = "/var/run/netns"
# linux/sched.h, linux/mount.h
CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MNT_DETACH = 2
NETLINK_ROUTE = 0
#: Bound on every wait for the kernel (namespace teardown is asynchronous).
KERNEL_WAIT_S = 5.0
#: Bound on one external tool run.
TOOL_TIMEOUT_S = 10.0
# linux/pkt_sched.h
TC_ROOT = 0xFFFFFFFF
#: Handle of the root qdisc that enforces a max rate (1:).
SHAPER_HANDLE = 0x10000
#: tbf bucket: at least one 64 KiB GSO frame, or 4 ms at the rate.
MIN_BURST_BYTES = 128 * 1024
# linux/netlink.h, linux/netfilter/nfnetlink.h, linux/netfilter/nf_tables.h


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
    """Namespace ``name`` exists: its file in the run directory is a namespace mount.

    An empty file there is the placeholder of a creator that was killed before it
    mounted the namespace: not a namespace (``ensure_netns`` replaces it).
    """
    try:
        found = os.stat(os.path.join(NETNS_RUN_DIR, name))
    except FileNotFoundError:
        return False
    # nsfs has its own device; a placeholder lives on the run directory's.
    return found.st_dev != os.stat(NETNS_RUN_DIR).st_dev


def ensure_netns(name: str, *, quiet_ipv6: bool = False) -> bool:
    """Create namespace ``name`` with ``lo`` up unless it exists. True if created. Root.

    ``quiet_ipv6``: IPv6 off in it (see :func:`quiet_ipv6`), set before the namespace
    is published, so no command ever sees it half made. No fork: a short-lived
    thread unshares its network namespace, sets it up and bind-mounts it, as
    ``ip netns add`` does (a fork of this process per namespace, as pyroute2 does
    it, cost more than everything else a VM start does).
    """
    if netns_exists(name):
        return False
    path = os.path.join(NETNS_RUN_DIR, name)
    try:
        _share_run_dir()
        if not _claim_mountpoint(path):
            return False  # someone else made it meanwhile
    except OSError as exc:
        raise kernel_error(f"creating network namespace {name}", exc) from exc

    def build() -> None:
        libc = _libc()
        if libc.unshare(CLONE_NEWNET) != 0:
            raise _os_error("unshare")
        if quiet_ipv6:
            _disable_ipv6()
        with IPRoute() as ipr:
            ipr.link("set", index=1, state="up")
        # Published last: the namespace appears complete or not at all.
        if libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", MS_BIND, None) != 0:
            raise _os_error("mount")

    try:
        in_thread(build, f"creating network namespace {name}")
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return True


def _claim_mountpoint(path: str) -> bool:
    """Create the empty file a namespace is mounted on; False if a namespace is there.

    A file that stays a placeholder (its creator was killed before mounting) is
    replaced; one that becomes a namespace within a moment had a live creator.
    """
    name = os.path.basename(path)
    for _ in range(2):
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
            return True
        except FileExistsError:
            if wait_until(lambda: netns_exists(name), timeout=1.0):
                return False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    raise OSError(errno.EEXIST, "namespace file keeps coming back", path)


def _share_run_dir() -> None:
    """Make the run directory a shared mount, as ``ip netns add`` does, so namespaces
    mounted there are seen from every mount namespace (``ip netns exec``)."""
    os.makedirs(NETNS_RUN_DIR, mode=0o755, exist_ok=True)
    libc, run_dir = _libc(), NETNS_RUN_DIR.encode()
    if libc.mount(b"", run_dir, b"none", MS_SHARED | MS_REC, None) == 0:
        return
    if ctypes.get_errno() != errno.EINVAL:
        raise _os_error("mount --make-shared " + NETNS_RUN_DIR)
    # Not a mount point yet: bind it onto itself first.
    if libc.mount(run_dir, run_dir, b"none", MS_BIND | MS_REC, None) != 0:
        raise _os_error("mount --bind " + NETNS_RUN_DIR)
    if libc.mount(b"", run_dir, b"none", MS_SHARED | MS_REC, None) != 0:
        raise _os_error("mount --make-shared " + NETNS_RUN_DIR)


#: IFLA_AF_SPEC that stops a device from making IPv6 addresses (addr_gen_mode none):
#: ports of bridges and the NIC's insides must not chat (DAD, router solicitations).
NO_IPV6_ADDRESSES = {"attrs": [("AF_INET6", {"attrs": [("IFLA_INET6_ADDR_GEN_MODE", 1)]})]}


def _disable_ipv6() -> None:
    """In the calling thread's network namespace: IPv6 off for every device.

    /proc/sys/net answers for the namespace of the thread that opens it.
    """
    for scope in ("all", "default"):
        path = f"/proc/sys/net/ipv6/conf/{scope}/disable_ipv6"
        with contextlib.suppress(FileNotFoundError), open(path, "w") as f:  # no IPv6: fine
            f.write("1")


def quiet_ipv6(ns: str) -> None:
    """Turn IPv6 off for every device of namespace ``ns`` (sysctl). Root."""

    def run() -> None:
        _setns(os.path.join(NETNS_RUN_DIR, ns))
        _disable_ipv6()

    in_thread(run, f"turning IPv6 off in {ns}")


def remove_netns(name: str) -> None:
    """Unmount and forget namespace ``name`` (idempotent). Root.

    The kernel tears the namespace down asynchronously: its veth pairs disappear
    from other namespaces a moment later (see :func:`wait_until`). A placeholder
    left by a creator that was killed before mounting goes too.
    """
    path = os.path.join(NETNS_RUN_DIR, name)
    if not os.path.lexists(path):
        return
    if _libc().umount2(path.encode(), MNT_DETACH) != 0 and ctypes.get_errno() != errno.EINVAL:
        exc = _os_error(path)
        if exc.errno != errno.ENOENT:
            raise kernel_error(f"removing network namespace {name}", exc)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
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
    into a namespace costs a thread and a socket, so handles are reused.
    """

    def __init__(self) -> None:
        self._handles: dict[str | None, IPRoute] = {}

    def __call__(self, ns: str | None = None) -> IPRoute:
        handle = self._handles.get(ns)
        if handle is None:
            try:
                if ns is None:
                    handle = IPRoute()
                else:
                    # A socket made in the namespace by a thread, not by a fork of this
                    # process (what IPRoute(netns=...) does, ~10x slower).
                    sock = socket_in_netns(ns, socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
                    handle = IPRoute(fileno=sock.detach())
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


def shape_transmit(ipr: IPRoute, index: int, mbps: int | None, what: str) -> None:
    """Make link ``index`` transmit at most ``mbps`` Mbit/s; None or 0 = unlimited. Root.

    A tbf root qdisc: a shaper, so TCP gets the rate rather than a policer's
    sawtooth. Its bucket holds at least one 64 KiB GSO frame (a smaller one would
    never pass such a frame) or 4 ms at the rate. Idempotent. ``ipr`` is the
    netlink handle of the link's namespace; ``what`` names the limit in errors.
    """
    with tolerate(errno.ENOENT, errno.EINVAL):  # no shaper yet
        ipr.tc("del", index=index, handle=SHAPER_HANDLE, parent=TC_ROOT)
    if not mbps:
        return
    rate_bytes = mbps * 1_000_000 // 8
    try:
        ipr.tc(
            "replace",
            "tbf",
            index,
            SHAPER_HANDLE,
            rate=f"{mbps}mbit",
            burst=max(MIN_BURST_BYTES, rate_bytes // 250),
            latency="50ms",
        )
    except (OSError, NetlinkError) as exc:
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


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _os_error(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, os.strerror(err), what)


def _setns(path: str) -> None:
    """Move the calling thread (only it) into the network namespace at ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc().setns(fd, CLONE_NEWNET) != 0:
            raise _os_error(path)
    finally:
        os.close(fd)


def in_thread(work: Callable[[], T], what: str) -> T:
    """Run ``work`` in a fresh short-lived thread and return its result. Root.

    Namespace changes (setns, unshare) affect only the calling thread and die with
    it: the thread that entered a namespace is never reused. Errors are translated.
    """
    result: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            result.append((True, work()))
        except BaseException as exc:  # handed to the caller below
            result.append((False, exc))

    worker = threading.Thread(target=run, name=what[:40])
    worker.start()
    worker.join(KERNEL_WAIT_S)
    if not result:
        raise HardwareError("kernel-refused", f"{what}: no answer within {KERNEL_WAIT_S:.0f} s")
    ok, value = result[0]
    if ok:
        return value  # type: ignore[no-any-return]
    if isinstance(value, HardwareError):
        raise value
    if isinstance(value, (OSError, NetlinkError)):
        raise kernel_error(what, value) from value
    raise value


def socket_in_netns(ns: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket living in namespace ``ns``, made by a short-lived thread that entered it.

    setns(CLONE_NEWNET) changes only the calling thread, and a socket keeps the
    namespace it was created in. Root.
    """

    def make() -> socket.socket:
        _setns(os.path.join(NETNS_RUN_DIR, ns))
        return socket.socket(family, kind, proto)

    return in_thread(make, f"opening a socket in namespace {ns}")


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
