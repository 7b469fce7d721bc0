"""domain.readiness: which fact yields which reason, and which adapter check wins."""

from __future__ import annotations

import re
from dataclasses import fields, replace

import pytest

from iovctl.domain.model import (
    Adapter,
    HostFacts,
    SriovCapability,
    SriovSupport,
    VirtualSwitch,
)
from iovctl.domain.readiness import (
    adapter_reason,
    adapter_support,
    host_reasons,
    iommu_usable,
    switch_reasons,
    unverified_facts,
)

READY = HostFacts()

CAP = SriovCapability(total_vfs=7, queue_pairs=8, max_queue_pairs_per_vf=1, vf_driver="igbvf")
PF = Adapter(
    name="enp1s0",
    pci_address="0000:01:00.0",
    vendor_id="8086",
    device_id="10c9",
    driver="igb",
    model="82576",
    link_speed_mbps=1000,
    numa_node=0,
    mac="52:54:00:12:34:56",
    sriov=CAP,
    num_vfs=3,
)

#: Each readiness flag, off on an otherwise ready host, and the one reason it must give.
FLAG_REASON = {
    "cpu_virtualization": "cpu-virtualization-missing",
    "cpu_slat": "slat-missing",
    "iommu_present": "iommu-missing",
    "iommu_enabled": "iommu-disabled",
    "dma_remapping": "dma-remapping-missing",
    "interrupt_remapping": "interrupt-remapping-missing",
    "firmware_sriov_enabled": "firmware-sriov-disabled",
    "pcie_native_control": "pcie-native-control-denied",
    "acs": "acs-missing",
    "kernel_pci_iov": "kernel-no-pci-iov",
    "vfio_pci": "vfio-pci-missing",
}


def test_a_ready_host_has_no_reasons():
    assert host_reasons(READY) == []
    assert iommu_usable(READY)


def test_every_boolean_fact_has_a_rule():
    flags = {f.name for f in fields(HostFacts) if isinstance(getattr(READY, f.name), bool)}
    flags.discard("virtual_machine")  # not a prerequisite: it picks the hints
    assert flags == set(FLAG_REASON)


@pytest.mark.parametrize(("flag", "code"), FLAG_REASON.items())
def test_each_fact_off_yields_exactly_its_reason(flag, code):
    reasons = host_reasons(replace(READY, **{flag: False}))
    assert [r.code for r in reasons] == [code]
    (reason,) = reasons
    assert reason.message.endswith(".")
    assert reason.hint and reason.hint != reason.message


def test_iommu_missing_implies_no_further_iommu_reasons():
    """No IOMMU at all: the admin is told once, not four times."""
    facts = replace(
        READY,
        iommu_present=False,
        iommu_enabled=False,
        dma_remapping=False,
        interrupt_remapping=False,
    )
    assert [r.code for r in host_reasons(facts)] == ["iommu-missing"]


def test_iommu_disabled_hides_dma_remapping():
    facts = replace(READY, iommu_enabled=False, dma_remapping=False)
    assert [r.code for r in host_reasons(facts)] == ["iommu-disabled"]


def test_reasons_come_in_the_order_an_admin_fixes_them():
    facts = HostFacts(
        cpu_virtualization=False,
        cpu_slat=False,
        iommu_present=True,
        iommu_enabled=False,
        firmware_sriov_enabled=False,
        pcie_native_control=False,
        acs=False,
        kernel_pci_iov=False,
        vfio_pci=False,
    )
    assert [r.code for r in host_reasons(facts)] == [
        "cpu-virtualization-missing",
        "slat-missing",
        "iommu-disabled",
        "firmware-sriov-disabled",
        "pcie-native-control-denied",
        "acs-missing",
        "kernel-no-pci-iov",
        "vfio-pci-missing",
    ]


def test_reason_codes_are_stable_kebab_case_and_hints_are_linux_specific():
    everything_off = HostFacts(**{flag: False for flag in FLAG_REASON})
    everything_off = replace(everything_off, iommu_present=True, iommu_enabled=True)
    reasons = host_reasons(everything_off)
    for r in reasons:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", r.code)
    hints = {r.code: r.hint for r in host_reasons(replace(READY, iommu_enabled=False))}
    assert "intel_iommu=on" in hints["iommu-disabled"]
    assert "vfio-pci" in host_reasons(replace(READY, vfio_pci=False))[0].hint


@pytest.mark.parametrize(
    ("flag", "usable"),
    [("iommu_present", False), ("iommu_enabled", False), ("dma_remapping", False), ("acs", True)],
)
def test_iommu_usable(flag, usable):
    assert iommu_usable(replace(READY, **{flag: False})) is usable


# -- adapter_support precedence -----------------------------------------------------------

