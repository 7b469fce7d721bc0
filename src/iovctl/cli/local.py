"""The local state a command line names (``--state-dir``, ``--sim``, ``--emulate``,
``--runtime``, ``--libvirt-uri``): flags first, then the environment. Imports no
command table, so every front-end module may use it."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from iovctl.wiring import Options

#: The global options that choose a local state (refused together with --connect).
LOCAL_STATE_OPTIONS = ("state_dir", "sim", "emulate", "runtime", "libvirt_uri")


def local_options(args: argparse.Namespace) -> Options:
    from iovctl.wiring import resolve_options

    return resolve_options(
        args.state_dir,
        args.sim,
        args.emulate,
        getattr(args, "runtime", None),
        getattr(args, "libvirt_uri", None),
    )
