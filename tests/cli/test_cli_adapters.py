"""``iovctl adapter list|show|enable|disable|set`` and ``iovctl vf list`` (issue 2, item 6)."""

from __future__ import annotations

from helpers import SCRUBBED_VF

ADAPTER_KEYS = {
    "name",
    "pci_address",
    "vendor_id",
    "device_id",
    "driver",
    "model",
    "link_speed_mbps",
    "numa_node",
    "mac",
    "sriov_capable",
    "sriov_support",
    "sriov_support_reason",
    "enabled",
    "num_vfs",
    "total_vfs",
    "num_allocated_vfs",
    "queue_pairs",
    "queue_pairs_in_use",
    "max_queue_pairs_per_vf",
    "vf_driver",
    "unsupported_vf_settings",
    "switch_name",
}
VF_KEYS = {
    "adapter",
    "function_id",
    "pci_address",
    "netdev",
    "iommu_group",
    "mac",
    "vlan",
    "qos",
    "vlan_protocol",
    "spoof_check",
    "trust",
    "max_rate",
    "min_rate",
    "link_state",
    "in_use",
    "vm_friendly_name",
    "vm_nic",
    "held_elsewhere",
}


def test_adapter_list_has_every_adapter_with_the_contract_keys(cli):
    adapters = cli.ok("adapter", "list")
    assert [a["name"] for a in adapters] == ["eno1", "enp1s0", "ens2f0", "ens3f0np0"]
    for a in adapters:
        assert set(a) == ADAPTER_KEYS
    by_name = {a["name"]: a for a in adapters}
    eno1 = by_name["eno1"]
    assert eno1["sriov_capable"] is False
    assert eno1["sriov_support"] == "not-capable"
    assert eno1["sriov_support_reason"]["code"] == "adapter-not-capable"
    assert "eno1" in eno1["sriov_support_reason"]["message"]
    assert (eno1["total_vfs"], eno1["vf_driver"], eno1["unsupported_vf_settings"]) == (0, None, [])
    igb = by_name["enp1s0"]
    assert igb["driver"] == "igb" and igb["vf_driver"] == "igbvf"
    assert (igb["total_vfs"], igb["num_vfs"], igb["enabled"]) == (7, 0, False)
    assert igb["sriov_support_reason"] is None
    assert {"link-state", "min-rate", "pvlan"} <= set(igb["unsupported_vf_settings"])
    ice, mlx = by_name["ens2f0"], by_name["ens3f0np0"]
    assert (ice["queue_pairs"], ice["max_queue_pairs_per_vf"]) == (1024, 16)
    assert (mlx["queue_pairs"], mlx["max_queue_pairs_per_vf"]) == (508, 4)


def test_adapter_show_includes_its_vfs(cli):
    cli.ok("adapter", "enable", "enp1s0", "--num-vfs", "2")
    shown = cli.ok("adapter", "show", "enp1s0")
    assert set(shown) == ADAPTER_KEYS | {"virtual_functions"}
    assert [v["function_id"] for v in shown["virtual_functions"]] == [0, 1]
    for vf in shown["virtual_functions"]:
        assert set(vf) == VF_KEYS


def test_enable_defaults_to_all_vfs_and_disable_removes_them(cli):
    enabled = cli.ok("adapter", "enable", "enp1s0")
    assert (enabled["num_vfs"], enabled["enabled"]) == (7, True)
    assert len(cli.vfs()) == 7
    disabled = cli.ok("adapter", "disable", "enp1s0")
    assert (disabled["num_vfs"], disabled["enabled"]) == (0, False)
    assert cli.vfs() == []
    codes = [e["code"] for e in cli.events()]
    assert codes == ["adapter-vfs-changed", "adapter-vfs-changed"]


def test_vfs_are_fresh_and_have_the_igb_pci_layout(cli):
    cli.ok("adapter", "enable", "enp1s0", "--num-vfs", "5")
    vfs = cli.vfs()
    assert [v["pci_address"] for v in vfs] == [
        "0000:01:10.0",
        "0000:01:10.2",
        "0000:01:10.4",
        "0000:01:10.6",
        "0000:01:11.0",
    ]
    assert [v["netdev"] for v in vfs] == [f"enp1s0v{i}" for i in range(5)]
    groups = [v["iommu_group"] for v in vfs]
    assert None not in groups and len(set(groups)) == 5  # ACS: one group per VF
    for vf in vfs:
        assert {k: vf[k] for k in SCRUBBED_VF} == SCRUBBED_VF
        assert (vf["in_use"], vf["vm_friendly_name"], vf["vm_nic"]) == (False, None, None)


