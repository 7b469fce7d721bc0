"""Names of every kernel object the network-namespace backends create.

One place decides them so that cleanup can find everything by prefix, also after a
process was killed mid-operation. Every name fits IFNAMSIZ (15 characters) where it
is an interface name, and is derived deterministically from the object it stands
for, so a second command finds what the first one made.

Pure: must not import pyroute2, subprocess or anything that touches the kernel.
"""

from __future__ import annotations

import re
import zlib

#: Every network namespace iovctl creates starts with this.
NETNS_PREFIX = "iov-"
#: The outside world: the far end of the emulated NICs' wires (tests give their own).
WORLD_NETNS = "iov-world"
#: Host-namespace interfaces iovctl creates start with this (switch bridges, synthetic ends).
HOST_IFNAME_PREFIX = "iov"
#: Host end of a synthetic NIC's veth pair.
SYNTHETIC_HOST_PREFIX = "iovs"
#: nftables table (netdev family) in the host namespace with the spoof checks of the
#: synthetic ports: one chain per host end, named after it (``iovs<crc>``). Not
#: :data:`NFT_TABLE`, which lives in each emulated NIC's namespace.
SYNTHETIC_NFT_TABLE = "iovctl_synthetic"
#: nftables table (bridge family) with the private VLAN filters of the switches'
#: bridges: one chain per bridge, named after it (``iovbr<crc>``); in an emulated NIC's
#: namespace the same table holds its embedded switch's (chain :data:`ESW`).
PVLAN_NFT_TABLE = "iovctl_pvlan"

IFNAMSIZ = 15
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def _crc(text: str) -> str:
    return f"{zlib.crc32(text.encode()):08x}"


def is_ifname(name: str) -> bool:
    """A name the kernel accepts as an interface name (dev_valid_name, minus oddities)."""
    return bool(_IFNAME_RE.match(name)) and name not in (".", "..")


#: Every VM namespace starts with this.
VM_NETNS_PREFIX = f"{NETNS_PREFIX}vm-"


def vm_netns(vm: str) -> str:
    """The namespace that is VM ``vm``; VM names are already filename-safe (check_name)."""
    if len(vm) <= 40:
        return f"{VM_NETNS_PREFIX}{vm}"
    return f"{VM_NETNS_PREFIX}{vm[:31]}-{_crc(vm)}"


def nic_netns(adapter: str) -> str:
    """The namespace holding an emulated adapter's insides (embedded switch, VF ports)."""
    return f"{NETNS_PREFIX}nic-{adapter}"


def synthetic_host_ifname(vm: str, nic: str) -> str:
    """Host end of the synthetic veth: a port of the switch's bridge."""
    return f"{SYNTHETIC_HOST_PREFIX}{_crc(f'{vm}/{nic}')}"


def nic_ifname(nic: str) -> str:
    """The NIC as the VM's workload sees it: the failover master that holds the IP."""
    return nic if is_ifname(nic) else f"n{_crc(nic)}"


def synthetic_vm_ifname(nic: str) -> str:
    """VM end of the synthetic veth: a port of the failover master."""
    return f"syn{_crc(nic)}"


def anchor_ifname(nic: str) -> str:
    """The failover master's carrier anchor: a port that is always up (see runtime)."""
    return f"anc{_crc(nic)}"


def anchor_peer_ifname(nic: str) -> str:
    """The other end of the anchor's veth pair, also inside the VM."""
    return f"anp{_crc(nic)}"


_PAIR_HELPER_RE = re.compile(r"^(syn|anc|anp)[0-9a-f]{8}$")


def is_pair_helper(ifname: str) -> bool:
    """A VM interface iovctl made for a failover pair (synthetic half, anchor), not a VF."""
    return bool(_PAIR_HELPER_RE.match(ifname))


# -- the emulated NIC -------------------------------------------------------------
# Inside ``nic_netns(adapter)`` names only need to be unique per adapter.

#: The embedded switch (a bridge) of an emulated adapter.
ESW = "esw"
#: The embedded switch's port toward the wire.
UPLINK_PORT = "uplink"
#: The embedded switch's port toward the PF netdev.
PF_PORT = "pf"
#: nftables table (netdev family) holding VF spoof checks and VEPA forwarding.
NFT_TABLE = "iovctl"


def vf_netdev(adapter: str, index: int) -> str:
    """The VF netdev the host sees (what a VF driver would register), e.g. ``iove0v3``."""
    return f"{adapter}v{index}"


def vf_port(index: int) -> str:
    """The NIC side of VF ``index``: where the VF's frames enter the NIC."""
    return f"vf{index}"


def vf_shaper(index: int) -> str:
    """Transmit shaper of VF ``index`` (its root qdisc enforces the max rate)."""
    return f"vf{index}s"


def vf_switch_port(index: int) -> str:
    """Port of VF ``index`` on the embedded switch (spoof check and VEPA act here)."""
    return f"vf{index}b"


def wire_world_ifname(adapter: str) -> str:
    """The wire's far end, a port of the world's bridge."""
    return f"w{adapter}"[:IFNAMSIZ]


#: The world's bridge: the adjacent external switch (hairpin on in VEPA mode).
WORLD_BRIDGE = "world"

#: Longest adapter name that leaves room for ``v<index>`` up to 255 VFs.
MAX_ADAPTER_NAME = IFNAMSIZ - 4
