"""Errors (issue 2, item 11): every bad input is ``error[code]: message`` + ``hint:`` on
stderr, the documented exit code of its family, no traceback, and no change at all.

Each case runs on a private copy of the populated host (see conftest.POPULATED) and
compares the full state (every list command's JSON and the SQL dump) before and after.
"""

from __future__ import annotations

import pytest

from helpers import assert_clean_error, state_dump

INVALID, NOT_FOUND, CONFLICT, HARDWARE = 2, 3, 4, 5

NIC_ADD = ("nic", "add", "vm2", "--switch", "ext")
NIC_SET = ("nic", "set", "vm1", "nic0")
PVLAN = ("--pvlan", "isolated", "--primary-vlan", "100", "--secondary-vlan", "101")

CASES: list[tuple[tuple[str, ...], str, int]] = [
    # -- InvalidInput: MACs
    ((*NIC_ADD, "--mac", "zz:zz:zz:zz:zz:zz"), "invalid-mac", INVALID),
    ((*NIC_ADD, "--mac", "52:54:00:aa:00"), "invalid-mac", INVALID),
    ((*NIC_ADD, "--mac", "52:54:00:aa:00:01:02"), "invalid-mac", INVALID),
    ((*NIC_ADD, "--mac", "01:00:5e:00:00:01"), "invalid-mac", INVALID),  # multicast
    ((*NIC_ADD, "--mac", "ff:ff:ff:ff:ff:ff"), "invalid-mac", INVALID),  # broadcast
    ((*NIC_ADD, "--mac", "00:00:00:00:00:00"), "invalid-mac", INVALID),
    ((*NIC_SET, "--mac", "03:00:00:00:00:01"), "invalid-mac", INVALID),
    # -- VLANs
    ((*NIC_ADD, "--vlan", "0"), "invalid-vlan", INVALID),
    ((*NIC_ADD, "--vlan", "4095"), "invalid-vlan", INVALID),
    ((*NIC_ADD, "--vlan", "-1"), "invalid-vlan", INVALID),
    ((*NIC_SET, "--vlan", "0"), "invalid-vlan", INVALID),
    ((*NIC_SET, "--vlan", "4095"), "invalid-vlan", INVALID),
    # -- weights, queue pairs, rates
    ((*NIC_ADD, "--iov-weight", "-1"), "invalid-weight", INVALID),
    ((*NIC_ADD, "--iov-weight", "101"), "invalid-weight", INVALID),
    ((*NIC_SET, "--iov-weight", "101"), "invalid-weight", INVALID),
    ((*NIC_SET, "--iov-weight", "-1"), "invalid-weight", INVALID),
    ((*NIC_ADD, "--iov-queue-pairs", "0"), "invalid-queue-pairs", INVALID),
    ((*NIC_SET, "--iov-queue-pairs", "-3"), "invalid-queue-pairs", INVALID),
    ((*NIC_ADD, "--max-rate", "0"), "invalid-rate", INVALID),
    ((*NIC_SET, "--max-rate", "-5"), "invalid-rate", INVALID),
    # -- private VLANs
    ((*NIC_ADD, "--pvlan", "isolated"), "invalid-pvlan", INVALID),
    ((*NIC_ADD, "--pvlan", "isolated", "--primary-vlan", "100"), "invalid-pvlan", INVALID),
    (
        (*NIC_ADD, "--pvlan", "community", "--primary-vlan", "100", "--secondary-vlan", "100"),
        "invalid-pvlan",
        INVALID,
    ),
    ((*NIC_ADD, "--primary-vlan", "100", "--secondary-vlan", "101"), "invalid-pvlan", INVALID),
    ((*NIC_ADD, "--vlan", "10", *PVLAN), "invalid-pvlan", INVALID),
    ((*NIC_SET, "--vlan", "10", *PVLAN), "invalid-pvlan", INVALID),
    ((*NIC_ADD, "--pvlan", "promiscuous", "--primary-vlan", "4095"), "invalid-vlan", INVALID),
    (
        (*NIC_ADD, "--pvlan", "isolated", "--primary-vlan", "10", "--secondary-vlan", "0"),
        "invalid-vlan",
        INVALID,
    ),
    # -- names with path or shell characters, empty, too long
    (("vm", "create", "a/b"), "invalid-name", INVALID),
    (("vm", "create", "/"), "invalid-name", INVALID),
    (("vm", "create", ".."), "invalid-name", INVALID),
    (("vm", "create", "../etc"), "invalid-name", INVALID),
    (("vm", "create", ";"), "invalid-name", INVALID),
    (("vm", "create", "a;rm"), "invalid-name", INVALID),
    (("vm", "create", "$(x)"), "invalid-name", INVALID),
    (("vm", "create", "`id`"), "invalid-name", INVALID),
    (("vm", "create", "a b"), "invalid-name", INVALID),
    (("vm", "create", ""), "invalid-name", INVALID),
    (("vm", "create", ".hidden"), "invalid-name", INVALID),
    (("vm", "create", "x" * 65), "invalid-name", INVALID),
    (("vm", "create", "caf\u00e9"), "invalid-name", INVALID),
    (("vm", "create", "web1\n"), "invalid-name", INVALID),
    (("switch", "create", "a/b", "--uplink", "ens2f0"), "invalid-name", INVALID),
    (("switch", "create", "$(x)", "--uplink", "ens2f0"), "invalid-name", INVALID),
    (("switch", "create", "", "--uplink", "ens2f0"), "invalid-name", INVALID),
    ((*NIC_ADD, "--name", "a b"), "invalid-name", INVALID),
    ((*NIC_ADD, "--name", "../nic"), "invalid-name", INVALID),
    ((*NIC_ADD, "--name", "n;1"), "invalid-name", INVALID),
    ((*NIC_ADD, "--name", ""), "invalid-name", INVALID),
    # -- VF counts
    (("adapter", "set", "enp1s0", "--num-vfs", "-1"), "invalid-vf-count", INVALID),
    # -- argparse usage errors are InvalidInput too
    ((), "usage", INVALID),
    (("vm",), "usage", INVALID),
    (("bogus",), "usage", INVALID),
    (("vm", "fly", "vm1"), "usage", INVALID),
    (("vm", "list", "-o", "yaml"), "usage", INVALID),
    (("switch", "create", "s"), "usage", INVALID),  # --uplink is required
    (("switch", "set", "ext"), "usage", INVALID),  # --iov or --no-iov
    (("adapter", "set", "enp1s0"), "usage", INVALID),  # --num-vfs is required
    (("adapter", "set", "enp1s0", "--num-vfs", "many"), "invalid-number", INVALID),
    ((*NIC_ADD, "--iov-weight", "high"), "invalid-number", INVALID),
    ((*NIC_ADD, "--pvlan", "private"), "usage", INVALID),
    ((*NIC_ADD, "--bogus"), "usage", INVALID),
    (("nic", "add", "vm2"), "usage", INVALID),  # --switch is required
    ((*NIC_SET, "--untagged=yes"), "usage", INVALID),
    (("events", "--limit", "x"), "invalid-number", INVALID),
    # -- numbers Python's int() takes but no admin means
    ((*NIC_ADD, "--vlan", "1_0"), "invalid-number", INVALID),
    ((*NIC_ADD, "--vlan", "\uff11\uff10"), "invalid-number", INVALID),  # full-width 10
    ((*NIC_ADD, "--vlan", "+5"), "invalid-number", INVALID),
    ((*NIC_ADD, "--vlan", " 5"), "invalid-number", INVALID),
    ((*NIC_ADD, "--iov-weight", "50 "), "invalid-number", INVALID),
    (("adapter", "set", "enp1s0", "--num-vfs", "\u0663"), "invalid-number", INVALID),  # Arabic 3
    (("events", "--since", "1e3"), "invalid-number", INVALID),
    # -- contradictory options
    ((*NIC_SET, "--vlan", "5", "--untagged"), "conflicting-options", INVALID),
    ((*NIC_SET, "--max-rate", "5", "--unlimited"), "conflicting-options", INVALID),
    ((*NIC_SET, *PVLAN, "--no-pvlan"), "conflicting-options", INVALID),
    ((*NIC_SET, "--trust", "--no-trust"), "usage", INVALID),
    ((*NIC_SET, "--allow-mac-spoofing", "--no-allow-mac-spoofing"), "usage", INVALID),
    (("switch", "set", "ext", "--iov", "--no-iov"), "usage", INVALID),
    (("--sim", "demo", "--emulate", "veb", "vm", "list"), "conflicting-options", INVALID),
    # -- events filters
    (("events", "--level", "fatal"), "usage", INVALID),
    (("events", "--kind", "planet"), "usage", INVALID),
    # -- NotFound
    (("vm", "start", "nosuch"), "unknown-vm", NOT_FOUND),
    (("vm", "stop", "nosuch"), "unknown-vm", NOT_FOUND),
    (("vm", "show", "nosuch"), "unknown-vm", NOT_FOUND),
    (("vm", "delete", "nosuch"), "unknown-vm", NOT_FOUND),
    (("nic", "add", "nosuch", "--switch", "ext"), "unknown-vm", NOT_FOUND),
    (("nic", "list", "nosuch"), "unknown-vm", NOT_FOUND),
    (("nic", "show", "nosuch", "nic0"), "unknown-vm", NOT_FOUND),
    (("nic", "show", "vm1", "nosuch"), "unknown-nic", NOT_FOUND),
    (("nic", "remove", "vm1", "nosuch"), "unknown-nic", NOT_FOUND),
    (("nic", "set", "vm1", "nosuch", "--vlan", "5"), "unknown-nic", NOT_FOUND),
    (("nic", "add", "vm2", "--switch", "nosuch"), "unknown-switch", NOT_FOUND),
    ((*NIC_SET, "--switch", "nosuch"), "unknown-switch", NOT_FOUND),
    (("switch", "show", "nosuch"), "unknown-switch", NOT_FOUND),
    (("switch", "delete", "nosuch"), "unknown-switch", NOT_FOUND),
    (("switch", "set", "nosuch", "--iov"), "unknown-switch", NOT_FOUND),
    (("adapter", "show", "nosuch"), "unknown-adapter", NOT_FOUND),
    (("adapter", "enable", "nosuch"), "unknown-adapter", NOT_FOUND),
    (("adapter", "disable", "nosuch"), "unknown-adapter", NOT_FOUND),
    (("adapter", "set", "nosuch", "--num-vfs", "1"), "unknown-adapter", NOT_FOUND),
    (("vf", "list", "nosuch"), "unknown-adapter", NOT_FOUND),
    (("switch", "create", "new", "--uplink", "nosuch"), "unknown-adapter", NOT_FOUND),
    # -- Conflict
    (("vm", "create", "vm1"), "duplicate-name", CONFLICT),
    (("switch", "create", "ext", "--uplink", "ens2f0"), "duplicate-name", CONFLICT),
    (("nic", "add", "vm1", "--switch", "ext", "--name", "nic0"), "duplicate-name", CONFLICT),
    ((*NIC_ADD, "--mac", "52:54:00:aa:00:01"), "duplicate-mac", CONFLICT),
    ((*NIC_ADD, "--mac", "52-54-00-AA-00-01"), "duplicate-mac", CONFLICT),
    ((*NIC_ADD, "--mac", "525400aa0001"), "duplicate-mac", CONFLICT),
    (("nic", "set", "vm2", "nic0", "--mac", "52:54:00:aa:00:01"), "duplicate-mac", CONFLICT),
    (("switch", "create", "second", "--uplink", "enp1s0"), "adapter-in-use", CONFLICT),
    (("switch", "delete", "ext"), "switch-in-use", CONFLICT),
    (("vm", "delete", "vm1"), "vm-running", CONFLICT),
    (("switch", "set", "ext", "--no-iov"), "iov-fixed-at-creation", CONFLICT),
    (("switch", "set", "plain", "--iov"), "iov-fixed-at-creation", CONFLICT),
    (("adapter", "set", "enp1s0", "--num-vfs", "5"), "vfs-assigned", CONFLICT),
    (("adapter", "set", "enp1s0", "--num-vfs", "0"), "vfs-assigned", CONFLICT),
    (("adapter", "enable", "enp1s0"), "already-enabled", CONFLICT),
    (("adapter", "disable", "enp1s0"), "vfs-assigned", CONFLICT),
    (("vm", "start", "vm1"), "vm-running", CONFLICT),
    (("vm", "stop", "vm2"), "vm-not-running", CONFLICT),
    # -- HardwareError
    (("adapter", "set", "enp1s0", "--num-vfs", "99"), "vf-count-out-of-range", HARDWARE),
    (("adapter", "set", "enp1s0", "--num-vfs", "99", "--force"), "vf-count-out-of-range", HARDWARE),
    (("adapter", "enable", "enp1s0", "--num-vfs", "8"), "vf-count-out-of-range", HARDWARE),
    (("adapter", "enable", "eno1"), "sriov-not-capable", HARDWARE),
    (("adapter", "set", "eno1", "--num-vfs", "2"), "sriov-not-capable", HARDWARE),
]


