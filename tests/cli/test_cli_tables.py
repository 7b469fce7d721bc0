"""The default (rich table) output of every command: it renders, says the essentials,
and never falls into the internal-error path."""

from __future__ import annotations

import pytest

#: (argv, text the table must show), run in order on a copy of the populated host.
TABLE_RUNS: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (("host",), ("iov_support: yes", "enp1s0", "supported")),
    (("adapter", "list"), ("eno1", "not-capable", "3/7")),
    (("adapter", "show", "eno1"), ("adapter-not-capable", "hint:")),
    (("adapter", "show", "enp1s0"), ("0000:01:10.0", "vm1", "link-state")),
    (("adapter", "enable", "ens3f0np0", "--num-vfs", "2"), ("0000:af:00.2",)),
    (("adapter", "set", "ens3f0np0", "--num-vfs", "3"), ("0000:af:00.4",)),
    (("adapter", "disable", "ens3f0np0"), ("num_vfs: 0/127",)),
    (("vf", "list"), ("0000:01:10.4", "vm1", "nic0")),
    (("vf", "list", "enp1s0"), ("52:54:00:aa:00:01",)),
    (
        ("switch", "create", "office", "--uplink", "ens2f0", "--iov"),
        ("office", "uplink-sriov-disabled"),
    ),
    (("switch", "list"), ("ext", "plain", "office", "1/3")),
    (("switch", "show", "ext"), ("ext", "enp1s0")),
    (("switch", "set", "ext", "--iov"), ("ext",)),
    (("vm", "list"), ("vm1", "running", "vm2", "off")),
    (("vm", "show", "vm1"), ("VM vm1", "enp1s0 vf0")),
    (("vm", "create", "vm3"), ("VM vm3",)),
    (("nic", "add", "vm3", "--switch", "plain", "--iov-weight", "5"), ("vm3", "nic0")),
    (("vm", "start", "vm3"), ("created without SR-IOV",)),
    (("nic", "set", "vm3", "nic0", "--vlan", "12"), ("vm3",)),
    (("nic", "show", "vm1", "nic0"), ("On VF 0 of enp1s0",)),
    (("nic", "list"), ("vm1", "vm2", "vm3")),
    (("nic", "list", "vm2"), ("not running",)),
    (("vm", "stop", "vm3"), ("off",)),
    (("nic", "remove", "vm3", "nic0"), ("nic vm3/nic0 deleted",)),
    (("vm", "delete", "vm3"), ("vm vm3 deleted",)),
    (("switch", "delete", "office"), ("switch office deleted",)),
    (("events",), ("vf-assigned", "switch-iov-unsupported", "vm-deleted")),
    (("events", "--limit", "1"), ("switch-deleted",)),
]


def test_every_command_renders_a_table(populated):
    for argv, expected in TABLE_RUNS:
        result = populated.run(*argv)
        assert (result.code, result.err) == (0, ""), (argv, result.err)
        assert "Traceback" not in result.out
        for text in expected:
            assert text in result.out, (argv, text, result.out)


@pytest.mark.parametrize("argv", [("--help",), ("nic", "add", "--help"), ("switch", "--help")])
def test_help_exits_zero_and_lists_the_options(cli, capsys, argv):
    with pytest.raises(SystemExit) as exc_info:
        cli.run(*argv)
    assert exc_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: iovctl" in out
    if argv[0] == "nic":
        for option in ("--iov-weight", "--iov-queue-pairs", "--pvlan", "--allow-mac-spoofing"):
            assert option in out