#: From everything wrong to everything right, fixing one thing at a time: each step
#: shows that the check before it has priority over all the ones after it.
LADDER: list[tuple[SriovSupport, dict[str, object], dict[str, object], dict[str, object]]] = [
    # (expected, adapter changes, capability changes, fact changes) still broken
    (
        SriovSupport.NOT_CAPABLE,
        {"driver": None},
        {"bus_resources": False, "vf_bar_space": False},
        {
            "kernel_pci_iov": False,
            "firmware_sriov_enabled": False,
            "iommu_enabled": False,
            "acs": False,
        },
    ),
    (
        SriovSupport.MISSING_PF_DRIVER,
        {"driver": None},
        {"bus_resources": False, "vf_bar_space": False},
        {"firmware_sriov_enabled": False, "iommu_enabled": False, "acs": False},
    ),
    (
        SriovSupport.FIRMWARE_DISABLED,
        {},
        {"bus_resources": False, "vf_bar_space": False},
        {"firmware_sriov_enabled": False, "iommu_enabled": False, "acs": False},
    ),
    (
        SriovSupport.NO_IOMMU_SUPPORT,
        {},
        {"bus_resources": False, "vf_bar_space": False},
        {"iommu_enabled": False, "acs": False},
    ),
    (SriovSupport.MISSING_ACS, {}, {"bus_resources": False, "vf_bar_space": False}, {"acs": False}),
    (SriovSupport.NO_BUS_RESOURCES, {}, {"bus_resources": False, "vf_bar_space": False}, {}),
    (SriovSupport.NO_VF_BAR_SPACE, {}, {"vf_bar_space": False}, {}),
    (SriovSupport.SUPPORTED, {}, {}, {}),
]


@pytest.mark.parametrize(
    ("expected", "adapter_changes", "cap_changes", "fact_changes"),
    LADDER,
    ids=[step[0].value for step in LADDER],
)
def test_adapter_support_first_failing_check_wins(
    expected, adapter_changes, cap_changes, fact_changes
):
    adapter = replace(PF, sriov=replace(CAP, **cap_changes), **adapter_changes)
    assert adapter_support(adapter, replace(READY, **fact_changes)) is expected


def test_adapter_without_sriov_capability_is_not_capable_even_on_a_ready_host():
    assert adapter_support(replace(PF, sriov=None), READY) is SriovSupport.NOT_CAPABLE


@pytest.mark.parametrize("flag", ["iommu_present", "iommu_enabled", "dma_remapping"])
def test_each_iommu_fact_makes_the_adapter_no_iommu_support(flag):
    assert adapter_support(PF, replace(READY, **{flag: False})) is SriovSupport.NO_IOMMU_SUPPORT


@pytest.mark.parametrize(
    "flag",
    ["cpu_virtualization", "cpu_slat", "interrupt_remapping", "pcie_native_control", "vfio_pci"],
)
def test_host_only_facts_do_not_change_adapter_support(flag):
    assert adapter_support(PF, replace(READY, **{flag: False})) is SriovSupport.SUPPORTED


@pytest.mark.parametrize("support", [s for s in SriovSupport if s is not SriovSupport.SUPPORTED])
def test_adapter_reasons_name_the_adapter(support):
    reason = adapter_reason(PF, support)
    assert reason is not None
    assert reason.code == f"adapter-{support.value}"
    assert "enp1s0" in reason.message
    assert reason.hint


def test_missing_driver_hint_names_the_pci_address():
    reason = adapter_reason(PF, SriovSupport.MISSING_PF_DRIVER)
    assert reason is not None and "0000:01:00.0" in reason.hint


def test_a_supported_adapter_has_no_reason():
    assert adapter_reason(PF, SriovSupport.SUPPORTED) is None


# -- switches ---------------------------------------------------------------------------


def test_a_working_iov_switch_has_no_reasons():
    assert switch_reasons(VirtualSwitch("ext", "enp1s0", True), PF, READY) == []


def test_a_switch_without_iov_says_only_that():
    reasons = switch_reasons(VirtualSwitch("plain", "enp1s0", False), PF, HostFacts(acs=False))
    assert [r.code for r in reasons] == ["switch-iov-off"]
    assert "--iov" in reasons[0].hint and "plain" in reasons[0].hint


def test_an_iov_switch_collects_host_and_adapter_reasons():
    facts = replace(READY, iommu_enabled=False, cpu_slat=False)
    reasons = switch_reasons(VirtualSwitch("ext", "enp1s0", True), PF, facts)
    assert [r.code for r in reasons] == [
        "slat-missing",
        "iommu-disabled",
        "adapter-no-iommu-support",
    ]


def test_an_iov_switch_on_an_uplink_with_zero_vfs():
    reasons = switch_reasons(VirtualSwitch("ext", "enp1s0", True), replace(PF, num_vfs=0), READY)
    assert [r.code for r in reasons] == ["uplink-sriov-disabled"]
    assert "iovctl adapter enable enp1s0" in reasons[0].hint


def test_an_iov_switch_on_an_adapter_without_sriov():
    reasons = switch_reasons(
        VirtualSwitch("office", "eno1", True), replace(PF, name="eno1", sriov=None), READY
    )
    assert [r.code for r in reasons] == ["adapter-not-capable"]


# -- unverified facts (issue 9, item 5) --------------------------------------------------

