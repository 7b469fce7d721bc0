"""VfDrivers on the emulated NIC: its VFs are veths, netdevs of the host for good."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from netns_lab import Lab

from iovctl.domain.drivers import VfDriver
from iovctl.errors import HardwareError

pytestmark = pytest.mark.privileged


def test_emulated_vfs_stay_on_their_net_driver(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(num_vfs=2)
    assert lab.hardware.bind_vf_driver(lab.adapter, 1, VfDriver.NET) == "veth"
    with pytest.raises(HardwareError) as caught:
        lab.hardware.bind_vf_driver(lab.adapter, 1, VfDriver.VFIO)
    assert caught.value.code == "vfio-not-emulated"
    assert caught.value.hint
    with pytest.raises(HardwareError) as caught:
        lab.hardware.bind_vf_driver(lab.adapter, 2, VfDriver.NET)
    assert caught.value.code == "vf-not-found"
