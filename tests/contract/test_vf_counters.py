"""The VF counters contract (ports.VfCounters), on every backend that counts.

- ``sim``: the simulated host; traffic is what ``pass_traffic`` says flowed.
- ``linux-fake``: LinuxHost over a fake sysfs tree and the fake rtnetlink, whose
  replies carry IFLA_VF_STATS shaped like the kernel's (the counters are the fake
  driver's ``ndo_get_vf_stats``).
- ``emulated`` (privileged): the emulated NIC; real frames sent from a VF netdev.
- ``hardware`` in the QEMU testbed: the real igb (which counts nothing: zeros that
  must still never go down).

Counters never go down between two reads unless the VF count changed in between.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iovctl.domain.model import SCRUBBED, VfStats
from iovctl.errors import NotFound
from iovctl.ports import HostHardware

from .conftest import backend_name

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit"))
from linux.sysfs_tree import igb_host

pytestmark = pytest.mark.contract


@dataclass
class Counting:
    """A backend, its PF, and a way to make VF ``index`` send ``frames`` frames."""

    name: str
    hardware: HostHardware
    pf: str
    send: Callable[[int, int], None]
    #: The driver counts (igb does not: its counters stay zero).
    counts: bool = True


def _sim() -> Counting:
    from iovctl.adapters.sim import simulated_machine
    from iovctl.adapters.sim.host import SimulatedHost
    from iovctl.adapters.sim.spec import load_spec

    host, _ = simulated_machine(load_spec("igb"))
    assert isinstance(host, SimulatedHost)
    pf = next(a.name for a in host.adapters() if a.sriov is not None)

    def send(index: int, frames: int) -> None:
        host.pass_traffic(pf, index, VfStats(transmit_packets=frames, transmit_bytes=60 * frames))

    return Counting("sim", host, pf, send)


def _linux_fake(tmp_path: Path) -> Counting:
    from linux.fake_host import fake_linux_host

    spec = igb_host()
    spec.pci_ids = "8086  Intel Corporation\n\t10c9  82576 Gigabit Network Connection\n"
    host, _, fake = fake_linux_host(tmp_path, spec)

    def send(index: int, frames: int) -> None:
        vf = fake.vfs[index]  # the PF driver counts what its VF sent
        vf.tx_packets += frames
        vf.tx_bytes += 60 * frames

    return Counting("linux-fake", host, "enp1s0", send)


def send_frames(netdev: str, frames: int) -> None:
    """Real frames out of ``netdev`` in this namespace (AF_PACKET; root)."""
    subprocess.run(["ip", "link", "set", "dev", netdev, "up"], check=True)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((netdev, 0))
        frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + b"\0" * 46
        for _ in range(frames):
            s.send(frame)


def _kernel_send(hardware: HostHardware, pf: str) -> Callable[[int, int], None]:
    def send(index: int, frames: int) -> None:
        netdev = hardware.virtual_function(pf, index).netdev
        if netdev is not None:
            send_frames(netdev, frames)

    return send


@pytest.fixture(
    params=["sim", "linux-fake", pytest.param("emulated", marks=pytest.mark.privileged)]
)
def counting(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Counting]:
    if request.param == "emulated":
        if os.environ.get("IOVCTL_TESTBED") == "1":
            pytest.skip("the emulated NIC runs on the host (its tc ingress hooks); the guest has a real igb")
        lab = request.getfixturevalue("make_lab")(num_vfs=0)
        yield Counting("emulated", lab.hardware, lab.adapter, _kernel_send(lab.hardware, lab.adapter))
        return
    if request.param == "sim" and backend_name() == "linux":
        # In the testbed: the real igb in the simulator's place.
        hardware = request.getfixturevalue("hardware")
        pf = request.getfixturevalue("pf")
        yield Counting("linux", hardware, pf, _kernel_send(hardware, pf), counts=False)
        return
    yield _sim() if request.param == "sim" else _linux_fake(tmp_path)


def _check_grew(before: dict[int, VfStats], after: dict[int, VfStats]) -> None:
    assert set(after) == set(before)
    for index, stats in after.items():
        old = before[index].counters()
        assert all(n >= o for n, o in zip(stats.counters(), old, strict=True)), (index, old, stats)


def test_every_vf_has_counters(counting: Counting) -> None:
    hw, pf = counting.hardware, counting.pf
    hw.set_num_vfs(pf, 0)
    assert hw.vf_stats(pf) == {}
    hw.set_num_vfs(pf, 2)
    stats = hw.vf_stats(pf)
    assert sorted(stats) == [0, 1]
    assert all(min(s.counters()) >= 0 for s in stats.values())
    with pytest.raises(NotFound) as info:
        hw.vf_stats("nosuchnic0")
    assert info.value.code == "unknown-adapter"


def test_counters_count_and_never_go_down_until_the_vfs_are_new(counting: Counting) -> None:
    hw, pf = counting.hardware, counting.pf
    hw.set_num_vfs(pf, 0)
    hw.set_num_vfs(pf, 2)
    first = hw.vf_stats(pf)
    counting.send(1, 5)
    second = hw.vf_stats(pf)
    _check_grew(first, second)
    if counting.counts:
        assert second[1].transmit_packets >= first[1].transmit_packets + 5
        assert second[1].transmit_bytes >= first[1].transmit_bytes + 5 * 60
    # A settings change is not a reset.
    hw.set_vf_settings(pf, 1, SCRUBBED.with_(mac="52:54:00:ab:cd:07"))
    third = hw.vf_stats(pf)
    _check_grew(second, third)
    # New VFs start from zero.
    hw.set_num_vfs(pf, 0)
    hw.set_num_vfs(pf, 2)
    if counting.counts:
        assert hw.vf_stats(pf)[1].transmit_packets < third[1].transmit_packets
    assert sorted(hw.vf_stats(pf)) == [0, 1]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("send"), st.integers(0, 2), st.integers(1, 50)),
            st.tuples(st.just("recount"), st.integers(1, 3), st.just(0)),
            st.tuples(st.just("read"), st.just(0), st.just(0)),
        ),
        max_size=12,
    )
)
def test_no_counter_goes_down_without_a_reset(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, int, int]]
) -> None:
    """Property, on the in-memory backends: between two reads with no VF count change
    in between, every counter of every VF is at least what it was."""
    for make in (_sim, lambda: _linux_fake(tmp_path_factory.mktemp("fake"))):
        c = make()
        c.hardware.set_num_vfs(c.pf, 3)
        last, reset = c.hardware.vf_stats(c.pf), False
        sent = [0, 0, 0]
        for action, a, b in steps:
            if action == "send" and a < len(last):
                c.send(a, b)
                sent[a] += b
            elif action == "recount":
                c.hardware.set_num_vfs(c.pf, 0)
                c.hardware.set_num_vfs(c.pf, a)
                reset, sent = True, [0] * a
            now = c.hardware.vf_stats(c.pf)
            if not reset:
                _check_grew(last, now)
            assert [now[i].transmit_packets for i in sorted(now)] == sent
            last, reset = now, False
