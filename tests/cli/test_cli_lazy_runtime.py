"""On the Linux backend the VM runtime is built on first use (wiring.netns_runtime, a generic Lazy proxy).

Read commands never touch a VM, so they must not pay for importing the
network-namespace runtime. Each check runs in a fresh interpreter, whose
``sys.modules`` says what the command loaded.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from helpers import fresh_python

RUNTIME_MODULE = "iovctl.adapters.netns.runtime"

#: Binds a fresh state dir to the linux backend (as on a host with a PCI bus), runs
#: a read command through the real CLI and reports what got imported.
_READ_ON_LINUX = textwrap.dedent(
    """
    import contextlib, io, json, sys
    from pathlib import Path
    from iovctl.adapters.sqlite.store import SqliteStore
    from iovctl.cli.main import main

    runtime_module, state = sys.argv[1], Path(sys.argv[2])
    store = SqliteStore.open(state)
    with store.transaction():
        store.set_meta("backend", "linux")
    store.close()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--state-dir", str(state), *sys.argv[3:], "-o", "json"])
    print(json.dumps({
        "code": code,
        "output": json.loads(out.getvalue()),
        "linux_host": "iovctl.adapters.linux.host" in sys.modules,
        "runtime": runtime_module in sys.modules,
    }))
    """
)

#: The proxy alone: close() before use, a first call, close() after.
_PROXY = textwrap.dedent(
    """
    import json, sys
    from iovctl.adapters.sqlite.store import SqliteStore
    from iovctl.domain.drivers import VfDriver
    from iovctl.wiring import netns_runtime

    runtime_module = sys.argv[1]
    runtime = netns_runtime(SqliteStore.open(None))
    runtime.close()
    assert runtime.vf_driver is VfDriver.NET  # known without building
    before = runtime_module in sys.modules
    # No such namespace: answers False without root or netlink.
    active = runtime.vf_data_path_active("lazy-probe-no-such-vm", "nic0")
    after = runtime_module in sys.modules
    runtime.close()
    print(json.dumps({"before": before, "active": active, "after": after}))
    """
)


def _python(script: str, *args: str) -> dict[str, Any]:
    """Run ``script`` in a fresh interpreter (argv: RUNTIME_MODULE, *args); its last line."""
    result: dict[str, Any] = fresh_python(script, RUNTIME_MODULE, *args)
    return result


def test_read_commands_on_the_linux_backend_do_not_import_the_vm_runtime(tmp_path: Path) -> None:
    for command in (["vm", "list"], ["events"]):
        report = _python(_READ_ON_LINUX, str(tmp_path / "state"), *command)
        assert report["code"] == 0, command
        assert report["linux_host"] is True, "the linux backend was not the one wired"
        assert report["runtime"] is False, f"{command} imported {RUNTIME_MODULE}"


def test_the_lazy_runtime_is_built_on_first_call_and_closes_cleanly() -> None:
    report = _python(_PROXY)
    assert report == {"before": False, "active": False, "after": True}


def test_creating_a_vm_on_the_linux_backend_does_not_import_the_vm_runtime(
    tmp_path: Path,
) -> None:
    """vm create's define-vm step asks the runtime, which a namespace answers
    without being built (its VMs are iovctl's own records)."""
    report = _python(_READ_ON_LINUX, str(tmp_path / "state"), "vm", "create", "lazy")
    assert report["code"] == 0 and report["output"]["name"] == "lazy"
    assert report["runtime"] is False