def _case_id(case: tuple[tuple[str, ...], str, int]) -> str:
    argv, code, _ = case
    return f"{code}:{' '.join(argv)[:60]}"


@pytest.mark.parametrize(("argv", "code", "exit_code"), CASES, ids=[_case_id(c) for c in CASES])
def test_bad_input_is_a_clean_error_that_changes_nothing(
    populated, populated_before, argv, code, exit_code
):
    populated.fail(*argv, code=code, exit_code=exit_code)
    assert state_dump(populated.state_dir) == populated_before


def test_the_populated_host_is_what_the_cases_assume(populated):
    """Guards the table above: vm1 runs and holds VF 0, vm2 is off."""
    assert populated.holders() == {0: "vm1/nic0"}
    assert [(v["name"], v["state"]) for v in populated.ok("vm", "list")] == [
        ("vm1", "running"),
        ("vm2", "off"),
    ]


def test_assigned_vfs_refusal_names_the_vms(populated):
    result = populated.fail(
        "adapter", "set", "enp1s0", "--num-vfs", "5", code="vfs-assigned", exit_code=CONFLICT
    )
    assert "vm1" in result.err.splitlines()[0]


def test_unknown_names_hint_at_what_exists(populated):
    result = populated.fail(
        "nic", "add", "vm2", "--switch", "nosuch", code="unknown-switch", exit_code=NOT_FOUND
    )
    assert "ext" in result.err and "plain" in result.err
    result = populated.fail("adapter", "show", "eth9", code="unknown-adapter", exit_code=NOT_FOUND)
    assert "enp1s0" in result.err
    assert "'eth9'" in result.err.splitlines()[0]


