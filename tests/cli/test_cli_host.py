"""``iovctl host``: readiness with reasons (issue 2, item 5), on every built-in host."""

from __future__ import annotations

import pytest

HOST_KEYS = {
    "backend",
    "iov_support",
    "iov_support_reasons",
    "unverified_facts",
    "facts",
    "adapters",
    "runtime_facts",
}
HOST_ADAPTER_KEYS = {"name", "sriov_support", "num_vfs", "total_vfs"}
REASON_KEYS = {"code", "message", "hint"}
FACT_KEYS = {
    "cpu_vendor",
    "cpu_virtualization",
    "cpu_slat",
    "iommu_present",
    "iommu_enabled",
    "dma_remapping",
    "interrupt_remapping",
    "firmware_sriov_enabled",
    "pcie_native_control",
    "acs",
    "kernel_pci_iov",
    "vfio_pci",
    "virtual_machine",
    "kernel_cmdline",
}


def test_demo_host_is_ready_and_lists_its_adapters(cli):
    host = cli.ok("host")
    assert set(host) == HOST_KEYS
    assert set(host["facts"]) == FACT_KEYS
    assert host["backend"] == "simulated:demo"
    assert host["iov_support"] is True
    assert host["iov_support_reasons"] == []
    for adapter in host["adapters"]:
        assert set(adapter) == HOST_ADAPTER_KEYS
    support = {a["name"]: (a["sriov_support"], a["total_vfs"]) for a in host["adapters"]}
    assert support == {
        "eno1": ("not-capable", 0),
        "enp1s0": ("supported", 7),
        "ens2f0": ("supported", 256),
        "ens3f0np0": ("supported", 127),
    }


@pytest.mark.parametrize(
    ("sim", "codes", "adapter_support"),
    [
        ("igb", [], "supported"),
        ("no-iommu", ["iommu-missing"], "no-iommu-support"),
        (
            "bios-off",
            ["firmware-sriov-disabled", "pcie-native-control-denied"],
            "firmware-disabled",
        ),
    ],
)
def test_builtin_hosts_give_the_right_reasons(make_cli, sim, codes, adapter_support):
    host = make_cli(sim).ok("host")
    assert host["backend"] == f"simulated:{sim}"
    assert host["iov_support"] is (not codes)
    assert [r["code"] for r in host["iov_support_reasons"]] == codes
    for reason in host["iov_support_reasons"]:
        assert set(reason) == REASON_KEYS
        assert reason["message"].strip() and reason["hint"].strip()
    assert [(a["name"], a["sriov_support"]) for a in host["adapters"]] == [
        ("enp1s0", adapter_support)
    ]


def test_reason_hints_are_linux_specific(make_cli):
    reasons = {r["code"]: r for r in make_cli("no-iommu").ok("host")["iov_support_reasons"]}
    assert "VT-d" in reasons["iommu-missing"]["hint"]
    bios = {r["code"]: r for r in make_cli("bios-off").ok("host")["iov_support_reasons"]}
    assert "BIOS" in bios["firmware-sriov-disabled"]["hint"]
    assert "pcie_ports=native" in bios["pcie-native-control-denied"]["hint"]


def test_facts_follow_the_spec(make_cli):
    facts = make_cli("no-iommu").ok("host")["facts"]
    assert facts["iommu_present"] is False
    assert facts["interrupt_remapping"] is False
    assert facts["cpu_virtualization"] is True
    bios = make_cli("bios-off").ok("host")["facts"]
    assert (bios["firmware_sriov_enabled"], bios["pcie_native_control"]) == (False, False)


def test_table_output_names_the_reasons(make_cli):
    result = make_cli("bios-off").run("host")
    assert result.code == 0, result.err
    assert "iov_support: no" in result.out
    assert "firmware-sriov-disabled" in result.out
    assert "hint:" in result.out
    assert "firmware-disabled" in result.out


def test_json_output_is_accepted_before_or_after_the_command(cli):
    after = cli.run("host", "-o", "json")
    before = cli.run("-o", "json", "host")
    assert after.code == before.code == 0
    assert after.json() == before.json()


def test_unverified_facts_are_null_and_listed_not_reasons(tmp_path):
    """A spec can describe what a real host could not check (null): the report shows
    those facts as null, lists them as unverified with a way to check, and does not
    count them against iov_support (issue 9, item 5)."""
    import yaml

    from helpers import run_in_process

    spec = tmp_path / "nonroot.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "nonroot",
                "iommu": {"interrupt_remapping": None},
                "firmware": {"acs": None, "sriov_enabled": None},
                "adapters": [
                    {"name": "eth0", "pci_address": "0000:01:00.0", "link_speed_mbps": None}
                ],
            }
        )
    )
    base = ["--sim", str(spec), "--state-dir", str(tmp_path / "state")]
    result = run_in_process([*base, "host", "-o", "json"])
    assert result.code == 0, result.err
    host = result.json()
    assert host["facts"]["acs"] is None
    assert host["facts"]["firmware_sriov_enabled"] is None
    assert host["facts"]["interrupt_remapping"] is None
    assert host["iov_support"] is True
    assert [n["code"] for n in host["unverified_facts"]] == [
        "interrupt-remapping-unverified",
        "firmware-sriov-unverified",
        "acs-unverified",
    ]
    table = run_in_process([*base, "host"])
    assert "unverified" in table.out and "acs-unverified" in table.out
    adapters = run_in_process([*base, "adapter", "list", "-o", "json"]).json()
    assert adapters[0]["link_speed_mbps"] is None  # unknown, not 0


def test_a_vm_host_gets_hypervisor_hints(tmp_path):
    import yaml

    from helpers import run_in_process

    spec = tmp_path / "guest.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "guest",
                "cpu": {"hypervisor": True},
                "iommu": {"present": False, "enabled": False},
                "adapters": [{"name": "eth0", "pci_address": "0000:01:00.0"}],
            }
        )
    )
    result = run_in_process(
        ["--sim", str(spec), "--state-dir", str(tmp_path / "s"), "host", "-o", "json"]
    )
    host = result.json()
    assert host["facts"]["virtual_machine"] is True
    (reason,) = host["iov_support_reasons"]
    assert reason["code"] == "iommu-missing"
    assert "intel-iommu" in reason["hint"] and "BIOS" not in reason["hint"]
