"""Wiring: the hardware and the VM runtime are chosen apart, each bound to the state dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from iovctl.domain.drivers import VfDriver
from iovctl.errors import InvalidInput, StateError
from iovctl.wiring import Options, open_context


def test_a_simulated_host_gets_simulated_vms_by_default(tmp_path: Path) -> None:
    ctx = open_context(Options(state_dir=tmp_path, sim="igb"))
    assert ctx.runtime.vf_driver is VfDriver.VFIO
    assert ctx.store.get_meta("runtime") == "sim"
    ctx.store.close()


def test_the_runtime_is_chosen_apart_and_bound(tmp_path: Path) -> None:
    ctx = open_context(Options(state_dir=tmp_path, sim="igb", runtime="netns"))
    # Namespaces over a simulated host; built lazily, so no root is needed here.
    assert ctx.runtime.vf_driver is VfDriver.NET
    ctx.runtime.close()
    ctx.store.close()

    again = open_context(Options(state_dir=tmp_path))
    assert again.store.get_meta("runtime") == "netns"
    assert again.runtime.vf_driver is VfDriver.NET
    again.store.close()

    with pytest.raises(StateError) as caught:
        open_context(Options(state_dir=tmp_path, runtime="sim"))
    assert caught.value.code == "state-backend-mismatch"
    assert "netns" in caught.value.message


def test_unknown_runtime(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as caught:
        open_context(Options(state_dir=tmp_path, sim="igb", runtime="xen"))
    assert caught.value.code == "unknown-runtime"
    assert "sim, netns" in caught.value.hint
    assert list(tmp_path.iterdir()) == []  # refused before the state dir was touched
