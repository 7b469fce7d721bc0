"""``iovctl`` entry point: argument parsing and the one place errors become exit codes.

Imports stay lazy so ``iovctl --version`` starts fast; every command runs in one
state-store transaction (reads in a snapshot).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from iovctl import __version__
from iovctl.domain.text import shown
from iovctl.errors import InvalidInput, IovctlError

EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug, not a foreseeable failure
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse repeats the offending argument as typed: escapes and all.
        raise InvalidInput(
            "usage", f"{self.prog}: {shown(message, 500)}", f"see: {self.prog} --help"
        )


def _output_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default=argparse.SUPPRESS,
        help="output format (json is a stable contract)",
    )


def _nic_options(p: argparse.ArgumentParser, *, for_set: bool) -> None:
    p.add_argument("--mac", help="MAC address (default: generated 52:54:00:xx:xx:xx)")
    p.add_argument(
        "--iov-weight", type=int, metavar="0-100", help="0 = SR-IOV off; 1-100 = priority for VFs"
    )
    p.add_argument(
        "--iov-queue-pairs", type=int, metavar="N", help="queue pairs requested (RSS when > 1)"
    )
    p.add_argument("--vlan", type=int, metavar="ID", help="access VLAN 1-4094")
    p.add_argument(
        "--pvlan", choices=("isolated", "community", "promiscuous"), help="private VLAN mode"
    )
    p.add_argument("--primary-vlan", type=int, metavar="ID")
    p.add_argument("--secondary-vlan", type=int, metavar="ID")
    p.add_argument("--max-rate", type=int, metavar="MBPS", help="bandwidth limit in Mbit/s")
    p.add_argument(
        "--allow-mac-spoofing", action="store_true", default=None, help="turn VF spoof check off"
    )
    p.add_argument(
        "--trust", action="store_true", default=None, help="trusted VF (promiscuous, MAC changes)"
    )
    if for_set:
        p.add_argument("--switch", help="move to another virtual switch")
        p.add_argument("--untagged", action="store_true", help="remove the access VLAN")
        p.add_argument("--no-pvlan", action="store_true", help="leave the private VLAN")
        p.add_argument("--unlimited", action="store_true", help="remove the bandwidth limit")
        p.add_argument("--no-allow-mac-spoofing", dest="allow_mac_spoofing", action="store_false")
        p.add_argument("--no-trust", dest="trust", action="store_false")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or with ``only`` set just that command's sub-tree (fast start)."""
    common = _Parser(add_help=False)
    _output_option(common)
    parser = _Parser(
        prog="iovctl",
        description="SR-IOV network I/O virtualization for Linux/KVM hosts, the Hyper-V way.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"iovctl {__version__}")
    parser.add_argument(
        "--sim",
        metavar="SPEC",
        help="simulated host: demo, igb, no-iommu, bios-off or a YAML path (env IOVCTL_SIM)",
    )
    parser.add_argument(
        "--emulate",
        metavar="SPEC",
        help="emulated SR-IOV host of kernel devices (root): veb, vepa, isolated, trio or a YAML path (env IOVCTL_EMULATE)",
    )
    parser.add_argument("--state-dir", metavar="DIR", help="state directory (env IOVCTL_STATE_DIR)")
    sub = parser.add_subparsers(dest="group", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def want(name: str, help_: str) -> bool:
        # Building every sub-parser costs ~25 ms of start-up; a command needs one.
        if only is None or only == name:
            return True
        sub.add_parser(name, help=help_)
        return False

    def group(name: str, help_: str) -> argparse._SubParsersAction[_Parser]:
        g = sub.add_parser(name, help=help_, parents=[common])
        gs = g.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
        gs.required = True
        return gs

    if want("host", "host readiness: iov_support and reasons (Get-VMHost)"):
        host = sub.add_parser(
            "host", help="host readiness: iov_support and reasons (Get-VMHost)", parents=[common]
        )
        hs = host.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
        p = hs.add_parser(
            "snapshot", help="write this machine as a host spec (--sim FILE loads it)"
        )
        p.add_argument(
            "-o", "--output", dest="snapshot_file", metavar="FILE", help="default: stdout"
        )
        p.add_argument("--name", help="spec name (default: the hostname)")
        hs.add_parser(
            "power-cycle",
            parents=[common],
            help="simulated hosts only: reboot the hardware (VF counts and settings are lost)",
        )

    if want(
        "apply",
        "restore VF counts and VF settings to the stored desired state (boot)",
    ):
        p = sub.add_parser(
            "apply",
            help="restore VF counts and VF settings to the stored desired state (boot)",
            parents=[common],
        )
        p.add_argument("--dry-run", action="store_true", help="show what would change")

    if want(
        "install-service",
        "install the systemd unit that runs 'iovctl apply' at boot (root)",
    ):
        p = sub.add_parser(
            "install-service",
            help="install the systemd unit that runs 'iovctl apply' at boot (root)",
            parents=[common],
        )
        p.add_argument("--unit-dir", default="/etc/systemd/system", metavar="DIR")
        p.add_argument("--no-enable", action="store_true", help="write the unit only")

    if want(
        "adapter",
        "SR-IOV adapters (PFs): Get-/Enable-/Disable-/Set-NetAdapterSriov",
    ):
        ad = group("adapter", "SR-IOV adapters (PFs): Get-/Enable-/Disable-/Set-NetAdapterSriov")
        ad.add_parser("list", parents=[common], help="list network adapters")
        p = ad.add_parser("show", parents=[common], help="one adapter with its VFs")
        p.add_argument("name")
        p = ad.add_parser("enable", parents=[common], help="enable SR-IOV (all VFs by default)")
        p.add_argument("name")
        p.add_argument("--num-vfs", type=int, metavar="N")
        p = ad.add_parser(
            "disable", parents=[common], help="disable SR-IOV; VMs fall back to software"
        )
        p.add_argument("name")
        p = ad.add_parser("set", parents=[common], help="set the VF count")
        p.add_argument("name")
        p.add_argument("--num-vfs", type=int, metavar="N", required=True)
        p.add_argument("--force", action="store_true", help="revoke assigned VFs first")

    if want("vf", "virtual functions: Get-NetAdapterSriovVf"):
        vf = group("vf", "virtual functions: Get-NetAdapterSriovVf")
        p = vf.add_parser("list", parents=[common], help="list VFs and who holds them")
        p.add_argument("adapter", nargs="?")

    if want("switch", "virtual switches: New-/Get-/Remove-VMSwitch"):
        sw = group("switch", "virtual switches: New-/Get-/Remove-VMSwitch")
        p = sw.add_parser("create", parents=[common], help="create an external switch")
        p.add_argument("name")
        p.add_argument("--uplink", required=True, metavar="ADAPTER")
        p.add_argument("--iov", action="store_true", help="enable SR-IOV (fixed at creation)")
        sw.add_parser("list", parents=[common], help="list switches with IOV counters")
        p = sw.add_parser("show", parents=[common], help="one switch")
        p.add_argument("name")
        p = sw.add_parser("set", parents=[common], help="change a switch (IOV is fixed: refused)")
        p.add_argument("name")
        iov = p.add_mutually_exclusive_group(required=True)
        iov.add_argument("--iov", dest="iov", action="store_true")
        iov.add_argument("--no-iov", dest="iov", action="store_false")
        p = sw.add_parser("delete", parents=[common], help="delete a switch without NICs")
        p.add_argument("name")

    if want("vm", "virtual machines: New-/Start-/Stop-/Remove-VM"):
        vm = group("vm", "virtual machines: New-/Start-/Stop-/Remove-VM")
        for verb, help_ in (
            ("create", "create a VM (off)"),
            ("delete", "delete a stopped VM and its NICs"),
            ("show", "one VM with its network adapters"),
            ("start", "start: NICs get VFs by weight"),
            ("stop", "stop: VFs are scrubbed and handed on"),
        ):
            vm.add_parser(verb, parents=[common], help=help_).add_argument("name")
        vm.add_parser("list", parents=[common], help="list VMs")

    if want("nic", "VM network adapters: Add-/Set-/Remove-VMNetworkAdapter"):
        nic = group("nic", "VM network adapters: Add-/Set-/Remove-VMNetworkAdapter")
        p = nic.add_parser("add", parents=[common], help="add a NIC to a VM")
        p.add_argument("vm")
        p.add_argument("--switch", required=True)
        p.add_argument("--name")
        _nic_options(p, for_set=False)
        p = nic.add_parser("set", parents=[common], help="change a NIC")
        p.add_argument("vm")
        p.add_argument("nic")
        _nic_options(p, for_set=True)
        p = nic.add_parser("remove", parents=[common], help="remove a NIC")
        p.add_argument("vm")
        p.add_argument("nic")
        p = nic.add_parser("list", parents=[common], help="list NICs with their path and why")
        p.add_argument("vm", nargs="?")
        p = nic.add_parser("show", parents=[common], help="one NIC")
        p.add_argument("vm")
        p.add_argument("nic")

    if want("events", "what happened and why"):
        p = sub.add_parser("events", help="what happened and why", parents=[common])
        p.add_argument("--limit", type=int, metavar="N", help="only the last N events")
        p.add_argument("--since", type=int, default=0, metavar="SEQ", help="events after SEQ")

    if want(
        "cleanup",
        "remove every namespace, veth, bridge, tc and nftables object iovctl made (root)",
    ):
        sub.add_parser(
            "cleanup",
            help="remove every namespace, veth, bridge, tc and nftables object iovctl made (root)",
            parents=[common],
        )

    if want("demo", "narrated tour on a throwaway simulated host"):
        p = sub.add_parser("demo", help="narrated tour on a throwaway simulated host")
        p.add_argument("--keep", metavar="DIR", help="keep the demo's state directory in DIR")

    if want("bench", "benchmarks on a throwaway emulated SR-IOV host or a real PF (root)"):
        bench = group("bench", "benchmarks on a throwaway emulated SR-IOV host or a real PF (root)")
        p = bench.add_parser(
            "datapath",
            parents=[common],
            help="throughput, latency, failover gap, setup time: VF vs synthetic path",
        )
        p.add_argument("--vms", type=int, default=4, metavar="N", help="VMs sending at once (2-32)")
        p.add_argument("--quick", action="store_true", help="small counts, a few seconds (CI)")
        p.add_argument(
            "--tool",
            choices=("auto", "iperf3", "python"),
            default="auto",
            help="TCP throughput by iperf3 or a Python blaster (auto: iperf3 if installed)",
        )
        p.add_argument("--json", dest="json_file", metavar="FILE", help="also write JSON here")
        p.add_argument(
            "--adapter",
            metavar="PF",
            help="measure real VFs of this idle SR-IOV PF (taken for the run, given back)",
        )

    return parser


_GLOBAL_WITH_VALUE = {"--sim", "--emulate", "--state-dir", "-o", "--output"}


def _command_of(argv: list[str]) -> str | None:
    """The command word, so only its parser is built; None (build all) when unsure."""
    if any(a in ("-h", "--help") for a in argv):
        return None
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _GLOBAL_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list == ["--version"]:  # fast path: no parser, no services
        print(f"iovctl {__version__}")
        return 0
    try:
        args = build_parser(_command_of(args_list)).parse_args(args_list)
        from iovctl.cli.commands import run

        return run(args)
    except IovctlError as exc:
        _print_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        from iovctl.cli import commands

        if commands.COMMITTED:
            print("error[interrupted]: interrupted after the change was saved", file=sys.stderr)
            print("hint: see the result with the matching list/show command", file=sys.stderr)
        else:
            print("error[interrupted]: interrupted; nothing was changed", file=sys.stderr)
            print("hint: run the command again", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: say so without a traceback unless asked
        if os.environ.get("IOVCTL_DEBUG"):
            raise
        print(f"error[internal]: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(
            "hint: this is a bug in iovctl; rerun with IOVCTL_DEBUG=1 and report the traceback",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def _print_error(exc: IovctlError) -> None:
    # Messages repeat what the user gave: never raw escapes, never 10,000 characters.
    print(shown(str(exc), 400), file=sys.stderr)
    if exc.hint:
        print(f"hint: {shown(exc.hint, 1000)}", file=sys.stderr)
