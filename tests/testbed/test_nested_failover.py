"""Issue 12 in the igb guest as the host: a nested guest holds a real igb VF, teamed.

The testbed guest (L1, ``tests/testbed/run --nested``) runs libvirtd and QEMU (TCG).
A nested guest (L2: the same kernel, a busybox initramfs from ``guest/nested-init``)
gets the virtio-net failover pair: a persistent virtio half on a bridge whose uplink is
the igb PF, and a transient VF half (the VF on vfio-pci, the NIC's MAC set on the PF),
attached live. L2 configures only the failover master and keeps a TCP connection to a
peer namespace on the bridge busy. The test shows:

- the VF gets the NIC's MAC as its permanent address in L2, so net_failover enslaves it
  (the PF is up when L2's igbvf resets the VF: see ``docs`` of the "PF still in reset
  state" catch in tests/testbed/README.md), and the traffic takes the VF (L2's VF
  counters grow, the standby's stand still);
- the connection survives the VF's live detach (by alias, until ``device-removed``),
  runs on virtio meanwhile, and survives its re-attach; the VF is scrubbed (the NIC's
  MAC leaves the PF's VF entry) after the removal;
- the same live attach through libvirt's own VF pool (``<forward mode='hostdev'>``).

It prints ``@@NESTED-METRICS`` lines: domain start to VF in use, unplug time, the
connection's longest silence, the pool's attach to VF in use.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.testbed,
    pytest.mark.skipif(
        os.environ.get("IOVCTL_TESTBED_NESTED") != "1",
        reason="needs the image with libvirt (tests/testbed/run --nested)",
    ),
]

URI = "qemu:///system"
DOMAIN = "nested"
MAC = "52:54:00:77:00:02"
PEER_MAC = "52:54:00:77:00:01"
PEER_NS = "peer"
BRIDGE = "br0"
NESTED = Path("/mnt/run/nested")  # vmlinuz + initrd.img built by run --nested
CONSOLE = Path("/tmp/nested-console.log")
TCP_LOG = Path("/tmp/nested-tcp.log")
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


def hostdev_xml(vf_address: str, alias: str) -> str:
    dom, bus, slot_fn = vf_address.split(":")
    slot, fn = slot_fn.split(".")
    return f"""
<interface type='hostdev' managed='yes'>
  <mac address='{MAC}'/>
  <source><address type='pci' domain='0x{dom}' bus='0x{bus}' slot='0x{slot}' function='0x{fn}'/></source>
  <teaming type='transient' persistent='ua-net0'/>
  <alias name='{alias}'/>
</interface>"""


def domain_xml(vf_half: str = "") -> str:
    ports = "".join("<controller type='pci' model='pcie-root-port'/>" for _ in range(4))
    return f"""
<domain type='qemu'>
  <name>{DOMAIN}</name>
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
    <interface type='bridge'>
      <mac address='{MAC}'/>
      <source bridge='{BRIDGE}'/>
      <model type='virtio'/>
      <driver name='qemu'/>
      <teaming type='persistent'/>
      <alias name='ua-net0'/>
    </interface>
    {vf_half}
    <serial type='file'><source path='{CONSOLE}'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>"""


POOL_NIC = (
    f"<interface type='network'><mac address='{MAC}'/><source network='vfpool'/>"
    f"<teaming type='transient' persistent='ua-net0'/><alias name='ua-vf0'/></interface>"
)


def pool_xml(folder: Path, pf: str) -> Path:
    """libvirt's VF pool on the PF: first free VF, no weight, no fallback."""
    path = folder / "pool.xml"
    path.write_text(
        f"<network><name>vfpool</name><forward mode='hostdev' managed='yes'>"
        f"<pf dev='{pf}'/></forward></network>"
    )
    return path