def test_set_changes_a_nonzero_count_to_another_zero_first(cli):
    """The kernel says EBUSY for 3 -> 5; the service writes 0 first, so the user never sees it."""
    cli.ok("adapter", "set", "enp1s0", "--num-vfs", "3")
    changed = cli.ok("adapter", "set", "enp1s0", "--num-vfs", "5")
    assert changed["num_vfs"] == 5
    assert len(cli.vfs()) == 5
    messages = [e["message"] for e in cli.events() if e["code"] == "adapter-vfs-changed"]
    assert messages == ["SR-IOV on enp1s0: 0 -> 3 VFs", "SR-IOV on enp1s0: 3 -> 5 VFs"]


def test_setting_the_same_count_is_a_quiet_no_op(cli):
    cli.ok("adapter", "set", "enp1s0", "--num-vfs", "3")
    seq = cli.last_seq()
    assert cli.ok("adapter", "set", "enp1s0", "--num-vfs", "3")["num_vfs"] == 3
    assert cli.events(since=seq) == []


def test_vf_count_out_of_range_is_refused_and_keeps_the_vfs(cli):
    cli.ok("adapter", "set", "enp1s0", "--num-vfs", "3")
    result = cli.fail(
        "adapter", "set", "enp1s0", "--num-vfs", "99", code="vf-count-out-of-range", exit_code=5
    )
    assert "7" in result.err  # says what the maximum is
    assert len(cli.vfs()) == 3
    cli.fail(
        "adapter", "enable", "enp1s0", "--num-vfs", "8", code="vf-count-out-of-range", exit_code=5
    )


def test_changing_the_count_under_assigned_vfs_names_the_vms_and_force_works(cli):
    cli.igb_pool(2)
    cli.vm_with_nic("alpha", "--iov-weight", "50", start=True)
    cli.vm_with_nic("beta", "--iov-weight", "60", start=True)
    before = cli.holders()
    result = cli.fail(
        "adapter", "set", "enp1s0", "--num-vfs", "4", code="vfs-assigned", exit_code=4
    )
    assert "alpha" in result.err and "beta" in result.err
    assert "--force" in result.err  # the hint says how to do it anyway
    assert cli.holders() == before
    assert len(cli.vfs()) == 2

    forced = cli.ok("adapter", "set", "enp1s0", "--num-vfs", "4", "--force")
    assert forced["num_vfs"] == 4
    assert len(cli.vfs()) == 4
    # The NICs fell back during the change and got VFs again afterwards.
    assert sorted(cli.holders().values()) == ["alpha/nic0", "beta/nic0"]
    codes = [e["code"] for e in cli.events()]
    assert codes.count("vf-revoked") == 2
    assert codes.index("adapter-vfs-changed") < len(codes) - 1


def test_disable_revokes_assigned_vfs_with_force_and_nics_fall_back(cli):
    cli.igb_pool(2)
    cli.vm_with_nic("alpha", "--iov-weight", "50", start=True)
    # The rule of `set --num-vfs 0`: refused while VMs hold VFs, naming them.
    refused = cli.fail("adapter", "disable", "enp1s0", code="vfs-assigned", exit_code=4)
    assert "alpha" in refused.err and "--force" in refused.err
    assert cli.nic("alpha")["iov_usage"] is True
    cli.ok("adapter", "disable", "enp1s0", "--force")
    nic = cli.nic("alpha")
    assert nic["iov_usage"] is False and nic["virtual_function"] is None
    assert nic["status"] == "degraded"
    assert "disabled on adapter enp1s0" in nic["status_description"]
    assert [e["code"] for e in cli.events() if e["object_name"] == "alpha/nic0"][-1] == "vf-revoked"
    # Enabling again hands a VF back to the waiting NIC.
    cli.ok("adapter", "enable", "enp1s0", "--num-vfs", "1")
    assert cli.nic("alpha")["virtual_function"]["index"] == 0