@pytest.mark.parametrize(
    "argv",
    [
        ("events", "--limit", "-1"),
        ("events", "--limit", "99999999999999999999"),
        ("events", "--since", "99999999999999999999"),
    ],
)
def test_out_of_range_event_filters_are_invalid_input(populated, populated_before, argv):
    """A negative or huge --limit/--since is bad input, not an internal error (exit 70)
    and not silently "everything"."""
    result = populated.run(*argv)
    assert "Traceback" not in result.err
    assert result.code == INVALID, result.err
    assert result.err.startswith("error[")
    assert "error[internal]" not in result.err
    assert state_dump(populated.state_dir) == populated_before


# -- Ctrl-C --------------------------------------------------------------------------


def test_ctrl_c_inside_the_transaction_changes_nothing_and_says_so(
    populated, populated_before, monkeypatch
):
    """A KeyboardInterrupt raised where the VF would be granted (mid-transaction)."""
    from iovctl.services import allocation

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(allocation, "grant_vf", interrupted)
    result = populated.run("vm", "start", "vm2")
    assert_clean_error(result, "interrupted", 130)
    assert "nothing was changed" in result.err
    monkeypatch.undo()
    assert state_dump(populated.state_dir) == populated_before


def test_ctrl_c_while_the_machine_is_changed_says_the_rest_is_finished_later(
    populated, monkeypatch
):
    """Ctrl-C once the plan is recorded: the journal holds the rest, and the next
    command finishes it; it must not say that nothing changed."""
    from iovctl.services import journal

    real = journal.perform

    def interrupted(ctx, step):  # type: ignore[no-untyped-def]
        real(ctx, step)
        raise KeyboardInterrupt

    monkeypatch.setattr(journal, "perform", interrupted)
    result = populated.run("vm", "start", "vm2")
    monkeypatch.undo()
    assert_clean_error(result, "interrupted", 130)
    assert "nothing was changed" not in result.err and "iovctl apply" in result.err
    populated.ok("apply")
    shown = populated.ok("vm", "show", "vm2")
    assert shown["state"] == "running"
    assert all(n["status"] != "off" for n in shown["network_adapters"])


