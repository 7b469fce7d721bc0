"""Known PF drivers and the VF settings they refuse (measured or from driver source).

A host spec or the real backend may refine this per adapter; unknown drivers are
assumed to support everything and their refusals are learnt from the kernel's errno.
"""

from __future__ import annotations

from enum import Enum

from iovctl.domain.model import VfSetting

V = VfSetting

#: driver -> settings its ndo_set_vf_* refuse.
UNSUPPORTED_BY_DRIVER: dict[str, frozenset[VfSetting]] = {
    # Measured on QEMU's 82576 with kernels 6.1 and 6.12 (docs/reference/linux-sriov.md):
    # link state EOPNOTSUPP, min rate EINVAL, 802.1ad EPROTONOSUPPORT, no RSS query.
    "igb": frozenset({V.LINK_STATE, V.MIN_RATE, V.VLAN_PROTOCOL, V.QUERY_RSS, V.PVLAN}),
    # ixgbe: no min rate, no link state before X550; RSS query on 82599.
    "ixgbe": frozenset({V.MIN_RATE, V.VLAN_PROTOCOL, V.PVLAN}),
    "i40e": frozenset({V.VLAN_PROTOCOL, V.QUERY_RSS, V.PVLAN}),
    "ice": frozenset({V.QUERY_RSS, V.PVLAN}),
    "mlx5_core": frozenset({V.QUERY_RSS, V.PVLAN}),
}

#: VF driver a PF driver's VFs bind to.
VF_DRIVER = {
    "igb": "igbvf",
    "ixgbe": "ixgbevf",
    "i40e": "iavf",
    "ice": "iavf",
    "mlx5_core": "mlx5_core",
}


#: PF drivers that complete a VF's reset over the PF/VF mailbox only while the PF's
#: netdev is up: igb and ixgbe set CTRL_EXT.PFRSTD when the PF opens, and until then
#: igbvf/ixgbevf say "PF still in reset state. Is the PF interface up?" and take a
#: random MAC as their permanent address. A VF that resets so (bound to its driver
#: here, or in a guest behind vfio-pci) ignores the MAC set on the PF, and a VM's
#: net_failover never teams it with the NIC's virtio half.
VF_RESET_NEEDS_PF_UP = frozenset({"igb", "ixgbe"})


def unsupported_settings(driver: str | None) -> frozenset[VfSetting]:
    return UNSUPPORTED_BY_DRIVER.get(driver or "", frozenset())


class VfDriver(Enum):
    """Which kind of driver a VF must be bound to for a VM runtime to use it."""

    #: The PF's VF network driver (igbvf, iavf...): the VF is a netdev of the host,
    #: as network namespaces use it.
    NET = "net"
    #: vfio-pci: the VF is handed whole to a guest (QEMU/KVM through VFIO).
    VFIO = "vfio-pci"