#: Facts a real host may be unable to check, and the note each gives when it cannot.
UNVERIFIABLE = {
    "interrupt_remapping": "interrupt-remapping-unverified",
    "firmware_sriov_enabled": "firmware-sriov-unverified",
    "pcie_native_control": "pcie-native-control-unverified",
    "acs": "acs-unverified",
    "kernel_pci_iov": "kernel-pci-iov-unverified",
}


@pytest.mark.parametrize(("fact", "code"), UNVERIFIABLE.items())
def test_an_unverified_fact_is_a_note_not_a_reason_nor_a_pass(fact, code):
    facts = replace(READY, **{fact: None})
    assert host_reasons(facts) == []
    (note,) = unverified_facts(facts)
    assert note.code == code
    assert "could not be checked" in note.message
    assert note.hint
    assert adapter_support(PF, facts) is SriovSupport.SUPPORTED


def test_a_ready_host_has_nothing_unverified():
    assert unverified_facts(READY) == []


def test_interrupt_remapping_is_not_noted_when_the_iommu_is_the_problem():
    """Without an IOMMU in use there is nothing to ask: the IOMMU reason says it all."""
    facts = replace(READY, iommu_present=False, iommu_enabled=False, interrupt_remapping=None)
    assert [r.code for r in host_reasons(facts)] == ["iommu-missing"]
    assert unverified_facts(facts) == []


def test_known_false_still_counts_when_others_are_unverified():
    facts = replace(READY, acs=False, firmware_sriov_enabled=None)
    assert [r.code for r in host_reasons(facts)] == ["acs-missing"]
    assert [r.code for r in unverified_facts(facts)] == ["firmware-sriov-unverified"]
    assert adapter_support(PF, facts) is SriovSupport.MISSING_ACS


# -- hints on a virtual machine name the hypervisor's setting -----------------------------

VM = replace(READY, virtual_machine=True)
#: Reasons whose fix on metal is a BIOS/UEFI setting (or new hardware).
FIRMWARE_REASONS = {
    "cpu_virtualization": "cpu-virtualization-missing",
    "cpu_slat": "slat-missing",
    "iommu_present": "iommu-missing",
    "interrupt_remapping": "interrupt-remapping-missing",
    "firmware_sriov_enabled": "firmware-sriov-disabled",
    "pcie_native_control": "pcie-native-control-denied",
    "acs": "acs-missing",
}


@pytest.mark.parametrize(("fact", "code"), FIRMWARE_REASONS.items())
def test_on_a_vm_firmware_hints_name_the_hypervisor_not_the_bios(fact, code):
    changes: dict[str, object] = {fact: False}
    if fact == "iommu_present":
        changes["iommu_enabled"] = False
    metal = host_reasons(replace(READY, **changes))
    guest = host_reasons(replace(VM, **changes))
    assert [r.code for r in guest] == [r.code for r in metal] == [code]
    assert guest[0].message == metal[0].message
    assert "BIOS" not in guest[0].hint and "UEFI" not in guest[0].hint
    assert "this host is a VM" in guest[0].hint
    assert "QEMU" in guest[0].hint or "libvirt" in guest[0].hint


def test_a_vm_without_iommu_is_told_qemus_and_libvirts_iommu_device():
    (reason,) = host_reasons(replace(VM, iommu_present=False, iommu_enabled=False))
    assert "-device intel-iommu" in reason.hint
    assert "<iommu model='intel'>" in reason.hint


def test_kernel_fixes_are_the_same_on_a_vm():
    """intel_iommu=on and modprobe are fixes inside the guest: hints unchanged."""
    for fact in ("iommu_enabled", "vfio_pci", "kernel_pci_iov"):
        assert host_reasons(replace(VM, **{fact: False})) == host_reasons(
            replace(READY, **{fact: False})
        )


@pytest.mark.parametrize(
    ("changes", "support"),
    [
        ({"firmware_sriov_enabled": False}, SriovSupport.FIRMWARE_DISABLED),
        ({"acs": False}, SriovSupport.MISSING_ACS),
    ],
)
def test_on_a_vm_adapter_hints_name_the_hypervisor(changes, support):
    facts = replace(VM, **changes)
    assert adapter_support(PF, facts) is support
    reason = adapter_reason(PF, support, facts)
    assert reason is not None and "this host is a VM" in reason.hint
    assert "BIOS" not in reason.hint
    metal = adapter_reason(PF, support, replace(READY, **changes))
    assert metal is not None and "this host is a VM" not in metal.hint


@pytest.mark.parametrize(
    "cap_changes",
    [{"bus_resources": False}, {"vf_bar_space": False}],
)
def test_on_a_vm_bus_and_bar_hints_name_the_root_port_settings(cap_changes):
    pf = replace(PF, sriov=replace(CAP, **cap_changes))
    support = adapter_support(pf, VM)
    reason = adapter_reason(pf, support, VM)
    assert reason is not None and "pcie-root-port" in reason.hint
    assert "BIOS" not in reason.hint
