"""``iovctl host snapshot``: the running machine as a host spec (its digital twin).

Loading the result with ``--sim FILE`` gives the same adapter and VF inventory.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from iovctl.domain.host_spec import parse_spec, spec_document
from iovctl.services.context import Context


def snapshot(ctx: Context, name: str | None = None) -> dict[str, Any]:
    hw = ctx.hardware
    adapters = hw.adapters()
    vf_addresses = {
        a.name: [vf.pci_address for vf in hw.virtual_functions(a.name)]
        for a in adapters
        if a.sriov is not None and a.num_vfs
    }
    doc = spec_document(
        name or socket.gethostname(),
        ctx.facts,
        adapters,
        vf_addresses,
        f"snapshot of {hw.backend_name} host {socket.gethostname()} taken "
        + time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    )
    parse_spec(doc)  # what we write must load
    return doc
