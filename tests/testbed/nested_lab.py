"""The nested lab of the igb testbed's ``--nested`` boot (issue 12), shared by
``test_nested_failover.py`` (raw virsh and libvirt's VF pool) and
``test_nested_iovctl.py`` (iovctl as the product): libvirtd in the guest (L1), the
nested guest's domain XML (L2: ``guest/nested-init``), its console reports, the TCP
peer's log, and the waits and metrics both print.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

#: Both nested modules run only in the image with libvirt.
NESTED_ONLY = [
    pytest.mark.testbed,
    pytest.mark.skipif(
        os.environ.get("IOVCTL_TESTBED_NESTED") != "1",
        reason="needs the image with libvirt (tests/testbed/run --nested)",
    ),
]
URI = "qemu:///system"
NESTED = Path("/mnt/run/nested")  # vmlinuz + initrd.img built by run --nested
CONSOLE = Path("/tmp/nested-console.log")
TCP_LOG = Path("/tmp/nested-tcp.log")
PEER_MAC = "52:54:00:77:00:01"
BOOT_BOUND_S = 600.0  # L2 boots in 150-215 s under TCG-in-TCG; steal time here is high
PLUG_BOUND_S = 180.0
REMOVE_BOUND_S = 120.0

QEMU_CONF = """
security_driver = "none"
user = "root"
group = "root"
swtpm_user = "root"
swtpm_group = "root"
namespaces = [ ]
cgroup_controllers = [ ]
"""
LIBVIRTD_CONF = """
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""

SERVER = textwrap.dedent(
    """
    import socket, sys, time
    out = open(sys.argv[1], "a", buffering=1)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("10.77.0.1", 5001))
    s.listen(4)
    while True:
        c, a = s.accept()
        out.write(f"CONN {time.monotonic():.3f} {a}\\n")
        buf = b""
        while True:
            d = c.recv(4096)
            if not d:
                break
            buf += d
            *lines, buf = buf.split(b"\\n")
            now = time.monotonic()
            for line in lines:
                out.write(f"{now:.3f} {line.decode()}\\n")
        out.write(f"EOF {time.monotonic():.3f}\\n")
    """
)


def run(*args: str, check: bool = True, timeout: float = 120) -> str:
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
    return r.stdout


def virsh(*args: str, check: bool = True, timeout: float = 120) -> str:
    return run("virsh", "-c", URI, *args, check=check, timeout=timeout)


def metric(name: str, value: float | str) -> None:
    text = f"{value:.1f}" if isinstance(value, float) else value
    print(f"@@NESTED-METRICS {name}={text}", flush=True)


@dataclass(frozen=True)
class Netdev:
    name: str
    driver: str
    mac: str
    master: str
    tx: int
    rx: int


def reports() -> list[dict[str, Netdev]]:
    """Every ``@@NESTED t=`` report of L2 so far (nested-init), oldest first."""
    out = []
    text = CONSOLE.read_text(errors="replace") if CONSOLE.exists() else ""
    for line in text.splitlines():
        if not line.startswith("@@NESTED t="):
            continue
        devs = {}
        for word in line.split()[3:]:
            m = re.fullmatch(r"([^:]+):([^:]*):([0-9a-f:]{17}):master=([^:]*):tx=(\d+):rx=(\d+)", word)
            if m:
                n, drv, mac, master, tx, rx = m.groups()
                devs[n] = Netdev(n, drv, mac, master, int(tx), int(rx))
        out.append(devs)
    return out


def vf_of(report: dict[str, Netdev]) -> Netdev | None:
    vfs = [d for d in report.values() if d.driver == "igbvf"]
    return vfs[0] if vfs else None


def standby_of(report: dict[str, Netdev]) -> Netdev:
    """The virtio half under the master (net_failover's standby)."""
    return next(d for d in report.values() if d.driver == "virtio_net" and d.master)


def wait_for(what: str, pred: Callable[[], bool], bound: float, step: float = 0.5) -> float:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > bound:
            tail = "\n".join(CONSOLE.read_text(errors="replace").splitlines()[-40:])
            raise AssertionError(f"{what}: not within {bound:.0f} s; nested console:\n{tail}")
        time.sleep(step)
    return time.monotonic() - t0


def vf_carries_traffic() -> bool:
    """The VF is enslaved to the master and its tx grew while the standby's did not,
    over L2's last two reports (nested-init sends 10 TCP lines a second)."""
    r = reports()
    if len(r) < 2:
        return False
    before, after = r[-2], r[-1]
    vf0, vf1 = vf_of(before), vf_of(after)
    if vf0 is None or vf1 is None or vf0.name != vf1.name or not vf1.master:
        return False
    return vf1.tx > vf0.tx and standby_of(after).tx == standby_of(before).tx