def test_ctrl_c_after_the_commit_does_not_claim_nothing_changed(
    populated, populated_before, monkeypatch
):
    """Interrupted while printing the result: the change is committed, so the message
    must not say "nothing was changed"."""
    from iovctl.cli import render

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(render, "as_json", interrupted)
    result = populated.run("vm", "start", "vm2", "-o", "json")
    monkeypatch.undo()
    assert result.code != 0 and "Traceback" not in result.err
    changed = state_dump(populated.state_dir) != populated_before
    assert changed  # vm2 did start: the interrupt came after COMMIT
    assert "nothing was changed" not in result.err, result.err


HALF_BROKEN_SPEC = """\
name: half-broken
firmware: {sriov_enabled: false}
adapters:
  - name: enp1s0
    pci_address: "0000:01:00.0"
    driver: igb
    sriov: {total_vfs: 7}
    num_vfs: 2
"""


def test_a_command_that_fails_after_writing_tells_what_the_machine_did(make_cli, tmp_path):
    """``adapter set`` writes 0 VFs first (kernel rule), then the new count fails
    (ENOMEM, no room left by the firmware) and so does asking for the old 2 again:
    the store says what the kernel did (0 VFs, 0 to restore at boot), and the
    events say why; it does not pretend the 2 VFs are still there."""
    spec = tmp_path / "half-broken.yaml"
    spec.write_text(HALF_BROKEN_SPEC)
    host = make_cli(str(spec), name="half")
    assert len(host.vfs()) == 2
    host.fail(
        "adapter", "set", "enp1s0", "--num-vfs", "3", code="vf-resources-missing", exit_code=5
    )
    assert host.vfs() == []
    assert host.ok("adapter", "show", "enp1s0")["num_vfs"] == 0
    codes = [e["code"] for e in host.ok("events")]
    assert codes.count("adapter-vfs-failed") == 2  # the new count, then the old one
    report = host.ok("apply", "--dry-run")
    assert report["changed"] == 0  # apply at boot would not try 2 or 3 either
