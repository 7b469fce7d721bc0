"""Every ``iovctl`` command, defined once: its words, help, options, the service it
calls, whether it writes, and how its result is shown.

A command's options are named after the keyword arguments of its service function
(:mod:`iovctl.services.api`): the CLI passes them through by name, so what the
service checks and defaults is what every front end gets. The parser
(:mod:`iovctl.cli.parser`) is generated from this table, and the man page and the
bash completion from the parser (:mod:`iovctl.cli.generate`).
Must not import rich, the store or any adapter at module level (start-up time).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from iovctl.cli import render
from iovctl.services import api, views

#: Runs one iovctl command line in-process; returns its exit code.
Runner = Callable[[Sequence[str]], int]


@dataclass(slots=True)
class Arg:
    """One option or positional argument, as ``argparse.add_argument`` takes it."""

    flags: tuple[str, ...]
    options: dict[str, Any]
    #: Passed to the service under its ``dest``; False for what only the CLI uses.
    to_service: bool = True

    @property
    def dest(self) -> str:
        if "dest" in self.options:
            return str(self.options["dest"])
        flag = next((f for f in self.flags if f.startswith("--")), self.flags[0])
        return flag.lstrip("-").replace("-", "_")


def arg(*flags: str, to_service: bool = True, **options: Any) -> Arg:
    return Arg(flags, options, to_service)


#: The type of a numeric option: digits only (see domain.validation.parse_integer).
INT = "int"


@dataclass(slots=True)
class Command:
    """One command: ``iovctl WORDS... [options]``."""

    words: tuple[str, ...]
    help: str
    args: tuple[Arg, ...] = ()
    #: The service: ``call(ctx, **options)``; None when ``main`` runs the command.
    call: Callable[..., Any] | None = None
    #: Runs in a write transaction (else a read snapshot).
    writes: bool = False
    #: Shows the result for people; ``-o json`` prints it as JSON instead.
    render: Callable[[Any], None] | None = None
    #: Shows the result itself, whatever ``-o`` says (``host snapshot`` writes a file).
    writer: Callable[[Any, argparse.Namespace], None] | None = None
    #: Commands that need no state store (demo, cleanup, ...): ``main(args, run)`` returns
    #: the exit code; ``run(argv)`` runs another iovctl command line (the demo's steps).
    main: Callable[[argparse.Namespace, Runner], int] | None = None
    #: Groups of flags of which at most one may be given (same ``dest``: the service
    #: cannot tell them apart, so the parser refuses them).
    exclusive: tuple[tuple[str, ...], ...] = ()
    #: What a ``main`` command prints under ``-o json`` (a view class; for the schema).
    returns: Any = None
    #: Flags of which exactly one must be given.
    one_of: tuple[str, ...] = ()
    #: Takes ``-o table|json``.
    output: bool = True
    #: A paragraph for the man page, after the one-line help.
    details: str = ""

    @property
    def name(self) -> str:
        return " ".join(self.words)


#: Command groups: word -> help (the group's commands follow in COMMANDS).
GROUPS: dict[str, str] = {
    "host": "host readiness: iov_support and reasons (Get-VMHost)",
    "adapter": "SR-IOV adapters (PFs): Get-/Enable-/Disable-/Set-NetAdapterSriov",
    "vf": "virtual functions: Get-NetAdapterSriovVf",
    "switch": "virtual switches: New-/Get-/Remove-VMSwitch",
    "vm": "virtual machines: New-/Start-/Stop-/Remove-VM",
    "nic": "VM network adapters: Add-/Set-/Remove-VMNetworkAdapter",
    "bench": "benchmarks on a throwaway emulated SR-IOV host or a real PF (root)",
}


def _deleted(result: dict[str, str]) -> None:
    render.note(f"{result['deleted']} {result['name']} deleted")


def _nic_options(*, for_set: bool) -> tuple[Arg, ...]:
    common = (
        arg("--mac", help="MAC address (default: generated 52:54:00:xx:xx:xx)"),
        arg(
            "--iov-weight",
            type=INT,
            metavar="0-100",
            help="0 = SR-IOV off; 1-100 = priority for VFs",
        ),
        arg(
            "--iov-queue-pairs", type=INT, metavar="N", help="queue pairs requested (RSS when > 1)"
        ),
        arg("--vlan", type=INT, metavar="ID", help="access VLAN 1-4094"),
        arg("--pvlan", choices=("isolated", "community", "promiscuous"), help="private VLAN mode"),
        arg("--primary-vlan", type=INT, metavar="ID", help="primary VLAN of the private VLAN"),
        arg(
            "--secondary-vlan", type=INT, metavar="ID", help="secondary VLAN (isolated, community)"
        ),
        arg("--max-rate", type=INT, metavar="MBPS", help="bandwidth limit in Mbit/s"),
        arg(
            "--allow-mac-spoofing",
            action="store_true",
            default=None,
            help="turn VF spoof check off",
        ),
        arg(
            "--trust",
            action="store_true",
            default=None,
            help="trusted VF (promiscuous, MAC changes)",
        ),
    )
    if not for_set:
        return common
    return (
        *common,
        arg("--switch", metavar="SWITCH", help="move to another virtual switch"),
        arg("--untagged", action="store_true", help="remove the access VLAN"),
        arg("--no-pvlan", action="store_true", help="leave the private VLAN"),
        arg("--unlimited", action="store_true", help="remove the bandwidth limit"),
        arg(
            "--no-allow-mac-spoofing",
            dest="allow_mac_spoofing",
            action="store_false",
            help="turn VF spoof check back on",
        ),
        arg("--no-trust", dest="trust", action="store_false", help="untrusted VF (the default)"),
    )


_NIC_EXCLUSIVE = (
    ("--allow-mac-spoofing", "--no-allow-mac-spoofing"),
    ("--trust", "--no-trust"),
)


def _new(what: str) -> Arg:
    return arg("name", metavar="NAME", help=f"the new {what}'s name")


def _existing(what: str) -> Arg:
    """An existing object, by name; its metavar (VM, SWITCH) says what completes it."""
    return arg("name", metavar=what.upper(), help=f"the {what}")


def _write_snapshot(doc: dict[str, Any], args: argparse.Namespace) -> None:
    """The spec as YAML (or JSON under ``-o json``: YAML reads it too) to --file or stdout."""
    import json
    import sys

    import yaml

    if args.output == "json":
        text = json.dumps(doc, indent=2) + "\n"
    else:
        text = yaml.safe_dump(doc, sort_keys=False)
    if args.file is None:
        sys.stdout.write(text)
        return
    from iovctl.adapters.output_file import write_output_file

    write_output_file(args.file, text)  # whole or not at all; a directory is refused
    if args.output != "json":
        render.note(f"host spec written to {args.file} (load it with --sim {args.file})")


def _cleanup(args: argparse.Namespace, run: Runner) -> int:
    from iovctl.adapters.netns.cleanup import cleanup

    done = cleanup()
    report = views.CleanupView(done.namespaces, done.links, done.nft_chains)
    if args.output == "json":
        render.as_json(views.to_json(report))
    else:
        render.note(
            f"removed {len(report.namespaces)} namespaces, {len(report.links)} links"
            f" and {len(report.nft_chains)} nftables chains"
        )
    return 0


def _install_service(args: argparse.Namespace, run: Runner) -> int:
    import shutil
    import sys
    from pathlib import Path

    from iovctl.adapters.systemd import DAEMON_UNIT_NAME, UNIT_NAME, install_unit
    from iovctl.cli.local import local_options

    options = local_options(args)
    command = shutil.which("iovctl") or f"{sys.executable} -m iovctl"
    assert options.state_dir is not None
    done = install_unit(
        Path(args.unit_dir),
        command,
        options.state_dir.resolve(),
        enable=not args.no_enable,
        unit=DAEMON_UNIT_NAME if args.daemon else UNIT_NAME,
    )
    view = views.InstallServiceView(str(done["unit"]), bool(done["changed"]), bool(done["enabled"]))
    if args.output == "json":
        render.as_json(views.to_json(view))
    else:
        state = "written" if view.changed else "already up to date"
        render.note(f"{view.unit} {state}; enabled: {'yes' if view.enabled else 'no'}")
    return 0


def _demo(args: argparse.Namespace, run: Runner) -> int:
    from iovctl.cli.demo import run_demo

    return run_demo(run, keep=args.keep)


def _bench_datapath(args: argparse.Namespace, run: Runner) -> int:
    from iovctl.adapters.output_file import check_output_path, write_output_file
    from iovctl.bench.report import run_datapath

    path: str | None = args.json_file
    if path is not None:
        check_output_path(path)  # before minutes of measuring, not after

    def save(text: str) -> None:
        assert path is not None
        write_output_file(path, text)  # whole or not at all

    return run_datapath(
        args.vms, args.quick, args.tool, save if path else None, args.output, args.adapter
    )


COMMANDS: tuple[Command, ...] = (
    Command(("host",), GROUPS["host"], call=api.host_show, render=render.host),
    Command(
        ("host", "snapshot"),
        "write this machine as a host spec (--sim FILE loads it)",
        (
            arg("--file", metavar="FILE", to_service=False, help="write here (default: stdout)"),
            arg("--name", metavar="NAME", help="spec name (default: the hostname)"),
        ),
        call=api.host_snapshot,
        writer=_write_snapshot,
        details="The spec is YAML; with -o json it is JSON, which --sim reads as well.",
    ),
    Command(
        ("host", "power-cycle"),
        "simulated hosts only: reboot the hardware (VF counts and settings are lost)",
        call=api.host_power_cycle,
        writes=True,
        render=render.host,
    ),
    Command(
        ("apply",),
        "restore VF counts and VF settings to the stored desired state (boot)",
        (arg("--dry-run", action="store_true", help="show what would change"),),
        call=api.apply,
        writes=True,
        render=render.apply_report,
    ),
    Command(
        ("install-service",),
        "install the systemd unit that runs 'iovctl apply' at boot, or the daemon's (root)",
        (
            arg(
                "--unit-dir", default="/etc/systemd/system", metavar="DIR", help="where units live"
            ),
            arg("--no-enable", action="store_true", help="write the unit only"),
            arg(
                "--daemon",
                action="store_true",
                help="install iovctld.service, which runs 'iovctl daemon', instead",
            ),
        ),
        main=_install_service,
        returns=views.InstallServiceView,
    ),
    Command(
        ("adapter", "list"), "list network adapters", call=api.adapter_list, render=render.adapters
    ),
    Command(
        ("adapter", "show"),
        "one adapter with its VFs",
        (arg("name", metavar="ADAPTER", help="the adapter (PF) netdev name"),),
        call=api.adapter_show,
        render=render.adapter,
    ),
    Command(
        ("adapter", "enable"),
        "enable SR-IOV (all VFs by default)",
        (
            arg("name", metavar="ADAPTER", help="the adapter (PF) netdev name"),
            arg("--num-vfs", type=INT, metavar="N", help="VF count (default: all)"),
        ),
        call=api.adapter_enable,
        writes=True,
        render=render.adapter,
    ),
    Command(
        ("adapter", "disable"),
        "disable SR-IOV (refused while VMs hold VFs, unless --force)",
        (
            arg("name", metavar="ADAPTER", help="the adapter (PF) netdev name"),
            arg(
                "--force",
                action="store_true",
                help="move NICs holding VFs to the software path first",
            ),
        ),
        call=api.adapter_disable,
        writes=True,
        render=render.adapter,
    ),
    Command(
        ("adapter", "set"),
        "set the VF count",
        (
            arg("name", metavar="ADAPTER", help="the adapter (PF) netdev name"),
            arg("--num-vfs", type=INT, metavar="N", required=True, help="VF count"),
            arg("--force", action="store_true", help="revoke assigned VFs first"),
        ),
        call=api.adapter_set,
        writes=True,
        render=render.adapter,
    ),
    Command(
        ("vf", "list"),
        "list VFs and who holds them",
        (arg("adapter", nargs="?", metavar="ADAPTER", help="only this adapter's VFs"),),
        call=api.vf_list,
        render=render.vfs,
    ),
    Command(
        ("switch", "create"),
        "create an external switch",
        (
            _new("switch"),
            arg("--uplink", required=True, metavar="ADAPTER", help="the adapter it bridges"),
            arg("--iov", action="store_true", help="enable SR-IOV (fixed at creation)"),
        ),
        call=api.switch_create,
        writes=True,
        render=render.switch,
    ),
    Command(
        ("switch", "list"),
        "list switches with IOV counters",
        call=api.switch_list,
        render=render.switches,
    ),
    Command(
        ("switch", "show"),
        "one switch",
        (_existing("switch"),),
        call=api.switch_show,
        render=render.switch,
    ),
    Command(
        ("switch", "set"),
        "change a switch (IOV is fixed: refused)",
        (
            _existing("switch"),
            arg("--iov", dest="iov", action="store_true", default=None, help="IOV on"),
            arg("--no-iov", dest="iov", action="store_false", help="IOV off"),
        ),
        call=api.switch_set,
        writes=True,
        render=render.switch,
        one_of=("--iov", "--no-iov"),
    ),
    Command(
        ("switch", "delete"),
        "delete a switch without NICs",
        (_existing("switch"),),
        call=api.switch_delete,
        writes=True,
        render=_deleted,
    ),
    Command(
        ("vm", "create"),
        "create a VM (off)",
        (
            _new("VM"),
            arg("--memory", type=INT, metavar="MIB", help="memory of a hypervisor's VM (MiB)"),
            arg("--vcpus", type=INT, metavar="N", help="virtual CPUs of a hypervisor's VM"),
            arg("--disk", metavar="PATH", help="disk image (qcow2 or raw) the VM boots"),
            arg("--kernel", metavar="PATH", help="kernel the VM boots (instead of --disk)"),
            arg("--initrd", metavar="PATH", help="initrd for --kernel"),
            arg("--cmdline", metavar="S", help="kernel command line for --kernel"),
        ),
        call=api.vm_create,
        writes=True,
        render=render.vm,
        details=(
            "On a hypervisor runtime (libvirt) the VM is defined there too: a q35 machine"
            " with --memory and --vcpus, booting --disk or --kernel [--initrd]"
            " [--cmdline]; the files must exist and be readable. Runtimes whose VMs are"
            " iovctl's own (network namespaces) take no template options."
        ),
    ),
    Command(
        ("vm", "import"),
        "take over a VM the hypervisor has (a libvirt domain)",
        (arg("name", metavar="DOMAIN", help="the hypervisor's name of the VM"),),
        call=api.vm_import,
        writes=True,
        render=render.vm,
        details=(
            "The VM keeps its definition and its power state; iovctl adds its NICs'"
            " failover pairs and follows its starts and stops, whoever makes them (virsh,"
            " virt-manager, autostart, a crash). Refused with the reason for a VM that"
            " cannot carry a failover pair (not q35, no free PCIe root port)."
            " iovctl vm delete lets go of it again without undefining it."
        ),
    ),
    Command(
        ("vm", "delete"),
        "delete a stopped VM and its NICs",
        (_existing("VM"),),
        call=api.vm_delete,
        writes=True,
        render=_deleted,
    ),
    Command(("vm", "list"), "list VMs", call=api.vm_list, render=render.vms),
    Command(
        ("vm", "show"),
        "one VM with its network adapters, created and started times",
        (_existing("VM"),),
        call=api.vm_show,
        render=render.vm,
    ),
    Command(
        ("vm", "start"),
        "start: NICs get VFs by weight",
        (_existing("VM"),),
        call=api.vm_start,
        writes=True,
        render=render.vm,
    ),
    Command(
        ("vm", "stop"),
        "stop: the guest OS shuts down (or --turn-off); VFs are scrubbed and handed on",
        (
            _existing("VM"),
            arg(
                "--turn-off",
                action="store_true",
                help="power it off at once (virsh destroy; Stop-VM -TurnOff)",
            ),
            arg(
                "--timeout",
                type=INT,
                metavar="S",
                help="seconds to wait for the guest to power off (default 120)",
            ),
        ),
        call=api.vm_stop,
        writes=True,
        render=render.vm,
    ),
    Command(
        ("nic", "add"),
        "add a NIC to a VM",
        (
            arg("vm", metavar="VM", help="the VM"),
            arg("--switch", required=True, metavar="SWITCH", help="the virtual switch"),
            arg("--name", metavar="NIC", help="NIC name (default: nic0, nic1, ...)"),
            *_nic_options(for_set=False),
        ),
        call=api.nic_add,
        writes=True,
        render=render.nic,
    ),
    Command(
        ("nic", "set"),
        "change a NIC",
        (
            arg("vm", metavar="VM", help="the VM"),
            arg("nic", metavar="NIC", help="the NIC"),
            *_nic_options(for_set=True),
        ),
        call=api.nic_set,
        writes=True,
        render=render.nic,
        exclusive=_NIC_EXCLUSIVE,
    ),
    Command(
        ("nic", "remove"),
        "remove a NIC",
        (arg("vm", metavar="VM", help="the VM"), arg("nic", metavar="NIC", help="the NIC")),
        call=api.nic_remove,
        writes=True,
        render=_deleted,
    ),
    Command(
        ("nic", "list"),
        "list NICs with their path and why",
        (arg("vm", nargs="?", metavar="VM", help="only this VM's NICs"),),
        call=api.nic_list,
        render=render.nics,
    ),
    Command(
        ("nic", "show"),
        "one NIC",
        (arg("vm", metavar="VM", help="the VM"), arg("nic", metavar="NIC", help="the NIC")),
        call=api.nic_show,
        render=render.nic,
    ),
    Command(
        ("events",),
        "what happened and why",
        (
            arg("--limit", type=INT, metavar="N", help="only the last N events"),
            arg("--since", type=INT, default=0, metavar="SEQ", help="events after SEQ"),
            arg("--level", choices=api.LEVELS, help="this level or worse"),
            arg(
                "--kind",
                choices=api.KINDS,
                help="events of this kind of object",
            ),
            arg(
                "--object",
                dest="object_name",
                metavar="NAME",
                help="events of this object (a VM's name includes its NICs)",
            ),
            arg(
                "--follow",
                "-f",
                action="store_true",
                to_service=False,
                help="keep printing new events until interrupted",
            ),
        ),
        call=api.events,
        render=render.events,
        details="With --follow, new events are printed as they happen (JSON: one object a line) until Ctrl-C.",
    ),
    Command(
        ("cleanup",),
        "remove every namespace, veth, bridge, tc and nftables object iovctl made (root)",
        main=_cleanup,
        returns=views.CleanupView,
    ),
    Command(
        ("demo",),
        "narrated tour on a throwaway simulated host",
        (arg("--keep", metavar="DIR", help="keep the demo's state directory in DIR"),),
        main=_demo,
        output=False,
    ),
    Command(
        ("bench", "datapath"),
        "throughput, latency, failover gap, setup time: VF vs synthetic path",
        (
            arg("--vms", type=INT, default=4, metavar="N", help="VMs sending at once (2-32)"),
            arg("--quick", action="store_true", help="small counts, a few seconds (CI)"),
            arg(
                "--tool",
                choices=("auto", "iperf3", "python"),
                default="auto",
                help="TCP throughput by iperf3 or a Python blaster (auto: iperf3 if installed)",
            ),
            arg("--json", dest="json_file", metavar="FILE", help="also write JSON here"),
            arg(
                "--adapter",
                metavar="PF",
                help="measure real VFs of this idle SR-IOV PF (taken for the run, given back)",
            ),
        ),
        main=_bench_datapath,
    ),
)

BY_WORDS: dict[tuple[str, ...], Command] = {c.words: c for c in COMMANDS}
