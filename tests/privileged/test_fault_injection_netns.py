"""The fault-injection contract (tests/contract/test_fault_injection.py) on the
namespace runtime over an emulated SR-IOV NIC: real namespaces, veths, bridges and
nftables, every side effect refused or killed, then ``apply``, then one story.

Two scenarios, the issue's own cases (a VM stop whose freed VF goes to a waiter; a
preemption), each side effect in each mode: about 30 emulated hosts, ~2 minutes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract.faults import MODES, FaultPlan
from contract.test_fault_injection import SCENARIOS, Names, Scenario, count, disturbed
from iovctl.adapters.netns import names
from iovctl.adapters.netns.cleanup import cleanup
from iovctl.domain.names import bridge_name
from iovctl.services.context import Context
from iovctl.wiring import Options, open_context

pytestmark = pytest.mark.privileged

CHOSEN = [s for s in SCENARIOS if s.name in ("vm-stop", "preemption")]


class Emulated:
    """A throwaway emulated host per run, named apart from every other."""

    def __init__(self, tmp: Path) -> None:
        self.tag = uuid.uuid4().hex[:5]
        self.names = Names(pf=f"if{self.tag}", switch=f"sw{self.tag}", prefix=f"f{self.tag}")
        self.spec = tmp / f"emulation-{self.tag}.yaml"
        self.spec.write_text(
            f"name: faults-{self.tag}\n"
            f"world: {{netns: iov-w{self.tag}}}\n"
            f"adapters:\n  - {{name: {self.names.pf}, total_vfs: 3}}\n"
        )

    def open(self, state: Path) -> Context:
        return open_context(Options(state_dir=state, emulate=str(self.spec)))

    def remove(self) -> None:
        vms = [self.names.vm(v) for v in ("a", "b", "c")]
        cleanup(
            netns_prefix=(
                f"iov-vm-{self.names.prefix}",
                f"iov-nic-{self.names.pf}",
                f"iov-w{self.tag}",
            ),
            link_prefix=(
                self.names.pf,
                bridge_name(self.names.switch),
                *(names.synthetic_host_ifname(vm, "nic0") for vm in vms),
            ),
        )


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[list[Emulated]]:
    made: list[Emulated] = []
    yield made
    for host in made:
        host.remove()


@pytest.mark.parametrize("scenario", CHOSEN, ids=[s.name for s in CHOSEN])
def test_every_side_effect_refused_or_killed_ends_in_one_story_on_namespaces(
    tmp_path: Path, hosts: list[Emulated], scenario: Scenario
) -> None:
    first = Emulated(tmp_path)
    hosts.append(first)
    counted = count(first.open, tmp_path / f"{first.tag}-state", scenario, first.names)
    first.remove()
    failures = []
    for at in range(1, counted + 1):
        for mode in MODES:
            host = Emulated(tmp_path)
            hosts.append(host)
            outcome = disturbed(
                host.open, tmp_path / f"{host.tag}-state", scenario, FaultPlan(at, mode), host.names
            )
            host.remove()
            if outcome.problems_before_recovery:
                failures.append((at, mode, "before apply", outcome.problems_before_recovery))
            if outcome.problems:
                failures.append((at, mode, "after apply", outcome.problems))
    assert failures == [], f"{scenario.name} ({counted} side effects): {failures}"
