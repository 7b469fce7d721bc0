"""Issue 4 on real VFs: VMs as network namespaces on the igb guest's VFs.

Two VMs on real VFs ping each other through the NIC's own switch; a VM on a VF and a
VM on the software path (the switch's bridge, then the PF) ping each other, which
needs the software NIC's MAC in the PF's own unicast filter (the NIC's switch sends a
VF's frame to an unknown MAC out on the wire, not up to the PF); and a TCP
connection from a VM on a VF to the VM on the software path lives through the VF
being taken away and given back. Private VLANs (issue 11) hold on the software path
and leave the PF tagged (the guest's bridge filters VLANs and has 8021q).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_iovctl_on_igb import igb_pf, iovctl, js  # this folder is on sys.path

from iovctl.adapters.netns.names import (
    nic_ifname,
    synthetic_host_ifname,
    synthetic_vm_ifname,
    vm_netns,
)
from iovctl.bench import probe as bench_probe
from iovctl.domain.model import PrivateVlan, PvlanMode
from iovctl.domain.pvlan import may_reach, sends_in

pytestmark = pytest.mark.testbed


def ipv4(vm: str) -> str:
    out = subprocess.run(
        ["ip", "-n", vm_netns(vm), "-j", "addr", "show", nic_ifname("nic0")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return next(a["local"] for a in json.loads(out.stdout)[0]["addr_info"] if a["family"] == "inet")


def ping(vm: str, dst: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", vm_netns(vm), "ping", "-n", *args, dst],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


IOMMU = os.environ.get("IOVCTL_TESTBED_IOMMU") == "1"
PROBE = bench_probe.__file__


#: Without an IOMMU every NIC takes the software path, which the VLAN and private-VLAN
#: matrices already cover in the IOMMU boot (the NICs igb cannot serve, and the one
#: whose VF is taken away): once is enough for the CI budget (about 6 minutes a boot).
SOFTWARE_PATH_RAN_WITH_IOMMU = pytest.mark.skipif(
    not IOMMU, reason="the software path's VLAN matrices ran in the IOMMU boot"
)


def tx_packets(vm: str, ifname: str) -> int:
    out = subprocess.run(
        ["ip", "-n", vm_netns(vm), "-j", "-s", "link", "show", ifname],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(json.loads(out.stdout)[0]["stats64"]["tx"]["packets"])


def vf_port(vm: str) -> str:
    """The VF netdev paired with the VM's nic0 (named by the VF driver, in the VM)."""
    out = subprocess.run(
        ["ip", "-n", vm_netns(vm), "-j", "link", "show", "master", nic_ifname("nic0")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    ports = [p["ifname"] for p in json.loads(out.stdout)]
    vfs = [p for p in ports if not p.startswith(("syn", "anc"))]
    assert len(vfs) == 1, ports
    return str(vfs[0])


def probe(vm: str, *args: str) -> subprocess.Popen[str]:
    """A bench probe (src/iovctl/bench/probe.py) in the VM; returns once it is ready."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", vm_netns(vm), sys.executable, PROBE, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "ready" in line, proc.stderr.read() if proc.stderr else line
    return proc


def vms_on(
    tmp_path: Path,
    weights: dict[str, int],
    vlans: dict[str, int] | None = None,
    nic_args: dict[str, list[str]] | None = None,
) -> Any:
    state = tmp_path / "state"
    pf = igb_pf(state)["name"]
    # set, not enable: an earlier test may have left the PF with VFs (enable refuses
    # an enabled adapter and names set).
    iovctl(state, "adapter", "set", pf, "--num-vfs", "2")
    iovctl(state, "switch", "create", "ext", "--uplink", pf, "--iov")
    for vm, weight in weights.items():
        vlan = (vlans or {}).get(vm)
        iovctl(state, "vm", "create", vm)
        iovctl(
            state, "nic", "add", vm, "--switch", "ext", "--iov-weight", str(weight),
            *(["--vlan", str(vlan)] if vlan else []), *(nic_args or {}).get(vm, []),
        )  # fmt: skip
        iovctl(state, "vm", "start", vm)
    yield state
    for vm in weights:
        iovctl(state, "vm", "stop", vm, ok=False)
        iovctl(state, "vm", "delete", vm, ok=False)
    iovctl(state, "switch", "delete", "ext", ok=False)
    iovctl(state, "adapter", "disable", pf, ok=False)


@pytest.fixture
def two_vms(tmp_path: Path) -> Any:
    yield from vms_on(tmp_path, {"a": 50, "b": 50})


@pytest.fixture
def vf_and_software(tmp_path: Path) -> Any:
    """VM ``v`` wants a VF (weight 50), VM ``s`` stays on the software path (weight 0)."""
    yield from vms_on(tmp_path, {"v": 50, "s": 0})


@pytest.fixture
def vlan_vms(tmp_path: Path) -> Any:
    """``a`` wants a VF, the rest stay on the software path; ``a`` and ``b`` are in VLAN
    100, ``c`` in VLAN 200, ``d`` in none."""
    yield from vms_on(
        tmp_path, {"a": 50, "b": 0, "c": 0, "d": 0}, vlans={"a": 100, "b": 100, "c": 200}
    )


#: Private VLAN 100: promiscuous p, isolated i, community a (102) and b (103).
PVLAN_ARGS = {
    "p": ["--pvlan", "promiscuous", "--primary-vlan", "100"],
    "i": ["--pvlan", "isolated", "--primary-vlan", "100", "--secondary-vlan", "101"],
    "a": ["--pvlan", "community", "--primary-vlan", "100", "--secondary-vlan", "102"],
    "b": ["--pvlan", "community", "--primary-vlan", "100", "--secondary-vlan", "103"],
}


@pytest.fixture
def pvlan_vms(tmp_path: Path) -> Any:
    """Four NICs in one private VLAN; all want a VF, which igb cannot give them."""
    yield from vms_on(tmp_path, dict.fromkeys(PVLAN_ARGS, 50), nic_args=PVLAN_ARGS)


def access_and_trunk() -> tuple[dict[str, set[int]], dict[str, set[int]]]:
    """Per bridge port, as iproute2 shows them: PVID VLANs, and tagged VLANs."""
    out = subprocess.run(
        ["bridge", "-j", "vlan", "show"], capture_output=True, text=True, check=True
    )
    pvid: dict[str, set[int]] = {}
    tagged: dict[str, set[int]] = {}
    for port in json.loads(out.stdout or "[]"):
        for v in port["vlans"]:
            vids = set(range(v["vlan"], v.get("vlanEnd", v["vlan"]) + 1))
            flags = v.get("flags", [])
            if "PVID" in flags:
                pvid.setdefault(port["ifname"], set()).update(vids)
            if "Egress Untagged" not in flags:
                tagged.setdefault(port["ifname"], set()).update(vids)
    return pvid, tagged


def reaches(src: str, dst: str) -> bool:
    """Any of 3 pings 0.2 s apart answered within 2 s (ARP and all, slow under TCG)."""
    return ping(src, ipv4(dst), "-c", "3", "-i", "0.2", "-W", "2").returncode == 0


@SOFTWARE_PATH_RAN_WITH_IOMMU
def test_vlan_holds_on_the_vf_path_and_on_the_software_path(vlan_vms: Path) -> None:
    """The distribution kernel's bridge filters VLANs: the NIC's host end is an access
    port of its VLAN and the PF a trunk; on the VF the igb NIC tags. VLANs part the
    VMs the same way on both paths, also after a VF is taken away."""
    state = vlan_vms
    assert js(state, "nic", "show", "a", "nic0")["vf_data_path_active"] is True
    pf = igb_pf(state)["name"]
    pvid, tagged = access_and_trunk()
    for vm, vlan in (("b", 100), ("c", 200), ("d", 1)):
        assert pvid[synthetic_host_ifname(vm, "nic0")] == {vlan}
        assert not tagged.get(synthetic_host_ifname(vm, "nic0"))
    # A trunk of the VLANs in use; VLAN 1 stays untagged on the wire. (The bridge is
    # switch "ext"'s: a VM an earlier test left running there for boot 2 may add its
    # VLAN, 7.)
    assert {100, 200} <= tagged[pf] and 1 not in tagged[pf]
    assert reaches("a", "b") and reaches("b", "a")
    for src, dst in (("a", "c"), ("b", "c"), ("b", "d"), ("d", "b"), ("c", "d")):
        assert not reaches(src, dst), f"{src} reached {dst} across VLANs"
    iovctl(state, "nic", "set", "a", "nic0", "--iov-weight", "0")  # VF taken away
    assert js(state, "nic", "show", "a", "nic0")["iov_usage"] is False
    assert access_and_trunk()[0][synthetic_host_ifname("a", "nic0")] == {100}
    assert reaches("a", "b") and reaches("b", "a")
    assert not reaches("a", "c") and not reaches("a", "d")


#: A port of each class upstream, by the VLAN it sends in: what the uplink brings.
UPSTREAM = {
    100: PrivateVlan(PvlanMode.PROMISCUOUS, 100),
    101: PrivateVlan(PvlanMode.ISOLATED, 100, 101),
    102: PrivateVlan(PvlanMode.COMMUNITY, 100, 102),
    103: PrivateVlan(PvlanMode.COMMUNITY, 100, 103),
}
#: PVLAN_ARGS as memberships.
ROLE = {
    "p": UPSTREAM[100],
    "i": UPSTREAM[101],
    "a": UPSTREAM[102],
    "b": UPSTREAM[103],
}
TRUNK, FAR = "pvtr", "pvtf"


def run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def upstream(bridge: str) -> None:
    """A second trunk on the switch's bridge, as a private VLAN switch upstream sees
    it: veth ``pvtr`` (tagged member of VLANs 100-103), whose far end ``pvtf`` has an
    802.1Q subinterface per VLAN, each in a namespace ``pvup<V>`` with address
    10.77.0.<V>/16 (below the addresses VMs get): a host in each VLAN."""
    run("modprobe", "8021q")
    run("ip", "link", "add", TRUNK, "type", "veth", "peer", "name", FAR)
    run("ip", "link", "set", TRUNK, "master", bridge, "up")
    run("ip", "link", "set", FAR, "up")
    for vid in UPSTREAM:
        ns, dev = f"pvup{vid}", f"{FAR}.{vid}"
        run("bridge", "vlan", "add", "dev", TRUNK, "vid", str(vid))
        run("ip", "netns", "add", ns)
        run("ip", "link", "add", "link", FAR, "name", dev, "type", "vlan", "id", str(vid))
        run("ip", "link", "set", dev, "netns", ns)
        run("ip", "-n", ns, "addr", "add", f"10.77.0.{vid}/16", "dev", dev)
        run("ip", "-n", ns, "link", "set", dev, "up")


def remove_upstream() -> None:
    subprocess.run(["ip", "link", "del", TRUNK], capture_output=True, check=False)
    for vid in UPSTREAM:
        subprocess.run(["ip", "netns", "del", f"pvup{vid}"], capture_output=True, check=False)


def neighbours(ns: str, dev: str) -> set[str]:
    """The addresses ``ns`` keeps a neighbour entry with a MAC for on ``dev``: each
    host whose ARP request for one of its addresses reached it (or that answered it)."""
    out = run("ip", "-n", ns, "-j", "neigh", "show", "dev", dev)
    return {str(n["dst"]) for n in json.loads(out or "[]") if n.get("lladdr")}


class EgressTags:
    """What leaves the PF, per source MAC: the VLAN tags of the frames the kernel
    hands the igb driver (a packet socket sees outgoing frames; the tag is in the
    auxiliary data when the NIC inserts it, inline otherwise)."""

    SOL_PACKET, PACKET_AUXDATA, PACKET_OUTGOING, TP_STATUS_VLAN_VALID = 263, 8, 4, 0x10

    def __init__(self, ifname: str) -> None:
        import socket
        import threading

        self.seen: dict[str, set[int | None]] = {}
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        self._sock.bind((ifname, 0))
        self._sock.setsockopt(self.SOL_PACKET, self.PACKET_AUXDATA, 1)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import socket
        import struct

        while not self._stop.is_set():
            try:
                data, anc, _, addr = self._sock.recvmsg(65535, socket.CMSG_SPACE(20))
            except TimeoutError:
                continue
            if addr[2] != self.PACKET_OUTGOING or len(data) < 14:
                continue
            vid: int | None = None
            for level, kind, raw in anc:
                if (level, kind) == (self.SOL_PACKET, self.PACKET_AUXDATA) and len(raw) >= 20:
                    status, _, _, _, _, tci, _ = struct.unpack("IIIHHHH", raw[:20])
                    if status & self.TP_STATUS_VLAN_VALID:
                        vid = tci & 0xFFF
            if vid is None and data[12:14] == b"\x81\x00":
                vid = int.from_bytes(data[14:16], "big") & 0xFFF
            self.seen.setdefault(data[6:12].hex(":"), set()).add(vid)

    def stop(self) -> dict[str, set[int | None]]:
        self._stop.set()
        self._thread.join()
        self._sock.close()
        return self.seen


def pings(pairs: dict[tuple[str, str], tuple[str, str]]) -> set[tuple[str, str]]:
    """One ping each (2 echoes 0.2 s apart, 1 s wait) from namespace to address, all
    at once; the pairs whose ping was answered."""
    args = ["ping", "-n", "-c", "2", "-i", "0.2", "-W", "1"]
    procs = {
        pair: subprocess.Popen(
            ["ip", "netns", "exec", ns, *args, dst],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pair, (ns, dst) in pairs.items()
    }
    return {pair for pair, proc in procs.items() if proc.wait(timeout=60) == 0}


@SOFTWARE_PATH_RAN_WITH_IOMMU
def test_pvlans_hold_on_the_software_path_and_leave_the_uplink_tagged(pvlan_vms: Path) -> None:
    """igb cannot isolate VFs: each NIC stays on the software path, with that reason,
    where the switch's bridge enforces the rule and, filtering VLANs, tags: each NIC's
    port sends in its private VLAN and the PF trunks them.

    Real packets: every ordered pair of NICs (exactly the allowed pairs talk); what
    leaves the PF carries the VLAN of its sender (100 promiscuous, 101 isolated, 102
    and 103 community); through a second trunk with a host in each VLAN: a NIC
    reaches only the host of the VLAN it sends in, and hears each host as the rule
    says a port of that class upstream may reach it. Then nothing is left behind."""
    state = pvlan_vms
    pf = igb_pf(state)["name"]
    bridge = js(state, "switch", "show", "ext")["bridge"]
    for vm, membership in ROLE.items():
        nic = js(state, "nic", "show", vm, "nic0")
        assert (nic["iov_usage"], nic["pvlan"]["enforced_by"]) == (False, "software")
        assert "does not support private VLAN isolation" in nic["status_description"]
        assert nic["pvlan"]["uplink_tagged"] is True
        assert f"tagged with VLAN {sends_in(membership)}" in nic["pvlan"]["description"]
    pvid, tagged = access_and_trunk()
    for vm, membership in ROLE.items():
        assert pvid[synthetic_host_ifname(vm, "nic0")] == {sends_in(membership)}
    assert set(UPSTREAM) <= tagged[pf] and 1 not in tagged[pf]

    address = {vm: ipv4(vm) for vm in ROLE}
    mac = {vm: js(state, "nic", "show", vm, "nic0")["mac"] for vm in ROLE}
    pairs = {(s, d): (vm_netns(s), address[d]) for s, d in itertools.permutations(ROLE, 2)}
    talked = pings(pairs)
    assert talked == {(a, b) for a, b in pairs if may_reach(ROLE[a], ROLE[b])}
    assert talked == {pair for pair in pairs if "p" in pair}  # promiscuous p reaches all

    upstream(bridge)
    try:
        # Any plug rebuilds the bridge's filters from its ports: pvtr joins the trunk.
        iovctl(state, "nic", "set", "p", "nic0", "--iov-weight", "40")
        # Each upstream host asks for each NIC (ARP, in its VLAN): who hears whom, as
        # the rule says a port of that class may reach it; but an isolated host (101)
        # reaches the isolated NIC of its VLAN too: the bridge cannot stop that (a port
        # is a member of its VLAN both ways; domain/pvlan.py, docs/failover.md).
        pings({(str(v), vm): (f"pvup{v}", address[vm]) for v in UPSTREAM for vm in ROLE})
        heard = {
            (v, vm)
            for vm in ROLE
            for v in UPSTREAM
            if f"10.77.0.{v}" in neighbours(vm_netns(vm), nic_ifname("nic0"))
        }
        assert heard == {
            (v, vm) for v in UPSTREAM for vm in ROLE if may_reach(UPSTREAM[v], ROLE[vm])
        } | {(101, "i")}
        # Each NIC asks for every upstream host: the request arrives, and only at the
        # host of the VLAN the NIC sends in; on the PF its frames carry that tag.
        # Forget the first round's answers on both sides: every ask is a broadcast
        # again (p heard every upstream host: it would ask each by unicast, which
        # leaves by the second trunk only).
        for ns in [f"pvup{v}" for v in UPSTREAM] + [vm_netns(vm) for vm in ROLE]:
            run("ip", "-n", ns, "neigh", "flush", "all")
        egress = EgressTags(pf)
        try:
            pings({(vm, str(v)): (vm_netns(vm), f"10.77.0.{v}") for vm in ROLE for v in UPSTREAM})
        finally:
            seen = egress.stop()
        asked = {
            (v, vm)
            for v in UPSTREAM
            for vm in ROLE
            if address[vm] in neighbours(f"pvup{v}", f"{FAR}.{v}")
        }
        assert asked == {(sends_in(m), vm) for vm, m in ROLE.items()}
        assert {vm: seen.get(mac[vm]) for vm in ROLE} == {
            vm: {sends_in(m)} for vm, m in ROLE.items()
        }
    finally:
        remove_upstream()

    # b (community 103) leaves: p stops hearing 103, and the PF stops carrying it.
    iovctl(state, "nic", "remove", "b", "nic0")
    pvid, tagged = access_and_trunk()
    assert 103 not in tagged.get(pf, set())
    assert 103 not in port_vlans_of(synthetic_host_ifname("p", "nic0"))
    fdb = json.loads(run("bridge", "-j", "fdb", "show", "br", bridge, "vlan", "103") or "[]")
    assert not [e for e in fdb if e.get("mac") == mac["p"]]  # p's pin left with 103
    for vm in ROLE:
        iovctl(state, "vm", "stop", vm)
        iovctl(state, "vm", "delete", vm)
    iovctl(state, "switch", "delete", "ext")
    pvid, tagged = access_and_trunk()
    assert pf not in pvid and pf not in tagged  # the PF left the bridge with its VLANs
    tables = run("nft", "list", "tables", "bridge")
    assert "iovctl_pvlan" not in tables


def port_vlans_of(port: str) -> set[int]:
    out = json.loads(run("bridge", "-j", "vlan", "show", "dev", port) or "[]")
    return {
        vid
        for entry in out
        for v in entry.get("vlans", [])
        for vid in range(v["vlan"], v.get("vlanEnd", v["vlan"]) + 1)
    }


@pytest.mark.skipif(
    not IOMMU,
    reason="without an IOMMU the switch keeps NICs on the software path (tested in test_iovctl_on_igb)",
)
def test_two_vms_on_real_vfs_ping_each_other(two_vms: Path) -> None:
    for vm in ("a", "b"):
        nic = js(two_vms, "nic", "show", vm, "nic0")
        assert nic["iov_usage"] and nic["vf_data_path_active"], nic["status_description"]
    result = ping("a", ipv4("b"), "-c", "3", "-W", "2")
    assert result.returncode == 0, result.stdout + result.stderr


def test_vm_on_vf_and_vm_on_software_path_ping_each_other(vf_and_software: Path) -> None:
    """Without an IOMMU both stay on the software path: the bridge, no NIC in between."""
    assert js(vf_and_software, "nic", "show", "v", "nic0")["vf_data_path_active"] is IOMMU
    assert js(vf_and_software, "nic", "show", "s", "nic0")["iov_usage"] is False
    for src, dst in (("v", "s"), ("s", "v")):
        result = ping(src, ipv4(dst), "-c", "3", "-W", "2")
        assert result.returncode == 0, f"{src} -> {dst}: {result.stdout}{result.stderr}"


@pytest.mark.skipif(not IOMMU, reason="without an IOMMU no NIC gets a VF")
def test_tcp_connection_survives_real_vf_removal_and_return(vf_and_software: Path) -> None:
    state = vf_and_software
    vf_netdev = vf_port("v")
    server = probe("s", "echo-server", "7100", "120")
    client = probe("v", "gap-client", ipv4("s"), "7100", "110", "20")
    try:
        time.sleep(2)
        vf_tx = tx_packets("v", vf_netdev)
        iovctl(state, "nic", "set", "v", "nic0", "--iov-weight", "0")  # VF taken away
        assert js(state, "nic", "show", "v", "nic0")["iov_usage"] is False
        time.sleep(2)
        syn_tx = tx_packets("v", synthetic_vm_ifname("nic0"))
        iovctl(state, "nic", "set", "v", "nic0", "--iov-weight", "50")  # and given back
        nic = js(state, "nic", "show", "v", "nic0")
        assert nic["vf_data_path_active"] is True, nic["status_description"]
        back_vf = vf_port("v")
        back_tx = tx_packets("v", back_vf)
        # TCP resends what a switch lost after its retransmission timeout, which
        # backs off: on a loaded TCG host give it time to catch up.
        time.sleep(6)
        client.send_signal(signal.SIGUSR1)
        out, err = client.communicate(timeout=30)
    finally:
        client.kill()
        server.kill()
    result = json.loads(out.strip().splitlines()[-1])
    sent, received = result["sent"], result["received"]
    echoed = [t for t in received if t is not None]
    gap_ms = max(b - a for a, b in itertools.pairwise(echoed)) * 1000
    lost = sum(t is None for t in received)
    print(f"real VF failover: {len(sent)} sent, {lost} UDP lost, max UDP gap {gap_ms:.0f} ms")
    assert vf_tx > 0 and syn_tx > 0  # each path carried the connection in its turn
    assert tx_packets("v", back_vf) > back_tx
    assert result["tcp_error"] is None, err
    assert len(result["tcp_times"]) == len(sent)  # every TCP message came back
    # Under TCG a command takes seconds; the switch itself is one netlink round.
    assert gap_ms < 1000
