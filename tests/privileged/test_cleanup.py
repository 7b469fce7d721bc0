"""Nothing is left behind: after deleting through the services plus cleanup, and after
a process was killed in the middle of building a VM's failover pair. That includes the
spoof-check chains of the synthetic ports in the host's nftables table, which the
kernel (6.18 here) keeps after their devices are gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from netns_lab import Lab, probe

from iovctl.adapters.netns import names
from iovctl.adapters.netns.cleanup import cleanup, leftovers
from iovctl.adapters.netns.kernel import Links, list_netns, run_tool, wait_until
from iovctl.adapters.netns.nft import nft_chains
from iovctl.domain.model import PrivateVlan, PvlanMode
from iovctl.services import adapters, switches, vms
from iovctl.services.views import bridge_name

pytestmark = pytest.mark.privileged


def _host_state() -> tuple[set[str], set[str], str]:
    """Namespaces, host links and the host's nftables ruleset."""
    links = Links()
    try:
        host_links = set(links.names())
    finally:
        links.close()
    return set(list_netns()), host_links, run_tool(["nft", "list", "ruleset"])


def _spoof_checks(*vms: str) -> set[str]:
    """The synthetic ports' spoof-check chains of these VMs' NIC nic0 that exist."""
    mine = {names.synthetic_host_ifname(vm, "nic0") for vm in vms}
    return mine & set(nft_chains(names.SYNTHETIC_NFT_TABLE))


def _pvlan_chains(switch: str) -> set[str]:
    """The private VLAN chain of this switch's bridge, if it exists."""
    return {bridge_name(switch)} & set(nft_chains(names.PVLAN_NFT_TABLE, "bridge"))


def test_deleting_everything_leaves_nothing_behind(make_lab: Callable[..., Lab]) -> None:
    before = _host_state()
    lab = make_lab("vepa", num_vfs=2)
    a = lab.add_vm("a", weight=100, max_rate=500)
    b = lab.add_vm("b", weight=0, pvlan=PrivateVlan(PvlanMode.PROMISCUOUS, 100))
    c = lab.add_vm("c", weight=0, pvlan=PrivateVlan(PvlanMode.ISOLATED, 100, 101))
    assert probe(lab.ns(c), "ping", lab.ip(b), "2")["received"] == 2
    assert len(_spoof_checks(a, b, c)) == 3  # one per synthetic port, VF or not
    assert _pvlan_chains(lab.switch)
    lab.call(vms.remove_nic, c, "nic0")  # unplugged from a running VM
    assert not _spoof_checks(c)
    assert _pvlan_chains(lab.switch)  # a, in none, and b, in one, must not meet
    lab.call(vms.set_nic, b, "nic0", vms.NicChanges(clear_pvlan=True))
    assert not _pvlan_chains(lab.switch)  # no private VLAN left: nothing to filter
    lab.call(vms.set_nic, a, "nic0", vms.NicChanges(pvlan=PrivateVlan(PvlanMode.ISOLATED, 100, 7)))
    assert _pvlan_chains(lab.switch)
    for vm in (a, b, c):
        lab.call(vms.stop_vm, vm)
        lab.call(vms.delete_vm, vm)
    assert not _spoof_checks(a, b)
    lab.call(adapters.set_num_vfs, lab.adapter, 0)
    lab.call(switches.delete, lab.switch)
    lab.runtime.remove_switch(lab.switch)  # what switches.delete should call (proposed)
    # VMs are gone with their namespaces and synthetic veths; the switch's bridge and
    # the emulated NIC are hardware-side objects that cleanup removes.
    assert not [n for n in list_netns() if n.startswith(f"iov-vm-{lab.tag}")]
    cleanup(netns_prefix=f"iov-nic-{lab.adapter}", extra_links=(lab.adapter,))
    cleanup(netns_prefix=lab.world, link_prefix=lab.world)
    assert wait_until(lambda: _host_state() == before)


_KILLED_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from iovctl.adapters.netns.nic import EmulatedNic
    from iovctl.adapters.netns.runtime import NetnsVmRuntime
    from iovctl.adapters.netns.spec import parse_emulation
    from iovctl.domain.model import NicConfig, PrivateVlan, PvlanMode
    tag, state = sys.argv[1], Path(sys.argv[2])
    spec = parse_emulation({"name": tag, "world": {"netns": "iov-w" + tag},
                            "adapters": [{"name": "ie" + tag, "total_vfs": 4}]})
    nic = EmulatedNic(spec)
    nic.ensure()
    nic.set_num_vfs("ie" + tag, 4)
    runtime = NetnsVmRuntime(lambda switch: "ie" + tag)
    isolated = PrivateVlan(PvlanMode.ISOLATED, 100, 101)
    config = NicConfig(switch="sw" + tag, mac="52:54:00:77:00:01", pvlan=isolated)
    runtime.plug_software_nic(tag + "k", "nic0", config)
    runtime.attach_vf(tag + "k", "nic0", nic.virtual_function("ie" + tag, 0))
    state.write_text("built")
    while True:  # building more VMs when the kill arrives
        for i in range(1, 4):
            runtime.plug_software_nic(f"{tag}k{i}", "nic0", config)
    """
)


def test_cleanup_after_a_killed_process(tmp_path: Path) -> None:
    before = _host_state()
    tag = uuid.uuid4().hex[:6]
    state = tmp_path / "state"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_SCRIPT, tag, str(state)])
    try:
        assert wait_until(state.exists, timeout=30), "the builder never got going"
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        spaces, _, _ = leftovers(f"iov-vm-{tag}")
        assert spaces  # there is something to clean up
        first = names.synthetic_host_ifname(f"{tag}k", "nic0")
        assert first in leftovers(link_prefix=first)[2]  # its spoof check, too
        assert _pvlan_chains(f"sw{tag}")  # and its switch's private VLAN filters
        # What `iovctl` cleanup does with prefixes "iov-" and "iov", scoped to this test.
        ours = [bridge_name(f"sw{tag}"), f"ie{tag}"]
        ours += [names.synthetic_host_ifname(vm, "nic0") for vm in _killed_vms(tag)]
        removed, chains = [], []
        for prefix in (f"iov-vm-{tag}", f"iov-nic-ie{tag}", f"iov-w{tag}"):
            report = cleanup(netns_prefix=prefix, link_prefix=ours[0], extra_links=tuple(ours))
            removed += report.namespaces
            chains += report.nft_chains
        assert f"iov-nic-ie{tag}" in removed
        assert first in chains
        assert bridge_name(f"sw{tag}") in chains
        assert not _pvlan_chains(f"sw{tag}")
        assert not _spoof_checks(*_killed_vms(tag))
    finally:
        if proc.poll() is None:
            proc.kill()
    assert wait_until(lambda: _host_state() == before)
    assert not [n for n in list_netns() if names.NETNS_PREFIX in n and tag in n]


def _killed_vms(tag: str) -> list[str]:
    return [f"{tag}k", *(f"{tag}k{i}" for i in range(1, 4))]
