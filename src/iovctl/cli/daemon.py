"""``iovctl daemon`` and ``iovctl token``: the management plane's commands.

Apart from :mod:`iovctl.cli.commands` because the daemon's API is made from that
table (:mod:`iovctl.http.routes`): the table must not lead back to the daemon.
The daemon's dependencies (FastAPI, uvicorn) are imported when it starts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from iovctl.cli import render
from iovctl.cli.commands import INT, Command, Runner, arg

GROUPS: dict[str, str] = {
    "token": "bearer tokens for the daemon's TCP listener (reader or admin)",
}

#: Where the unit and the CLI look for the daemon.
ADMIN_SOCKET = "/run/iovctl/iovctl.sock"
READ_SOCKET = "/run/iovctl/iovctl-ro.sock"


def _state_dir(args: argparse.Namespace) -> Path:
    from iovctl.cli.local import local_options

    options = local_options(args)
    assert options.state_dir is not None
    return options.state_dir


def _daemon(args: argparse.Namespace, run: Runner) -> int:
    try:
        from iovctl.http.server import DaemonConfig, serve
    except ImportError as exc:
        from iovctl.errors import StateError

        raise StateError(
            "daemon-extra-missing",
            f"the daemon needs FastAPI and uvicorn: {exc}",
            "pip install 'iovctl[daemon]'",
        ) from exc
    from iovctl.cli.local import local_options

    options = local_options(args)
    return serve(
        DaemonConfig(
            options,
            Path(args.socket),
            Path(args.read_socket) if args.read_socket else None,
            args.listen,
            Path(args.tls_cert) if args.tls_cert else None,
            Path(args.tls_key) if args.tls_key else None,
            float(args.failover_wait),
        )
    )


def _token_add(args: argparse.Namespace, run: Runner) -> int:
    from iovctl.http.tokens import TokenStore

    token = TokenStore(_state_dir(args)).add(args.name, args.role)
    import sys

    print(token)  # alone on stdout: TOKEN=$(iovctl token add ...)
    print(f"token {args.name} ({args.role}): shown once, stored hashed", file=sys.stderr)
    return 0


def _token_list(args: argparse.Namespace, run: Runner) -> int:
    import time

    from iovctl.http.tokens import TokenStore

    entries = TokenStore(_state_dir(args)).entries()
    if args.output == "json":
        render.as_json([{"name": e.name, "role": e.role, "created": e.created} for e in entries])
        return 0
    for e in entries:
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.created))
        print(f"{e.name:<24} {e.role:<7} {stamp}")
    return 0


def _token_remove(args: argparse.Namespace, run: Runner) -> int:
    from iovctl.http.tokens import TokenStore

    TokenStore(_state_dir(args)).remove(args.name)
    render.note(f"token {args.name} removed")
    return 0


COMMANDS: tuple[Command, ...] = (
    Command(
        ("daemon",),
        "serve the HTTP API on unix sockets (foreground; iovctld.service runs it)",
        (
            arg(
                "--socket",
                default=ADMIN_SOCKET,
                metavar="PATH",
                help="admin socket (0660, group iovctl)",
            ),
            arg(
                "--read-socket",
                default=READ_SOCKET,
                metavar="PATH",
                help="read-only socket (0666; '' for none)",
            ),
            arg("--listen", metavar="HOST:PORT", help="also serve TCP (TLS and bearer tokens)"),
            arg("--tls-cert", metavar="FILE", help="PEM certificate for --listen"),
            arg("--tls-key", metavar="FILE", help="PEM private key for --listen"),
            arg(
                "--failover-wait",
                type=INT,
                default=300,
                metavar="SECONDS",
                help="how long a guest may take to use its VF before it goes to the next waiter",
            ),
        ),
        main=_daemon,
        output=False,
        details=(
            "While it runs the daemon is the state directory's single writer: the CLI's"
            " writes go through it (iovctl --connect unix:///run/iovctl/iovctl.sock ...)"
            " and a direct write is refused (error[daemon-running]). A second daemon on"
            " the same state directory is refused too. SIGTERM or SIGINT: the writes under"
            " way finish, then the sockets are removed. On a runtime that follows a"
            " hypervisor (libvirt) the daemon follows VMs started and stopped outside"
            " iovctl (virsh, virt-manager, autostart, crashes): their NICs get VFs by"
            " weight, or give them back. A VF whose guest has not negotiated failover"
            " after --failover-wait seconds goes to the next waiter, and the NIC says"
            " why (guest-no-failover). libvirt hooks, if any, may only signal the"
            " daemon: a hook that calls libvirt deadlocks libvirtd."
        ),
    ),
    Command(
        ("token", "add"),
        "create a bearer token; it is printed once and stored hashed",
        (
            arg("name", metavar="NAME", help="the token's name"),
            arg("--role", choices=("reader", "admin"), required=True, help="what it may do"),
        ),
        main=_token_add,
        output=False,
    ),
    Command(("token", "list"), "list tokens (names and roles)", main=_token_list),
    Command(
        ("token", "remove"),
        "remove a token",
        (arg("name", metavar="NAME", help="the token's name"),),
        main=_token_remove,
        output=False,
    ),
)
