"""iovctl apply (reconcile), host snapshot (digital twin) and the boot unit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from iovctl.adapters.sim import simulated_machine
from iovctl.adapters.sim.host import SimulatedHost
from iovctl.adapters.sim.machine import open_machine
from iovctl.adapters.sim.runtime import SimulatedVmRuntime
from iovctl.adapters.sim.spec import load_spec, parse_spec
from iovctl.adapters.sqlite.store import SqliteStore
from iovctl.adapters.systemd import install_unit, render_unit
from iovctl.domain.model import SCRUBBED, VfSettings
from iovctl.domain.nic_rules import vf_settings_for
from iovctl.domain.reconcile import SetVfCount
from iovctl.errors import Conflict
from iovctl.services import adapters, journal, reconcile, switches, vms
from iovctl.services.context import Context
from iovctl.services.snapshot import snapshot
from iovctl.services.views import to_json
from iovctl.services.vms import NicChanges


class CountingHost(SimulatedHost):
    """The simulated host, counting hardware writes (to prove 'zero writes')."""

    writes = 0

    def set_num_vfs(self, adapter: str, count: int) -> None:
        self.writes += 1
        super().set_num_vfs(adapter, count)

    def set_vf_settings(self, adapter: str, index: int, settings: VfSettings) -> None:
        self.writes += 1
        super().set_vf_settings(adapter, index, settings)


def make(spec: str = "demo") -> tuple[Context, CountingHost]:
    store = SqliteStore.open(None)
    machine = open_machine(None)
    hw = CountingHost(machine, load_spec(spec))
    rt = SimulatedVmRuntime(machine)
    hw.ensure_schema()
    rt.ensure_schema()
    return Context(store, hw, rt), hw


def run(ctx: Context, fn: Any, *args: Any) -> Any:
    """As the CLI runs a command: one journaled operation; its result as ``-o json``
    shows it."""
    return to_json(journal.run(ctx, fn, *args, retry_stalled=fn is reconcile.apply))


@pytest.fixture
def busy() -> tuple[Context, CountingHost]:
    ctx, hw = make()
    run(ctx, adapters.enable, "enp1s0", 3)
    run(ctx, switches.create, "sw", "enp1s0", True)
    for name, weight in (("a", 50), ("b", 20)):
        run(ctx, vms.create_vm, name)
        run(ctx, vms.add_nic, name, "sw", None, NicChanges(iov_weight=weight, vlan=7, trust=True))
        run(ctx, vms.start_vm, name)
    return ctx, hw


def test_apply_on_a_state_that_holds_writes_nothing(busy: tuple[Context, CountingHost]) -> None:
    ctx, hw = busy
    hw.writes = 0
    report = run(ctx, reconcile.apply)
    assert report["changed"] == 0 and report["changes"] == []
    assert hw.writes == 0


def test_apply_after_a_reboot_restores_counts_and_tenants(
    busy: tuple[Context, CountingHost],
) -> None:
    ctx, hw = busy
    run(ctx, reconcile.power_cycle)
    assert hw.adapter("enp1s0").num_vfs == 0
    dry = to_json(journal.preview(ctx, reconcile.apply, True))
    hw.writes = 0
    report = run(ctx, reconcile.apply)
    assert [c["action"] for c in report["changes"]] == [c["action"] for c in dry["changes"]]
    assert report["changes"][0] == {
        "action": "set-vf-count",
        "adapter": "enp1s0",
        "from": 0,
        "to": 3,
    }
    assert hw.adapter("enp1s0").num_vfs == 3
    for nic in ctx.store.nics_holding_vfs("enp1s0"):
        assert nic.assignment is not None
        vf = hw.virtual_function("enp1s0", nic.assignment.index)
        assert vf.settings == vf_settings_for(nic.config)
        # The runtime attachments are repaired too, not only the hardware.
        assert ctx.runtime.vf_data_path_active(nic.vm, nic.name)
    attached = sorted(c["tenant"] for c in report["changes"] if c["action"] == "attach-vf")
    assert attached == ["a/nic0", "b/nic0"]
    assert hw.writes == len(report["changes"]) - len(attached)
    hw.writes = 0
    assert run(ctx, reconcile.apply)["changed"] == 0
    assert hw.writes == 0


def test_apply_repairs_only_what_drifted(busy: tuple[Context, CountingHost]) -> None:
    ctx, hw = busy
    hw.set_vf_settings("enp1s0", 2, SCRUBBED.with_(mac="52:54:00:66:66:66", vlan=99))  # stray
    held = ctx.store.nics_holding_vfs("enp1s0")[0]
    assert held.assignment is not None
    hw.set_vf_settings("enp1s0", held.assignment.index, SCRUBBED)  # tenant lost its settings
    hw.writes = 0
    report = run(ctx, reconcile.apply)
    assert {(c["index"], c["tenant"]) for c in report["changes"]} == {
        (2, None),
        (held.assignment.index, held.label),
    }
    assert hw.writes == 2
    assert hw.virtual_function("enp1s0", 2).settings == SCRUBBED


def test_count_change_writes_zero_first() -> None:
    assert SetVfCount("x", 4, 2).writes == [0, 2]
    assert SetVfCount("x", 0, 2).writes == [2]
    assert SetVfCount("x", 4, 0).writes == [0]


def test_power_cycle_is_only_for_simulated_hosts(
    busy: tuple[Context, CountingHost], tmp_path: Path
) -> None:
    from iovctl.adapters.linux.host import LinuxHost

    ctx, _ = busy
    ctx.hardware = LinuxHost(tmp_path)  # a real host's backend (an empty tree will do)
    with pytest.raises(Conflict) as info:
        reconcile.power_cycle(ctx)
    assert info.value.code == "not-simulated"
    assert "linux host cannot be power-cycled" in info.value.message


def test_snapshot_loads_back_as_the_same_inventory(busy: tuple[Context, CountingHost]) -> None:
    ctx, hw = busy
    doc = snapshot(ctx, "twin")
    twin, _ = simulated_machine(parse_spec(doc))
    assert twin.adapters() == hw.adapters()
    assert twin.host_facts() == hw.host_facts()
    addresses = [vf.pci_address for vf in hw.virtual_functions("enp1s0")]
    assert [vf.pci_address for vf in twin.virtual_functions("enp1s0")] == addresses


def test_unit_is_rendered_and_installed_idempotently(tmp_path: Path) -> None:
    text = render_unit("/usr/local/bin/iovctl", Path("/var/lib/iovctl"))
    assert "ExecStart=/usr/local/bin/iovctl apply" in text
    assert "Environment=IOVCTL_STATE_DIR=/var/lib/iovctl" in text
    assert "Before=network-pre.target" in text and "@" not in text.replace("@.", "")
    first = install_unit(tmp_path, "/usr/local/bin/iovctl", Path("/var/lib/iovctl"), enable=False)
    second = install_unit(tmp_path, "/usr/local/bin/iovctl", Path("/var/lib/iovctl"), enable=False)
    assert first["changed"] is True and second["changed"] is False
    assert (tmp_path / "iovctl-apply.service").read_text() == text