class RemovalWatch:
    """``virsh event --event device-removed``, started before the detach request (the
    event may come before a wait that begins after it)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["virsh", "-c", URI, "event", DOMAIN, "--event", "device-removed",
             "--timeout", str(int(REMOVE_BOUND_S))],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        time.sleep(1.0)  # virsh connects and registers (no readiness signal to wait on)

    def wait(self) -> str:
        out, _ = self.proc.communicate(timeout=REMOVE_BOUND_S + 30)
        return out


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


@pytest.fixture(scope="module")
def lab(libvirtd: None) -> Iterator[dict[str, Any]]:
    dev = Path("/sys/bus/pci/devices/0000:01:00.0")
    pf = next((dev / "net").iterdir()).name
    run("ip", "link", "set", pf, "up")
    (dev / "sriov_numvfs").write_text("1")
    wait_for("VF 0", lambda: (dev / "virtfn0").exists(), 30, 0.1)
    vf = os.path.basename(os.readlink(dev / "virtfn0"))
    run("ip", "link", "add", BRIDGE, "type", "bridge")
    run("ip", "link", "set", pf, "master", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")
    run("ip", "netns", "add", PEER_NS)
    run("ip", "link", "add", "vpeer", "type", "veth", "peer", "name", "eth0", "netns", PEER_NS)
    run("ip", "link", "set", "vpeer", "master", BRIDGE, "up")
    run("ip", "-n", PEER_NS, "link", "set", "eth0", "address", PEER_MAC)
    run("ip", "-n", PEER_NS, "addr", "add", "10.77.0.1/24", "dev", "eth0")
    run("ip", "-n", PEER_NS, "link", "set", "eth0", "up")
    run("ip", "-n", PEER_NS, "link", "set", "lo", "up")
    # The NIC's switch sends a VF's frame to an unknown MAC out on the wire: the
    # peer's MAC goes into the PF's own unicast filter (as iovctl's software path does).
    run("bridge", "fdb", "add", PEER_MAC, "dev", pf, "self")
    server = subprocess.Popen(
        ["ip", "netns", "exec", PEER_NS, sys.executable, "-c", SERVER, str(TCP_LOG)]
    )
    print(run("ip", "link", "show", pf), flush=True)
    yield {"pf": pf, "vf": vf, "dev": dev}
    server.send_signal(signal.SIGTERM)
    virsh("destroy", DOMAIN, check=False)
    virsh("undefine", DOMAIN, check=False)
    virsh("net-destroy", "vfpool", check=False)
    (dev / "sriov_numvfs").write_text("0")
    run("ip", "netns", "del", PEER_NS, check=False)
    run("ip", "link", "del", BRIDGE, check=False)


def test_nested_guest_keeps_tcp_across_vf_unplug_and_return(lab: dict[str, Any], tmp_path: Path) -> None:
    pf, vf = lab["pf"], lab["vf"]
    xml = tmp_path / "domain.xml"
    xml.write_text(domain_xml())
    virsh("define", str(xml))
    hostdev = tmp_path / "vf.xml"
    hostdev.write_text(hostdev_xml(vf, "ua-vf0"))

    t_start = time.monotonic()
    virsh("start", DOMAIN)
    metric("virsh_start_s", time.monotonic() - t_start)
    t_attach = time.monotonic()
    virsh("attach-device", DOMAIN, str(hostdev), "--live")
    metric("attach_s", time.monotonic() - t_attach)
    assert pf_vf_mac(pf, 0) == MAC  # libvirt set the NIC's MAC on the PF (managed)
    live = virsh("dumpxml", DOMAIN)
    assert "<teaming type='transient' persistent='ua-net0'/>" in live
    assert "<teaming type='persistent'/>" in live

    wait_for("L2 reports", lambda: len(reports()) > 0, BOOT_BOUND_S, 1)
    metric("start_to_nested_up_s", time.monotonic() - t_start)
    wait_for("the VF carries L2's traffic", vf_carries_traffic, PLUG_BOUND_S)
    metric("start_to_vf_in_use_s", time.monotonic() - t_start)
    vfdev = vf_of(reports()[-1])
    assert vfdev is not None and vfdev.mac == MAC
    print("\n".join(x for x in CONSOLE.read_text().splitlines() if "dmesg" in x), flush=True)

    wait_for("the TCP connection", lambda: len(tcp_lines()[1]) > 20, 60)
    t_detach = time.monotonic()
    watch = RemovalWatch()
    t_detach = time.monotonic()
    virsh("detach-device-alias", DOMAIN, "ua-vf0", "--live")
    metric("detach_request_s", time.monotonic() - t_detach)
    event = watch.wait()
    metric("unplug_s", time.monotonic() - t_detach)
    assert "device-removed" in event and "ua-vf0" in event, event
    assert "ua-vf0" not in virsh("dumpxml", DOMAIN)
    # Scrubbed: the NIC's MAC left the PF's VF entry, the VF is back on its driver.
    assert pf_vf_mac(pf, 0) != MAC
    wait_for("L2 runs on virtio", standby_carries_traffic, 60)

    t_reattach = time.monotonic()
    virsh("attach-device", DOMAIN, str(hostdev), "--live")
    wait_for("the VF carries L2's traffic again", vf_carries_traffic, PLUG_BOUND_S)
    metric("reattach_to_vf_in_use_s", time.monotonic() - t_reattach)
    time.sleep(3)  # a few more lines on the VF after its return

    conns, lines, eofs = tcp_lines()
    assert conns == 1 and eofs == 0, (conns, eofs)
    seqs = [n for _, n in lines]
    assert seqs == list(range(1, len(seqs) + 1))  # nothing lost, nothing repeated
    window = [t for t, _ in lines if t >= t_detach - 5]
    assert window and window[-1] > t_reattach  # still flowing after the return
    gaps = [b - a for a, b in itertools.pairwise(window)]
    metric("tcp_longest_silence_s", max(gaps))
    unplug = [t for t, _ in lines if t_detach <= t <= t_reattach]
    metric("tcp_longest_silence_unplug_s", max(b - a for a, b in itertools.pairwise(unplug)))
    back = [t for t, _ in lines if t >= t_reattach]
    metric("tcp_longest_silence_return_s", max(b - a for a, b in itertools.pairwise(back)))

    # libvirt's own VF pool, side by side: the same live attach through the network.
    # The same alias: QEMU (10.0) remembers the first primary's id for ua-net0 after
    # its removal and refuses another id ("Cannot attach more than one primary
    # device to 'ua-net0'"), so a NIC's VF half keeps one alias across VFs.
    watch = RemovalWatch()
    virsh("detach-device-alias", DOMAIN, "ua-vf0", "--live")
    assert "device-removed" in watch.wait()
    wait_for("L2 runs on virtio", standby_carries_traffic, 60)
    virsh("net-create", str(pool_xml(tmp_path, pf)))
    nic = tmp_path / "pool-nic.xml"
    nic.write_text(POOL_NIC)
    t_pool = time.monotonic()
    virsh("attach-device", DOMAIN, str(nic), "--live")
    wait_for("the pool's VF carries L2's traffic", vf_carries_traffic, PLUG_BOUND_S)
    metric("pool_attach_to_vf_in_use_s", time.monotonic() - t_pool)
    conns, lines, eofs = tcp_lines()
    assert conns == 1 and eofs == 0, (conns, eofs)


def test_domain_start_with_libvirts_vf_pool(lab: dict[str, Any], tmp_path: Path) -> None:
    """The same start with the VF half from libvirt's pool in the domain's own XML (no
    live attach): domain start to VF in use, beside the first test's. Another nested
    boot (about 2 minutes): CI deselects it (-k "not vf_pool")."""
    virsh("destroy", DOMAIN, check=False)
    virsh("undefine", DOMAIN, check=False)
    if "vfpool" not in virsh("net-list", "--name"):
        virsh("net-create", str(pool_xml(tmp_path, lab["pf"])))
    CONSOLE.unlink(missing_ok=True)
    xml = tmp_path / "domain.xml"
    xml.write_text(domain_xml(POOL_NIC))
    virsh("define", str(xml))
    t_start = time.monotonic()
    virsh("start", DOMAIN)
    metric("pool_virsh_start_s", time.monotonic() - t_start)
    assert pf_vf_mac(lab["pf"], 0) == MAC  # the pool took VF 0, the only one
    wait_for("L2 reports", lambda: len(reports()) > 0, BOOT_BOUND_S, 1)
    metric("pool_start_to_nested_up_s", time.monotonic() - t_start)
    wait_for("the pool's VF carries L2's traffic", vf_carries_traffic, PLUG_BOUND_S)
    metric("pool_start_to_vf_in_use_s", time.monotonic() - t_start)