def test_enable_answers_clearly_when_it_has_nothing_to_do(cli):
    cli.ok("adapter", "enable", "enp1s0", "--num-vfs", "2")
    again = cli.fail("adapter", "enable", "enp1s0", code="already-enabled", exit_code=4)
    assert "2 VFs" in again.err and "adapter set" in again.err
    cli.fail("adapter", "enable", "enp1s0", "--num-vfs", "3", code="already-enabled", exit_code=4)
    cli.ok("adapter", "disable", "enp1s0")
    zero = cli.fail(
        "adapter", "enable", "enp1s0", "--num-vfs", "0", code="invalid-vf-count", exit_code=2
    )
    assert "adapter disable" in zero.err
    assert cli.vfs() == []


def test_adapter_without_sriov_is_refused_by_the_hardware_rule(cli):
    cli.fail("adapter", "enable", "eno1", code="sriov-not-capable", exit_code=5)
    cli.fail("adapter", "set", "eno1", "--num-vfs", "2", code="sriov-not-capable", exit_code=5)


def test_bios_off_host_cannot_create_vfs(make_cli):
    bios = make_cli("bios-off")
    result = bios.fail("adapter", "enable", "enp1s0", code="vf-resources-missing", exit_code=5)
    assert "BIOS" in result.err
    assert bios.vfs() == []


def test_adapter_without_pf_driver(make_cli, tmp_path):
    spec = tmp_path / "nodriver.yaml"
    spec.write_text(
        "name: nodriver\n"
        "adapters:\n"
        "  - name: enp9s0\n"
        '    pci_address: "0000:09:00.0"\n'
        "    driver: null\n"
        "    sriov: {total_vfs: 4}\n"
    )
    host = make_cli(str(spec), name="nodriver")
    assert host.ok("host")["adapters"][0]["sriov_support"] == "missing-pf-driver"
    reason = host.ok("adapter", "show", "enp9s0")["sriov_support_reason"]
    assert reason["code"] == "adapter-missing-pf-driver"
    assert "0000:09:00.0" in reason["hint"]
    host.fail("adapter", "enable", "enp9s0", code="no-pf-driver", exit_code=5)


def test_vf_list_without_adapter_shows_every_enabled_adapter(cli):
    assert cli.ok("vf", "list") == []
    cli.ok("adapter", "enable", "enp1s0", "--num-vfs", "2")
    cli.ok("adapter", "enable", "ens3f0np0", "--num-vfs", "3")
    vfs = cli.ok("vf", "list")
    assert [(v["adapter"], v["function_id"]) for v in vfs] == [
        ("enp1s0", 0),
        ("enp1s0", 1),
        ("ens3f0np0", 0),
        ("ens3f0np0", 1),
        ("ens3f0np0", 2),
    ]
    # mlx5 PF at af:00.0, offset 2, stride 1; ice PF at 3b:00.0, offset 8.
    assert [v["pci_address"] for v in vfs[2:]] == ["0000:af:00.2", "0000:af:00.3", "0000:af:00.4"]
    cli.ok("adapter", "enable", "ens2f0", "--num-vfs", "1")
    assert cli.vfs("ens2f0")[0]["pci_address"] == "0000:3b:01.0"
    for vf in vfs:
        assert set(vf) == VF_KEYS


def test_adapter_list_counts_allocated_vfs_and_names_the_switch(cli):
    cli.igb_pool(3)
    cli.vm_with_nic("alpha", "--iov-weight", "50", start=True)
    igb = {a["name"]: a for a in cli.ok("adapter", "list")}["enp1s0"]
    assert (igb["num_allocated_vfs"], igb["queue_pairs_in_use"], igb["switch_name"]) == (
        1,
        1,
        "ext",
    )


def test_table_output_of_adapter_commands(cli):
    result = cli.run("adapter", "list")
    assert result.code == 0 and "enp1s0" in result.out and "not-capable" in result.out
    result = cli.run("adapter", "enable", "enp1s0", "--num-vfs", "2")
    assert result.code == 0 and "0000:01:10.2" in result.out
    result = cli.run("vf", "list")
    assert result.code == 0 and "00:00:00:00:00:00" in result.out
