"""The libvirt runtime beyond the shared contract: VM ownership, refusals, lifecycle
events, facts, on libvirt's in-process test driver (``test:///default``: a real
libvirt, no daemon, no QEMU); and one real guest on libvirtd + QEMU (TCG) whose virtio
NIC reaches a namespace peer across the switch's bridge, started and destroyed from
outside with virsh (privileged, shared lock; see libvirt_host.py)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iovctl.adapters.libvirt import domain_xml as dx
from iovctl.domain.model import NicConfig, VmPowerChange, VmTemplate
from iovctl.errors import Conflict, InvalidInput, NotFound

from .libvirt_host import PEER_ADDRESS, PREFIX, URI, LibvirtHost

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed (extra: libvirt)")

TEST_URI = "test:///default"
KERNEL = VmTemplate(memory_mib=128, kernel="/boot/vmlinuz", cmdline="console=ttyS0")


@pytest.fixture
def runtime() -> Iterator[Any]:
    from iovctl.adapters.libvirt.runtime import LibvirtVmRuntime

    rt = LibvirtVmRuntime(TEST_URI, lambda switch: "lo", domain_type="qemu")
    names: list[str] = []
    rt.names = names  # what each test defined: forgotten after it
    yield rt
    for name in names:
        rt.forget_vm(name)
        dom = rt._conn().domain(name)
        if dom is not None:  # defined by the test itself, not iovctl
            if dom.isActive():
                dom.destroy()
            dom.undefine()
    rt.close()


def _raw_define(rt: Any, name: str, machine: str, root_ports: int) -> None:
    ports = "".join(
        f"<controller type='pci' index='{i}' model='pcie-root-port'/>"
        for i in range(1, root_ports + 1)
    )
    rt._conn().conn.defineXML(
        f"<domain type='test'><name>{name}</name><memory>131072</memory>"
        f"<os><type arch='x86_64' machine='{machine}'>hvm</type></os>"
        f"<devices><controller type='pci' index='0' model='pcie-root'/>{ports}</devices>"
        "</domain>"
    )
    rt.names.append(name)


def test_define_start_destroy_and_power_states(runtime: Any) -> None:
    runtime.names.append("lvt-a")
    runtime.define_vm("lvt-a", KERNEL)
    runtime.define_vm("lvt-a", KERNEL)  # idempotent for its own
    assert runtime.power_states()["lvt-a"] is False
    runtime.start_vm("lvt-a")
    runtime.start_vm("lvt-a")
    assert runtime.is_running("lvt-a") and runtime.power_states()["lvt-a"] is True
    runtime.stop_vm("lvt-a")
    runtime.stop_vm("lvt-a")
    assert not runtime.is_running("lvt-a")
    assert runtime.wait_released("lvt-a", ["nic0"], 1.0)
    assert "test" not in runtime.power_states()  # the driver's own domain is not iovctl's


def test_the_defined_domain_round_trips_as_iovctls_q35(runtime: Any) -> None:
    runtime.names.append("lvt-b")
    runtime.define_vm("lvt-b", KERNEL)
    view = dx.parse_domain(runtime._conn().get_domain("lvt-b").XMLDesc(2))
    assert view.q35 and view.ownership == dx.Ownership(dx.Origin.DEFINED)
    assert len(view.free_root_ports()) >= dx.SPARE_ROOT_PORTS - 1


def test_forget_undefines_what_iovctl_defined(runtime: Any) -> None:
    runtime.define_vm("lvt-c", KERNEL)
    runtime.start_vm("lvt-c")
    runtime.forget_vm("lvt-c")
    runtime.forget_vm("lvt-c")
    assert runtime._conn().domain("lvt-c") is None


def test_define_refuses_a_domain_iovctl_did_not_define(runtime: Any) -> None:
    with pytest.raises(Conflict) as raised:
        runtime.define_vm("test", KERNEL)
    assert raised.value.code == "domain-exists" and "vm import" in raised.value.hint
    with pytest.raises(InvalidInput):
        runtime.define_vm("lvt-bad", VmTemplate())
    assert runtime._conn().domain("lvt-bad") is None


def test_adopt_refuses_what_cannot_carry_a_pair(runtime: Any) -> None:
    with pytest.raises(NotFound) as unknown:
        runtime.adopt_vm("lvt-none")
    assert unknown.value.code == "unknown-domain" and "list --all" in unknown.value.hint
    _raw_define(runtime, "lvt-pc", "pc-i440fx-7.2", 2)
    with pytest.raises(Conflict) as pc:
        runtime.adopt_vm("lvt-pc")
    assert pc.value.code == "not-q35" and "q35" in pc.value.hint
    _raw_define(runtime, "lvt-full", "q35", 0)
    with pytest.raises(Conflict) as full:
        runtime.adopt_vm("lvt-full")
    assert full.value.code == "no-hotplug-slot" and "pcie-root-port" in full.value.hint
    for name in ("lvt-pc", "lvt-full"):  # refused: left exactly as it was
        assert dx.parse_domain(runtime._conn().get_domain(name).XMLDesc(2)).ownership is None


def test_adopt_reserves_a_root_port_and_forget_gives_the_domain_back(runtime: Any) -> None:
    _raw_define(runtime, "lvt-own", "q35", 2)
    runtime.adopt_vm("lvt-own")
    runtime.adopt_vm("lvt-own")  # idempotent
    ownership = dx.parse_domain(runtime._conn().get_domain("lvt-own").XMLDesc(2)).ownership
    assert ownership is not None and ownership.origin is dx.Origin.ADOPTED
    assert len(ownership.spare_ports) == 1
    assert runtime.power_states() == {**runtime.power_states(), "lvt-own": False}
    with pytest.raises(Conflict) as defined:
        runtime.define_vm("lvt-own", KERNEL)
    assert defined.value.code == "domain-exists"
    runtime.forget_vm("lvt-own")
    dom = runtime._conn().get_domain("lvt-own")  # still the admin's
    assert dx.parse_domain(dom.XMLDesc(2)).ownership is None


def test_watch_reports_starts_and_stops_of_iovctls_domains_only(runtime: Any) -> None:
    runtime.names.append("lvt-w")
    runtime.define_vm("lvt-w", KERNEL)
    _raw_define(runtime, "lvt-other", "q35", 1)
    seen: list[VmPowerChange] = []
    stop = threading.Event()
    watcher = threading.Thread(target=runtime.watch, args=(seen.append, stop))
    watcher.start()
    try:
        time.sleep(0.3)  # registered
        other = runtime._conn().get_domain("lvt-other")
        other.create()
        other.destroy()
        runtime.start_vm("lvt-w")
        runtime.stop_vm("lvt-w")
        deadline = time.monotonic() + 5
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        watcher.join(timeout=5)
    assert not watcher.is_alive()  # returned within a second of stop
    assert seen == [
        VmPowerChange("lvt-w", True, "started"),
        VmPowerChange("lvt-w", False, "destroyed"),
    ]


def test_facts_say_versions_or_why_unreachable(runtime: Any) -> None:
    from iovctl.adapters.libvirt.runtime import LibvirtVmRuntime

    facts = runtime.facts()
    assert facts.kind == "libvirt" and facts.reachable and facts.location == TEST_URI
    assert facts.manager_version is not None and facts.manager_version >= (6, 1, 0)
    broken = LibvirtVmRuntime("test:///nowhere/at-all.xml", lambda s: "lo")
    gone = broken.facts()
    assert not gone.reachable and "nowhere" in gone.error
    broken.close()


def test_no_vf_path_and_no_counters_on_a_driver_without_qemu(runtime: Any) -> None:
    runtime.names.append("lvt-q")
    runtime.define_vm("lvt-q", KERNEL)
    runtime.start_vm("lvt-q")
    assert runtime.vf_data_path_active("lvt-q", "nic0") is False
    assert runtime.nic_tx_bytes("lvt-q", "nic0").synthetic == 0
    assert runtime.guest_command("lvt-q") is None
    assert runtime.vfs_held_elsewhere() == frozenset()


def test_without_libvirt_python_the_runtime_says_how_to_install_it() -> None:
    code = (
        "import sys; sys.modules['libvirt'] = None\n"
        "from iovctl.adapters.libvirt.runtime import LibvirtVmRuntime\n"
        "from iovctl.errors import Conflict\n"
        "rt = LibvirtVmRuntime('test:///default', lambda s: 'lo')\n"
        "assert not rt.facts().reachable\n"
        "try:\n    rt.is_running('x')\nexcept Conflict as e:\n"
        "    print(e.code, '|', e.hint)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("libvirt-missing |") and "iovctl[libvirt]" in done.stdout


def test_wiring_binds_the_state_dir_to_its_libvirt_uri(tmp_path: Path) -> None:
    from iovctl.errors import StateError
    from iovctl.wiring import Options, open_context

    options = Options(state_dir=tmp_path, sim="demo", runtime="libvirt", libvirt_uri=TEST_URI)
    ctx = open_context(options)
    try:
        assert ctx.runtime.follows_hypervisor is True
        assert ctx.runtime.facts().location == TEST_URI
    finally:
        ctx.close()
    with pytest.raises(StateError):
        open_context(Options(state_dir=tmp_path, runtime="libvirt", libvirt_uri="qemu:///session"))
    again = open_context(Options(state_dir=tmp_path))
    try:
        assert again.runtime.facts().location == TEST_URI
    finally:
        again.close()


# -- a real guest -----------------------------------------------------------------


@pytest.mark.privileged
def test_a_guest_on_the_switch_reaches_the_peer_and_virsh_changes_are_seen(
    libvirt_host: LibvirtHost,
) -> None:
    """One TCG boot: the guest's virtio NIC (the pair's persistent half, teamed) on the
    switch's bridge answers the namespace peer; its tap counts what it sent; virsh
    destroy and start from outside arrive through ``watch``."""
    rt = libvirt_host.runtime()
    vm, mac, address = "iovlvguest", "52:54:00:c7:77:01", "10.78.0.2"
    config = NicConfig(switch=libvirt_host.switch, mac=mac)
    seen: list[VmPowerChange] = []
    stop = threading.Event()
    watcher = threading.Thread(target=rt.watch, args=(seen.append, stop))
    try:
        rt.define_vm(vm, libvirt_host.template(f"iovctl.addr={mac}={address}/{PREFIX}"))
        rt.plug_software_nic(vm, "nic0", config)  # into the config: the domain is off
        watcher.start()
        started = time.monotonic()
        rt.start_vm(vm)
        start_s = time.monotonic() - started
        boot_s = libvirt_host.wait_console(vm, f"iovctl-guest: ready {mac}", 180)
        print(f"\nlibvirt guest: start {start_s:.1f} s, NIC ready {boot_s + start_s:.1f} s")
        before = rt.nic_tx_bytes(vm, "nic0")
        ping = libvirt_host.peer("busybox", "ping", "-c", "5", "-W", "10", address)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        after = rt.nic_tx_bytes(vm, "nic0")
        assert after.synthetic - before.synthetic >= 5 * 98  # its 5 echo replies at least
        assert after.vf == 0
        live = dx.parse_domain(rt._conn().get_domain(vm).XMLDesc(0))
        assert live.interfaces[dx.pair_aliases("nic0")[0]].bridge == dx.parse_domain(
            rt._conn().get_domain(vm).XMLDesc(2)
        ).interfaces[dx.pair_aliases("nic0")[0]].bridge
        assert PEER_ADDRESS  # the peer answered from its namespace

        # A second NIC hot-plugged into the booted guest, and hot-unplugged: gone from
        # the live domain once QEMU reported DEVICE_REMOVED (not a fixed sleep).
        second = NicConfig(switch=libvirt_host.switch, mac="52:54:00:c7:77:02")
        rt.plug_software_nic(vm, "nic1", second)
        dom = rt._conn().get_domain(vm)
        alias = dx.pair_aliases("nic1")[0]
        assert alias in dx.parse_domain(dom.XMLDesc(0)).aliases
        unplugging = time.monotonic()
        rt.unplug_nic(vm, "nic1")
        print(f"libvirt guest: virtio NIC hot-unplugged in {time.monotonic() - unplugging:.2f} s")
        assert alias not in dx.parse_domain(dom.XMLDesc(0)).aliases
        assert alias not in dx.parse_domain(dom.XMLDesc(2)).aliases

        subprocess.run(["virsh", "-c", URI, "destroy", vm], check=True, capture_output=True)
        subprocess.run(["virsh", "-c", URI, "start", vm], check=True, capture_output=True)
        deadline = time.monotonic() + 20
        while len(seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [(c.running, c.detail) for c in seen] == [
            (True, "started"),
            (False, "destroyed"),
            (True, "started"),
        ]
        assert rt.power_states()[vm] is True
    finally:
        stop.set()
        if watcher.is_alive():
            watcher.join(timeout=5)
        rt.forget_vm(vm)
        rt.remove_switch(libvirt_host.switch)
        rt.close()
    assert not watcher.is_alive()


def test_vfs_of_active_hostdev_pools_and_foreign_hostdevs_are_held_elsewhere(
    runtime: Any,
) -> None:
    conn = runtime._conn().conn
    pool = conn.networkDefineXML(
        "<network><name>lvt-pool</name><forward mode='hostdev' managed='yes'>"
        "<address type='pci' domain='0x0000' bus='0x03' slot='0x10' function='0x1'/>"
        "</forward></network>"
    )
    try:
        assert runtime.vfs_held_elsewhere() == frozenset()  # a pool not started holds none
        pool.create()
        assert runtime.vfs_held_elsewhere() == {"0000:03:10.1"}
        # A running domain that is not iovctl's, with a passed-through device.
        conn.defineXML(
            "<domain type='test'><name>lvt-hd</name><memory>131072</memory>"
            "<os><type>hvm</type></os><devices>"
            "<hostdev mode='subsystem' type='pci' managed='no'><source>"
            "<address domain='0x0000' bus='0x04' slot='0x10' function='0x2'/>"
            "</source></hostdev></devices></domain>"
        )
        runtime.names.append("lvt-hd")
        runtime._conn().get_domain("lvt-hd").create()
        assert runtime.vfs_held_elsewhere() == {"0000:03:10.1", "0000:04:10.2"}
    finally:
        if pool.isActive():
            pool.destroy()
        pool.undefine()
