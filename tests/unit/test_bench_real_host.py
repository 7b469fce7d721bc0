"""``iovctl bench datapath --adapter PF``: which PFs the bench may take, and how it
gives one back, on the simulated demo host with the PF's link facts in a lab held in
memory (the kernel's side is tests/privileged/test_traffic_lab.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from iovctl.bench import real_host
from iovctl.errors import Conflict, InvalidInput, IovctlError
from iovctl.ports.traffic_lab import LabObjects, LabRun, PfLink
from iovctl.services import adapters, journal
from iovctl.services.context import Context
from iovctl.wiring import Options, open_context


class HeldLinks:
    """A ``TrafficLab`` whose PF links are what the test says; restores are applied."""

    def __init__(self, *found: PfLink) -> None:
        self.links = {link.name: link for link in found}

    def world_command(self, world: str) -> list[str]:
        return []

    def pf_link(self, pf: str) -> PfLink | None:
        return self.links.get(pf)

    def restore_pf(self, link: PfLink) -> None:
        if link.name in self.links:
            self.links[link.name] = replace(
                self.links[link.name], has_master=False, up=self.links[link.name].up and link.up
            )

    def remove_run(self, run: LabRun) -> LabObjects:
        return LabObjects()

    def run_leftovers(self, run: LabRun) -> LabObjects:
        return LabObjects()

    def close(self) -> None:
        pass


@pytest.fixture
def ctx() -> Iterator[Context]:
    built = open_context(Options(sim="demo", in_memory=True))
    yield built
    built.close()


def _take(ctx: Context, pf: str, lab: HeldLinks) -> PfLink:
    with ctx.store.snapshot():
        return real_host.take(ctx, pf, lab)


def _refusal(ctx: Context, pf: str, lab: HeldLinks) -> IovctlError:
    with pytest.raises(IovctlError) as caught:
        _take(ctx, pf, lab)
    return caught.value


def test_an_idle_pf_is_taken_as_found(ctx: Context) -> None:
    found = PfLink("enp1s0", up=False, has_master=False)
    assert _take(ctx, "enp1s0", HeldLinks(found)) == found


@pytest.mark.parametrize(
    ("pf", "links", "kind", "code"),
    [
        # No netdev, or no PCI device of that name.
        ("nosuch0", (), InvalidInput, "adapter-not-found"),
        ("enp1s0", (), InvalidInput, "adapter-not-found"),
        ("nosuch0", (PfLink("nosuch0", True, False),), InvalidInput, "adapter-not-found"),
        ("eno1", (PfLink("eno1", True, False),), InvalidInput, "adapter-not-capable"),
        ("enp1s0", (PfLink("enp1s0", True, True),), Conflict, "adapter-in-use"),
    ],
)
def test_what_is_not_an_idle_pf_is_refused(
    ctx: Context, pf: str, links: tuple[PfLink, ...], kind: type[IovctlError], code: str
) -> None:
    error = _refusal(ctx, pf, HeldLinks(*links))
    assert isinstance(error, kind) and error.code == code
    assert pf in error.message and error.hint


def test_a_pf_with_addresses_is_refused_naming_them(ctx: Context) -> None:
    lab = HeldLinks(PfLink("enp1s0", True, False, ("192.0.2.7", "2001:db8::7")))
    error = _refusal(ctx, "enp1s0", lab)
    assert error.code == "adapter-in-use"
    assert "192.0.2.7, 2001:db8::7" in error.message


def test_a_pf_with_vfs_is_refused(ctx: Context) -> None:
    journal.run(ctx, adapters.set_num_vfs, "enp1s0", 2)
    error = _refusal(ctx, "enp1s0", HeldLinks(PfLink("enp1s0", True, False)))
    assert error.code == "adapter-in-use" and "2 VFs" in error.message


def test_give_back_restores_the_link_as_found() -> None:
    found = PfLink("enp1s0", up=False, has_master=False)
    lab = HeldLinks(PfLink("enp1s0", up=True, has_master=True))  # bridged and up for the run
    real_host.give_back(found, lab)
    assert lab.pf_link("enp1s0") == found