def standby_carries_traffic() -> bool:
    r = reports()
    if len(r) < 2:
        return False
    return vf_of(r[-1]) is None and standby_of(r[-1]).tx > standby_of(r[-2]).tx


def tcp_lines() -> tuple[int, list[tuple[float, int]], int]:
    """(connections, [(time, sequence number)], EOFs) as the peer's server saw them."""
    conns, eofs, lines = 0, 0, []
    for line in TCP_LOG.read_text().splitlines() if TCP_LOG.exists() else []:
        word = line.split()
        if word[0] == "CONN":
            conns += 1
        elif word[0] == "EOF":
            eofs += 1
        elif len(word) == 2 and word[1].isdigit():
            lines.append((float(word[0]), int(word[1])))
    return conns, lines, eofs


def pf_vf_mac(pf: str, index: int) -> str:
    info = json.loads(run("ip", "-j", "link", "show", pf))[0]
    return str(next(v["address"] for v in info["vfinfo_list"] if v["vf"] == index))


def domain_xml(name: str, console: Path, nics: str = "") -> str:
    """q35 with spare pcie-root-ports, L2's kernel + initrd, ``nics`` as given (none:
    iovctl adds its pair)."""
    ports = "".join("<controller type='pci' model='pcie-root-port'/>" for _ in range(4))
    return f"""
<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{NESTED}/vmlinuz</kernel>
    <initrd>{NESTED}/initrd.img</initrd>
    <cmdline>console=ttyS0 panic=-1 nohz=off highres=off loglevel=4</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='pci' model='pcie-root'/>
    {ports}
    {nics}
    <serial type='file'><source path='{console}'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>"""


class RemovalWatch:
    """``virsh event DOMAIN --event device-removed``, registered before the detach
    request (the event may come before a wait that begins after it)."""

    def __init__(self, domain: str) -> None:
        self.proc = subprocess.Popen(
            ["virsh", "-c", URI, "event", domain, "--event", "device-removed", "--timestamp",
             "--timeout", str(int(REMOVE_BOUND_S))],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        time.sleep(1.0)  # virsh connects and registers (no readiness signal to wait on)

    def wait(self) -> tuple[str, float]:
        """virsh's output and the event's wall-clock time (its ``--timestamp``)."""
        out, _ = self.proc.communicate(timeout=REMOVE_BOUND_S + 30)
        m = re.search(
            r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+[+-]\d{4}): event 'device-removed'", out
        )
        assert m, out
        return out, datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f%z").timestamp()


@pytest.fixture(scope="module")
def libvirtd() -> Iterator[None]:
    if run("pgrep", "-x", "libvirtd", check=False).strip():
        yield  # started for the other nested module of this session
        return
    run("modprobe", "-a", "tun", "bridge", "veth", "vfio-pci", "vfio_iommu_type1")
    # libvirt-daemon-system (systemd units, users, these folders) is not installed:
    # a root-only daemon without AppArmor, cgroups, mount namespaces or polkit.
    for folder in ("/var/log/libvirt/qemu", "/var/lib/libvirt/qemu", "/var/cache/libvirt"):
        os.makedirs(folder, exist_ok=True)
    # libvirtd resolves its built-in QEMU user before it reads qemu.conf.
    run("groupadd", "-f", "-r", "kvm")
    run("groupadd", "-f", "-r", "libvirt-qemu")
    if run("getent", "passwd", "libvirt-qemu", check=False) == "":
        run("useradd", "-r", "-g", "libvirt-qemu", "-G", "kvm", "-d", "/var/lib/libvirt", "libvirt-qemu")
    with open("/etc/libvirt/qemu.conf", "a") as conf:
        conf.write(QEMU_CONF)
    with open("/etc/libvirt/libvirtd.conf", "a") as conf:
        conf.write(LIBVIRTD_CONF)
    t0 = time.monotonic()
    subprocess.run(["virtlogd", "-d"], check=True, timeout=60)
    subprocess.run(["libvirtd", "-d"], check=True, timeout=120)

    def answers() -> bool:
        try:
            return virsh("version", check=False, timeout=30) != ""
        except subprocess.TimeoutExpired:
            return False

    try:
        wait_for("virsh answers", answers, 180, 1)
    except AssertionError:
        print(Path("/var/log/libvirt/libvirtd.log").read_text(errors="replace"), flush=True)
        raise
    metric("libvirtd_ready_s", time.monotonic() - t0)
    print(virsh("version"), flush=True)
    yield
