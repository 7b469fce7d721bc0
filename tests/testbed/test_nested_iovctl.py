"""Issue 12's "Done when" in the igb guest as the host: iovctl is the product under test.

The testbed guest (L1, ``tests/testbed/run --nested``) runs libvirtd, QEMU (TCG) and
iovctl from the shared repository: the Linux backend on the igb PF, the libvirt
runtime, and ``iovctl daemon`` in the background (its own state directory; the test
talks to it with ``--connect unix://...``). Two domains, defined with virsh and
imported: ``l2`` (the busybox guest of ``guest/nested-init``, weight 50) and a
``waiter`` (weight 10, started paused: running for libvirt and iovctl, no CPU). One VF.

- ``virsh start l2`` (outside iovctl): the daemon follows, grants the VF, hot-plugs it
  teamed with the virtio half iovctl added; the VF carries L2's traffic.
- ``nic set --iov-weight 0`` takes the VF away (hot-unplug, DEVICE_REMOVED, scrub) and
  ``--iov-weight 50`` gives it back, while a TCP connection L2 -> peer keeps going.
- ``virsh destroy l2`` (outside iovctl): the daemon releases the VF, scrubs it and
  gives it to the waiter; the events say what happened.

It prints ``@@NESTED-METRICS`` lines: start to VF held and to VF in use, unplug time,
the connection's longest silence, destroy to the waiter's VF.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nested_lab import (  # this folder is on sys.path
    BOOT_BOUND_S,
    CONSOLE,
    NESTED_ONLY,
    PEER_MAC,
    PLUG_BOUND_S,
    SERVER,
    TCP_LOG,
    URI,
    RemovalWatch,
    domain_xml,
    libvirtd,  # noqa: F401 (a fixture)
    metric,
    pf_vf_mac,
    reports,
    run,
    standby_carries_traffic,
    tcp_lines,
    vf_carries_traffic,
    vf_of,
    virsh,
    wait_for,
)

pytestmark = NESTED_ONLY

L2 = "l2"
WAITER = "waiter"
MAC = "52:54:00:77:00:02"
WAITER_MAC = "52:54:00:77:00:03"
PEER_NS = "iovpeer"
WORK = Path("/tmp/iovctl-nested")
STATE = WORK / "state"
SOCKET = WORK / "iovctl.sock"
DAEMON_LOG = WORK / "daemon.log"
# The daemon's Python deps (tests/testbed/nested-requirements.txt), on the run's share.
PYDEPS = Path("/mnt/run/nested-pydeps")
# A guest that has not negotiated failover keeps its VF this long: past L2's boot,
# and the paused waiter never negotiates.
FAILOVER_WAIT_S = 1800
FOLLOW_BOUND_S = 120.0


def env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(PYDEPS), os.environ.get("PYTHONPATH", "")) if p)
    return dict(
        os.environ,
        PYTHONPATH=path,
        IOVCTL_STATE_DIR=str(STATE),
        IOVCTL_RUNTIME="libvirt",
        IOVCTL_LIBVIRT_URI=URI,
        COLUMNS="200",
    )


def iovctl(*args: str, connect: bool = True, timeout: float = 300) -> str:
    via = ["--connect", f"unix://{SOCKET}"] if connect else []
    r = subprocess.run(
        [sys.executable, "-m", "iovctl", *via, *args],
        capture_output=True, text=True, env=env(), timeout=timeout,
    )  # fmt: skip
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 0, f"iovctl {' '.join(args)}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    return r.stdout


def iovctl_batch(*commands: list[str]) -> None:
    """iovctl commands (direct, before the daemon runs) in one process: the CLI's
    imports cost seconds each under TCG."""
    script = (
        "import sys, json\n"
        "from iovctl.cli.main import main\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    rc = main(argv)\n"
        "    if rc:\n"
        "        sys.exit(f'iovctl {\" \".join(argv)}: exit {rc}')\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", script, json.dumps(commands)],
        capture_output=True, text=True, env=env(), timeout=600,
    )  # fmt: skip
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 0, f"{r.stdout}{r.stderr}"


def js(*args: str, connect: bool = True) -> Any:
    return json.loads(iovctl(*args, "-o", "json", connect=connect))


def nic(vm: str) -> dict[str, Any]:
    shown = js("nic", "show", vm, "nic0")
    return shown[0] if isinstance(shown, list) else shown


def events_since(wall: float) -> list[dict[str, Any]]:
    return [e for e in js("events") if e["time"] >= wall]


def first(events: list[dict[str, Any]], code: str, name: str) -> dict[str, Any]:
    found = [e for e in events if e["code"] == code and e["object_name"] == name]
    assert found, f"no {code} event for {name} in {events}"
    return found[0]


@pytest.fixture(scope="module")
def lab(libvirtd: None) -> Iterator[dict[str, Any]]:  # noqa: F811 (the imported fixture)
    dev = Path("/sys/bus/pci/devices/0000:01:00.0")
    pf = next((dev / "net").iterdir()).name
    WORK.mkdir(parents=True, exist_ok=True)
    CONSOLE.unlink(missing_ok=True)
    TCP_LOG.unlink(missing_ok=True)
    for name, console in ((L2, CONSOLE), (WAITER, WORK / "waiter-console.log")):
        xml = WORK / f"{name}.xml"
        xml.write_text(domain_xml(name, console))
        virsh("define", str(xml))
    t0 = time.monotonic()
    iovctl_batch(
        ["adapter", "enable", pf, "--num-vfs", "1"],
        ["switch", "create", "ext", "--uplink", pf, "--iov"],
        ["vm", "import", L2],
        ["vm", "import", WAITER],
        ["nic", "add", L2, "--switch", "ext", "--iov-weight", "50", "--mac", MAC],
        ["nic", "add", WAITER, "--switch", "ext", "--iov-weight", "10", "--mac", WAITER_MAC],
    )
    metric("iovctl_setup_s", time.monotonic() - t0)
    # The peer: a namespace on the switch's bridge (iovctl built it, the PF its uplink).
    from iovctl.domain.names import bridge_name

    run("ip", "netns", "add", PEER_NS)
    run("ip", "link", "add", "iovpeer0", "type", "veth", "peer", "name", "eth0", "netns", PEER_NS)
    run("ip", "link", "set", "iovpeer0", "master", bridge_name("ext"), "up")
    run("ip", "-n", PEER_NS, "link", "set", "eth0", "address", PEER_MAC)
    run("ip", "-n", PEER_NS, "addr", "add", "10.77.0.1/24", "dev", "eth0")
    run("ip", "-n", PEER_NS, "link", "set", "eth0", "up")
    run("ip", "-n", PEER_NS, "link", "set", "lo", "up")
    # A VF's frame to a MAC the NIC's switch does not know goes out on the wire: the
    # peer's MAC goes into the PF's own unicast filter (the peer is not iovctl's).
    run("bridge", "fdb", "replace", PEER_MAC, "dev", pf, "self")
    server = subprocess.Popen(
        ["ip", "netns", "exec", PEER_NS, sys.executable, "-c", SERVER, str(TCP_LOG)]
    )
    log = DAEMON_LOG.open("w")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "iovctl", "daemon", "--socket", str(SOCKET), "--read-socket", "",
         "--failover-wait", str(FAILOVER_WAIT_S)],
        stdout=log, stderr=subprocess.STDOUT, env=env(),
    )  # fmt: skip
    t0 = time.monotonic()
    try:
        wait_for("the daemon's socket", lambda: "serving state directory" in DAEMON_LOG.read_text(),
                 180, 0.5)  # fmt: skip
    except AssertionError:
        print(DAEMON_LOG.read_text(), flush=True)
        raise
    metric("daemon_ready_s", time.monotonic() - t0)
    yield {"pf": pf, "dev": dev}
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(60)
    except subprocess.TimeoutExpired:
        daemon.kill()
    print("daemon log:\n" + DAEMON_LOG.read_text(errors="replace"), flush=True)
    server.send_signal(signal.SIGTERM)
    for name in (L2, WAITER):
        virsh("destroy", name, check=False)
        virsh("undefine", name, check=False)
    run("ip", "netns", "del", PEER_NS, check=False)


def test_iovctl_gives_a_libvirt_guest_a_vf_and_hands_it_on(lab: dict[str, Any]) -> None:
    pf = lab["pf"]

    # -- virsh start (outside iovctl): the daemon grants the VF ----------------------
    wall_start, t_start = time.time(), time.monotonic()
    virsh("start", L2)
    metric("virsh_start_s", time.monotonic() - t_start)
    wait_for("l2/nic0 holds the VF", lambda: nic(L2)["virtual_function"] is not None,
             FOLLOW_BOUND_S, 0.2)  # fmt: skip
    metric("start_to_vf_held_polled_s", time.monotonic() - t_start)
    since = events_since(wall_start)
    metric("start_to_vf_held_s", first(since, "vf-assigned", f"{L2}/nic0")["time"] - wall_start)
    assert any("started outside iovctl" in e["message"] for e in since if e["object_name"] == L2), (
        since
    )
    assert pf_vf_mac(pf, 0) == MAC  # iovctl set the NIC's MAC on the PF (managed='no')
    live = virsh("dumpxml", L2)
    assert "<teaming type='persistent'/>" in live
    m = re.search(r"<teaming type='transient' persistent='(ua-[^']+)'/>", live)
    assert m, live
    assert f"<alias name='{m.group(1)}'/>" in live  # the virtio half it is teamed with
    assert "<hostdev mode='subsystem' type='pci' managed='no'>" in live

    wait_for("L2 reports", lambda: len(reports()) > 0, BOOT_BOUND_S, 1)
    metric("start_to_nested_up_s", time.monotonic() - t_start)
    wait_for("the VF carries L2's traffic", vf_carries_traffic, PLUG_BOUND_S)
    metric("start_to_vf_in_use_s", time.monotonic() - t_start)
    vfdev = vf_of(reports()[-1])
    assert vfdev is not None and vfdev.mac == MAC
    wait_for(
        "iovctl sees the VF path active", lambda: nic(L2)["vf_data_path_active"] is True, 60, 1
    )
    metric("start_to_vf_data_path_active_s", time.monotonic() - t_start)

    # -- iovctl takes the VF away and gives it back; TCP stays up --------------------
    wait_for("the TCP connection", lambda: len(tcp_lines()[1]) > 20, 60)
    watch = RemovalWatch(L2)
    wall_detach, t_detach = time.time(), time.monotonic()
    iovctl("nic", "set", L2, "nic0", "--iov-weight", "0")
    metric("weight0_command_s", time.monotonic() - t_detach)
    _, wall_removed = watch.wait()
    # From the command's start (its CLI's own start-up included) to QEMU's removal.
    metric("unplug_s", wall_removed - wall_detach)
    since = events_since(wall_detach)
    released = first(since, "vf-released", f"{L2}/nic0")
    assert "scrubbed" in released["message"], released
    # The daemon's release (its event is stamped when it decided) to QEMU's removal.
    metric("release_to_removed_s", wall_removed - released["time"])
    assert nic(L2)["virtual_function"] is None
    assert "<hostdev" not in virsh("dumpxml", L2)
    scrubbed = pf_vf_mac(pf, 0)
    print(f"VF 0 on the PF after the unplug: MAC {scrubbed}", flush=True)
    assert scrubbed != MAC  # scrubbed once QEMU let it go
    wait_for("L2 runs on virtio", standby_carries_traffic, 60)

    t_back = time.monotonic()
    iovctl("nic", "set", L2, "nic0", "--iov-weight", "50")
    wait_for("the VF carries L2's traffic again", vf_carries_traffic, PLUG_BOUND_S)
    metric("weight50_to_vf_in_use_s", time.monotonic() - t_back)
    time.sleep(3)  # a few more lines on the VF after its return
    conns, lines, eofs = tcp_lines()
    assert conns == 1 and eofs == 0, (conns, eofs)
    seqs = [n for _, n in lines]
    assert seqs == list(range(1, len(seqs) + 1))  # nothing lost, nothing repeated
    window = [t for t, _ in lines if t >= t_detach - 5]
    assert window and window[-1] > t_back
    metric("tcp_longest_silence_s", max(b - a for a, b in itertools.pairwise(window)))

    # -- a waiter, then virsh destroy (outside iovctl): the VF goes to it ------------
    virsh("start", "--paused", WAITER)  # running for libvirt and iovctl, costs no CPU
    wait_for("the waiter's NIC waits for a VF",
             lambda: nic(WAITER)["status_reason"] == "vfs-exhausted", FOLLOW_BOUND_S, 1)  # fmt: skip
    wall_destroy, t_destroy = time.time(), time.monotonic()
    virsh("destroy", L2)
    wait_for("the waiter holds the VF", lambda: nic(WAITER)["virtual_function"] is not None,
             FOLLOW_BOUND_S, 0.2)  # fmt: skip
    metric("destroy_to_waiter_polled_s", time.monotonic() - t_destroy)
    since = events_since(wall_destroy)
    print("\n".join(f"{e['code']}: {e['message']}" for e in since), flush=True)
    stopped = first(since, "vm-stopped", L2)
    assert "stopped outside iovctl" in stopped["message"], stopped
    released = first(since, "vf-released", f"{L2}/nic0")
    granted = first(since, "vf-assigned", f"{WAITER}/nic0")
    assert released["time"] <= granted["time"]
    metric("destroy_to_released_s", released["time"] - wall_destroy)
    metric("destroy_to_waiter_s", granted["time"] - wall_destroy)
    assert nic(L2)["virtual_function"] is None
    assert pf_vf_mac(pf, 0) == WAITER_MAC  # L2's MAC scrubbed, the waiter's set
    waiter_xml = virsh("dumpxml", WAITER)
    assert "<hostdev mode='subsystem' type='pci' managed='no'>" in waiter_xml, waiter_xml
    assert "<teaming type='transient'" in waiter_xml
