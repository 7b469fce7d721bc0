"""The traffic lab the bench gets from wiring (``ports.traffic_lab``), on the kernel.

A veth stands in for a real PF (the checks are link-level: up, master, addresses);
a run's objects are made by hand with the names the namespace backends give them,
next to another run's, which must survive. Root, under the shared lock.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterator

import pytest

from iovctl.adapters.netns import names
from iovctl.adapters.netns.kernel import Links, ensure_netns, list_netns, remove_netns
from iovctl.domain.names import bridge_name
from iovctl.ports.traffic_lab import LabObjects, LabRun, PfLink, TrafficLab
from iovctl.wiring import traffic_lab

pytestmark = pytest.mark.privileged


@pytest.fixture
def lab() -> Iterator[TrafficLab]:
    built = traffic_lab()
    yield built
    built.close()
    built.close()  # idempotent


@pytest.fixture
def links() -> Iterator[Links]:
    handle = Links()
    yield handle
    handle.close()


def _veth(links: Links, name: str) -> int:
    """A veth ``name`` whose peer's name matches no run (``iovctl cleanup`` finds it)."""
    peer = f"iovq{zlib.crc32(name.encode()):08x}"
    links.add(f"creating {name}", ifname=name, kind="veth", peer=peer)
    index = links.index(name)
    assert index is not None
    return index


def test_pf_link_sees_master_and_addresses_and_restore_puts_it_back(
    lab: TrafficLab, links: Links
) -> None:
    tag = uuid.uuid4().hex[:6]
    pf, bridge = f"iovt{tag}", f"iovt{tag}b"
    try:
        assert lab.pf_link(pf) is None
        index = _veth(links, pf)
        found = lab.pf_link(pf)
        assert found == PfLink(pf, up=False, has_master=False, addresses=())

        # Up (IPv6 link-local addresses come, and cut nothing), then an IPv4 address.
        links.set("up", index=index, state="up")
        assert lab.pf_link(pf) == PfLink(pf, up=True, has_master=False, addresses=())
        links().addr("add", index=index, address="10.99.7.1", prefixlen=24)
        assert lab.pf_link(pf) == PfLink(pf, up=True, has_master=False, addresses=("10.99.7.1",))
        links().addr("del", index=index, address="10.99.7.1", prefixlen=24)

        # Taken by the bench: made a port of its bridge; given back as found (down).
        links.add("bridge", ifname=bridge, kind="bridge")
        links.set("enslave", index=index, master=links.index(bridge))
        taken = lab.pf_link(pf)
        assert taken is not None and taken.has_master
        lab.restore_pf(found)
        lab.restore_pf(found)  # idempotent
        assert lab.pf_link(pf) == found

        # Found up: stays up.
        links.set("enslave", index=index, master=links.index(bridge), state="up")
        lab.restore_pf(PfLink(pf, up=True, has_master=False))
        assert lab.pf_link(pf) == PfLink(pf, up=True, has_master=False, addresses=())

        links.delete(pf)
        lab.restore_pf(found)  # gone: left alone
    finally:
        links.delete(pf)
        links.delete(bridge)


def _run_objects(links: Links, run: LabRun) -> tuple[list[str], list[str]]:
    """Make what ``run`` would have made; its namespaces and host links."""
    assert run.emulated_adapter is not None and run.world is not None
    spaces = [
        names.vm_netns(run.vms[0]),
        names.vm_netns(run.vm_prefix + "notrecorded"),  # a VM a killed run did not record
        names.nic_netns(run.emulated_adapter),
        run.world,
    ]
    for ns in spaces:
        ensure_netns(ns)
    host = [
        bridge_name(run.switch),
        names.synthetic_host_ifname(run.vms[0], run.nic),
        run.emulated_adapter,
        names.vf_netdev(run.emulated_adapter, 0),
    ]
    links.add("bridge", ifname=host[0], kind="bridge")
    for name in host[1:]:
        _veth(links, name)
    return spaces, host


def test_remove_run_removes_one_runs_objects_and_no_one_elses(
    lab: TrafficLab, links: Links
) -> None:
    tag, other = uuid.uuid4().hex[:4], uuid.uuid4().hex[:4]

    def run_of(t: str) -> LabRun:
        return LabRun(
            vm_prefix=f"b{t}-",
            vms=(f"b{t}-v0",),
            nic="nic0",
            switch=f"bench-{t}",
            emulated_adapter=f"iovb{t}",
            world=f"iov-bw{t}",
        )

    mine, theirs = run_of(tag), run_of(other)
    made: list[tuple[list[str], list[str]]] = []
    try:
        made.append(_run_objects(links, mine))
        made.append(_run_objects(links, theirs))
        spaces, host = made[0]
        left = lab.run_leftovers(mine)
        assert sorted(left.namespaces) == sorted(spaces)
        assert sorted(left.links) == sorted(host)

        removed = lab.remove_run(mine)
        assert sorted(removed.namespaces) == sorted(spaces)
        assert sorted(removed.links) == sorted(host)
        assert lab.run_leftovers(mine) == LabObjects()
        assert lab.remove_run(mine) == LabObjects()  # idempotent

        their_spaces, their_host = made[1]
        assert set(their_spaces) <= set(list_netns())
        assert set(their_host) <= set(links.names())
    finally:
        for spaces, host in made:
            for ns in spaces:
                remove_netns(ns)
            for name in host:
                links.delete(name)
