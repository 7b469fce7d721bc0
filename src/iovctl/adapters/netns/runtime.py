"""NetnsVmRuntime: VMs as network namespaces, each NIC a failover pair.

Implements ``VmRuntime`` (ports). VM ``web`` is namespace ``iov-vm-web``. Its NIC
``nic0`` is a *failover master*, a Linux bridge named ``nic0`` inside the namespace
that carries the NIC's MAC and its one IPv4 address, with at most one active port:

- the **synthetic** half: a veth ``syn<crc>`` whose other end ``iovs<crc>`` is a port
  of the switch's Linux bridge (``iovbr<crc>``, the software path, with the uplink's
  PF as its uplink port);
- the **VF** half, while the allocator grants one: the VF netdev itself, moved into
  the namespace, given the NIC's MAC and enslaved to the master.

A bond would do this in a real guest; there is no bonding module here, and a bridge
with a single forwarding port behaves the same to the workload: the address, the
routes and every socket live on the master, which never changes. Switching paths is
link state, done by iovctl: ``attach_vf`` takes the synthetic port down (its host end
loses carrier, so the host bridge forgets the MAC there) and brings the VF up;
``detach_vf`` does the reverse and returns the VF to the host. Never are both ports
up, so the two paths to the same L2 network never form a loop. After each switch a
gratuitous ARP from the master tells every bridge on the way (host bridge, the NIC's
embedded switch, the world) where the MAC lives now, as bonding does on failover.

The NIC's spoof check and max rate hold on the synthetic half too, as on a VF: an
nftables netdev ingress chain on the host end (host table
``names.SYNTHETIC_NFT_TABLE``, one chain per host end, named after it) drops frames
from any other source MAC, and a tbf shaper on ``syn<crc>`` limits what the VM sends.
So does its VLAN: the host end is an access port of the switch bridge, which filters
VLANs once a NIC has one (``bridge_vlan``). Its private VLAN is filtered on the switch
bridge by ``pvlan_nft``, from what each host end's alias says of its NIC (MAC and
private VLAN), for NICs on either path. See docs/failover.md.

Every method is idempotent and needs root. Must not import the CLI, the store or other
adapters; it imports ``domain.names.bridge_name`` so that the bridge it builds is the
one ``switch show`` reports.
"""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from pyroute2 import NetlinkError

from iovctl.adapters.netns import bridge_vlan, names, pvlan_nft
from iovctl.adapters.netns.kernel import (
    NO_IPV6_ADDRESSES,
    Links,
    announce,
    brport_flags,
    ensure_netns,
    kernel_error,
    list_netns,
    netns_exists,
    open_announcer,
    remove_netns,
    run_tool,
    shape_transmit,
    tolerate,
    wait_until,
)
from iovctl.adapters.netns.nft import nft_delete_chain, nft_delete_table_if_empty, nft_rule_comments
from iovctl.adapters.netns.switch_bridge import ensure_switch_bridge
from iovctl.adapters.own_vms import OwnVms
from iovctl.domain.drivers import VfDriver
from iovctl.domain.model import NicConfig, NicTxBytes, VirtualFunction
from iovctl.domain.names import bridge_name
from iovctl.domain.pvlan import UplinkTagging
from iovctl.domain.pvlan import port_vlans as pvlan_port_vlans
from iovctl.errors import HardwareError

#: Picks the VM's IPv4 identity for a NIC: (vm, nic, config) -> address or None.
AddressPlan = Callable[[str, str, NicConfig], ipaddress.IPv4Interface | None]

DEFAULT_SUBNET = ipaddress.IPv4Network("10.77.0.0/16")
IFF_UP = 0x1
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
NTF_MASTER = 0x04
NTF_STICKY = 0x40
NUD_NOARP = 0x40  # "static" in iproute2
BR_STATE_FORWARDING = 3
#: Longest wait for a port to forward after a path switch (an igbvf VF under QEMU
#: takes about a second to see its link).
PORT_WAIT_S = 3.0


def mac_address_plan(subnet: ipaddress.IPv4Network = DEFAULT_SUBNET) -> AddressPlan:
    """Address from the MAC's low bytes: stable for the NIC, unique while MACs are.

    The first 256 addresses are left to the world and the host (``.0.1`` is the
    world's address in the emulation).
    """
    usable = subnet.num_addresses - 512

    def plan(vm: str, nic: str, config: NicConfig) -> ipaddress.IPv4Interface:
        low = int(config.mac.replace(":", "")[-6:], 16)
        host = subnet.network_address + 256 + low % usable
        return ipaddress.IPv4Interface(f"{host}/{subnet.prefixlen}")

    return plan


NO_MAC = "00:00:00:00:00:00"


def _changed_address(message: Any, mac: str) -> dict[str, str]:
    """``{"address": mac}`` when the link does not carry ``mac`` yet, else nothing."""
    return {} if message.get("IFLA_ADDRESS") == mac else {"address": mac}


class NetnsVmRuntime(OwnVms):
    """Implements ``VmRuntime`` with network namespaces. Root."""

    backend_name = "netns"
    #: A namespace uses the VF as a netdev: the VF's net driver (igbvf, iavf...).
    vf_driver = VfDriver.NET

    def __init__(
        self,
        uplink_of: Callable[[str], str],
        *,
        address_of: AddressPlan | None = None,
        links: Links | None = None,
    ) -> None:
        #: Switch name -> uplink adapter (its PF netdev in the host namespace).
        self._uplink_of = uplink_of
        self._address_of = address_of or mac_address_plan()
        self._links = links or Links()

    def close(self) -> None:
        self._links.close()

    # -- VMs -------------------------------------------------------------------

    def start_vm(self, vm: str) -> None:
        """Create the VM's namespace, from scratch.

        Services start only a VM the store has off, inside the command's write
        transaction; a namespace that is already there is what a start killed
        before it committed left behind: its VFs go back to the host and it is
        built again.
        """
        if netns_exists(names.vm_netns(vm)):
            self.stop_vm(vm)
        self._ensure_vm(vm)

    def is_running(self, vm: str) -> bool:
        """The VM's namespace exists."""
        return netns_exists(names.vm_netns(vm))

    def _ensure_vm(self, vm: str) -> None:
        # The NIC's IPv4 address is its identity: no SLAAC chatter.
        ensure_netns(names.vm_netns(vm), quiet_ipv6=True)

    def stop_vm(self, vm: str) -> None:
        """Return every VF to the host, then delete the namespace and its veths."""
        ns = names.vm_netns(vm)
        if not netns_exists(ns):
            return
        host_ends: list[str] = []
        bridges: dict[int, str] = {}
        for message in self._links(ns).get_links():
            name = str(message.get("IFLA_IFNAME"))
            if names.is_pair_helper(name):
                if name.startswith("syn"):
                    self._forget_on_uplink(ns, message)
                    host_end = self._host_end_name(message)
                    if host_end is not None:
                        host_ends.append(host_end)
                        bridges |= self._bridges_of(host_end)
                    self._links.delete(name, ns)  # its host end goes with it, now
            elif message.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "veth":
                self._return_to_host(ns, message)
        self._links.forget(ns)
        remove_netns(ns)
        self._drop_spoof_checks(*host_ends)
        self._sync_private_vlans(bridges)

    # -- the synthetic half ------------------------------------------------------

    def plug_software_nic(self, vm: str, nic: str, config: NicConfig) -> None:
        """Ensure the NIC's master (MAC, address) and its synthetic port on the switch,
        with the NIC's spoof check and max rate on what the VM sends through it (as
        the VF does on its half). Idempotent; at most one ``nft`` run (none when the
        spoof check is unchanged). Root."""
        self._ensure_vm(vm)
        ns = names.vm_netns(vm)
        links = self._links
        bridge = self._ensure_switch_bridge(config.switch)
        bridge_message = links.get(bridge_name(config.switch))
        vlan = config.vlan or 0
        uplink_name = self._uplink_of(config.switch)
        filters = bridge_vlan.filtering(bridge_message)
        if vlan:  # before anything of the NIC is made: a kernel may refuse it
            bridge_vlan.ensure_filtering(links, bridge_message, config.switch, f"{vm}/{nic}", vlan)
            filters = True
        elif config.pvlan is not None and not filters and self._can_tag(uplink_name):
            filters = bridge_vlan.try_filtering(links, bridge_message, config.switch)
        uplink = self._links.index(uplink_name)
        assert uplink is not None  # _ensure_switch_bridge checked it
        syn, host_end = names.synthetic_vm_ifname(nic), names.synthetic_host_ifname(vm, nic)
        before = self._links.get(names.nic_ifname(nic), ns)
        if before is not None and before.get("IFLA_ADDRESS") != config.mac:
            old_mac = str(before.get("IFLA_ADDRESS"))
            self._software_path(uplink, links.index(host_end), old_mac, vlan, present=False)
        master = self._ensure_master(ns, vm, nic, config)
        if links.index(syn, ns) is None:
            links.delete(host_end)  # half of a pair left by a killed command
            links.add(
                f"creating the synthetic NIC of {vm}/{nic}",
                ifname=host_end,
                kind="veth",
                peer={"ifname": syn, "net_ns_fd": ns},
            )
        host_index = links.index(host_end)
        links.set(
            f"plugging {vm}/{nic} into switch {config.switch}",
            index=host_index,
            master=bridge,
            state="up",
            IFLA_AF_SPEC=NO_IPV6_ADDRESSES,
            IFLA_IFALIAS=pvlan_nft.alias(config.mac, config.pvlan),
        )
        # Before the VM's end comes up: no frame of a new NIC passes unfiltered.
        pvlan_nft.sync(links, bridge, bridge_name(config.switch))
        if filters:
            self._sync_bridge_vlans(bridge, uplink_name, host_end, vlan)
        self._ensure_spoof_check(host_end, config)
        vf_ports = self._vf_ports(ns, master)
        for port in vf_ports:  # a MAC change must hold on the VF too
            name = str(port.get("IFLA_IFNAME"))
            self._adopt_mac(ns, name, int(port["index"]), config.mac)
        self._software_path(uplink, host_index, config.mac, vlan, present=not vf_ports)
        message = links.get(syn, ns)
        assert message is not None
        # The VM's end of the veth stands for the virtual NIC's transmit queue: the
        # max rate limits what the VM sends, as a VF's limits what the VF sends.
        # Shaped before the port comes up, kept while it is parked behind a VF.
        shape_transmit(
            links(ns), message["index"], config.max_rate, f"setting the max rate of {vm}/{nic}"
        )
        links.set(
            f"attaching the synthetic NIC of {vm}/{nic}",
            ns,
            index=message["index"],
            master=master,
            state="down" if vf_ports else "up",
            **_changed_address(message, config.mac),
        )

    def unplug_nic(self, vm: str, nic: str) -> None:
        ns = names.vm_netns(vm)
        links = self._links
        # Before anything is deleted: the VM's end of the veth takes the host end,
        # and with it which bridge the NIC was on, when it goes.
        bridges = self._bridges_of(names.synthetic_host_ifname(vm, nic))
        if netns_exists(ns):
            syn = links.get(names.synthetic_vm_ifname(nic), ns)
            if syn is not None:
                self._forget_on_uplink(ns, syn)
            master = links.index(names.nic_ifname(nic), ns)
            if master is not None:
                for port in self._vf_ports(ns, master):
                    self._return_to_host(ns, port)
                links.delete(names.nic_ifname(nic), ns)
            links.delete(names.synthetic_vm_ifname(nic), ns)
            links.delete(names.anchor_ifname(nic), ns)
        links.delete(names.synthetic_host_ifname(vm, nic))
        self._drop_spoof_checks(names.synthetic_host_ifname(vm, nic))
        self._sync_private_vlans(bridges)

    # -- the VF half ----------------------------------------------------------------

    def attach_vf(self, vm: str, nic: str, vf: VirtualFunction) -> None:
        """Move the VF into the VM under the NIC's master and make it the active path."""
        ns = names.vm_netns(vm)
        links = self._links
        netdev = self._vf_netdev(vf)
        master = links.index(names.nic_ifname(nic), ns) if netns_exists(ns) else None
        if master is None:
            raise HardwareError(
                "nic-not-plugged",
                f"network adapter {vm}/{nic} has no software half to pair VF {vf.index} with",
                "start the VM first (iovctl vm start); its NICs get their software path then",
            )
        mac = str(links(ns).get_links(master)[0].get("IFLA_ADDRESS"))
        if links.index(netdev, ns) is None:
            host_index = links.index(netdev)
            if host_index is None:
                host_index = self._reclaim(netdev, ns)
            if host_index is None:
                raise HardwareError(
                    "vf-netdev-missing",
                    f"VF {vf.index} of {vf.adapter} has no netdev {netdev} in the host",
                    "the VF may belong to another VM; check: iovctl vf list",
                )
            links.set(f"taking {netdev} down", index=host_index, state="down")
            links.set(f"giving {netdev} to VM {vm}", index=host_index, net_ns_fd=ns)
        vf_index = links.index(netdev, ns)
        assert vf_index is not None
        links.set(f"preparing {netdev}", ns, index=vf_index, IFLA_AF_SPEC=NO_IPV6_ADDRESSES)
        self._adopt_mac(ns, netdev, vf_index, mac)
        # Up before it is a port of the master (no loop: the master forwards to one
        # port at a time), so that its link comes up off the failover's clock: a
        # real VF hears of its link from its PF, a second or more under QEMU.
        links.set(f"starting {netdev}", ns, index=vf_index, state="up")
        wait_until(lambda: self._has_carrier(netdev, ns), PORT_WAIT_S)
        announcer = open_announcer(ns, names.nic_ifname(nic))
        # Synthetic down first: both halves up would be a loop between the two paths.
        syn = links.index(names.synthetic_vm_ifname(nic), ns)
        if syn is not None:
            links.set(f"parking the synthetic NIC of {vm}/{nic}", ns, index=syn, state="down")
        # The NIC's own switch delivers to the VF from now on; the host bridge is to
        # learn the MAC on the uplink from the VF's announcement, so its pin goes first.
        host_end = links.index(names.synthetic_host_ifname(vm, nic))
        self._software_path(links.index(vf.adapter), host_end, mac, vf.settings.vlan, present=False)
        links.set(
            f"switching {vm}/{nic} to {netdev}", ns, index=vf_index, master=master, state="up"
        )
        self._wait_forwarding((netdev, ns))
        announce(announcer, mac, self._ipv4(ns, master))

    def detach_vf(self, vm: str, nic: str, vf: VirtualFunction) -> None:
        """Switch the NIC back to the synthetic half and return the VF to the host."""
        ns = names.vm_netns(vm)
        if not netns_exists(ns):
            return
        links = self._links
        message = self._vf_link_in(ns, vf)
        syn = links.index(names.synthetic_vm_ifname(nic), ns)
        master = links.get(names.nic_ifname(nic), ns)
        announcer = open_announcer(ns, names.nic_ifname(nic)) if master is not None else None
        if master is not None:
            host_end = links.index(names.synthetic_host_ifname(vm, nic))
            mac = str(master.get("IFLA_ADDRESS"))
            self._software_path(
                links.index(vf.adapter), host_end, mac, vf.settings.vlan, present=True
            )
        if message is not None:
            links.set(
                f"unpairing VF {vf.index}", ns, index=message["index"], state="down", master=0
            )
        if syn is not None:
            links.set(f"switching {vm}/{nic} to its synthetic NIC", ns, index=syn, state="up")
            self._wait_forwarding(
                (names.synthetic_vm_ifname(nic), ns), (names.synthetic_host_ifname(vm, nic), None)
            )
        if announcer is not None and master is not None:
            announce(announcer, str(master.get("IFLA_ADDRESS")), self._ipv4(ns, master["index"]))
        if message is not None:
            self._return_to_host(ns, message)

    def vf_data_path_active(self, vm: str, nic: str) -> bool:
        """A VF is a port of the NIC's master and is up (so it carries the traffic)."""
        ns = names.vm_netns(vm)
        if not netns_exists(ns):
            return False
        master = self._links.index(names.nic_ifname(nic), ns)
        if master is None:
            return False
        return any(p["flags"] & IFF_UP for p in self._vf_ports(ns, master))

    def nic_tx_bytes(self, vm: str, nic: str) -> NicTxBytes:
        """tx_bytes of the master's ports: the synthetic veth and the VF netdev."""
        ns = names.vm_netns(vm)
        if not netns_exists(ns):
            return NicTxBytes()
        master = self._links.index(names.nic_ifname(nic), ns)
        if master is None:
            return NicTxBytes()
        synthetic = vf = 0
        for message in self._links(ns).get_links():
            name = str(message.get("IFLA_IFNAME"))
            stats = message.get("IFLA_STATS64")
            if stats is None or message.get("IFLA_MASTER") != master:
                continue
            if name == names.synthetic_vm_ifname(nic):
                synthetic = int(stats["tx_bytes"])
            elif not names.is_pair_helper(name):  # the VF, named by its driver
                vf = int(stats["tx_bytes"])
        return NicTxBytes(synthetic=synthetic, vf=vf)

    def guest_command(self, vm: str) -> list[str] | None:
        """``ip netns exec`` into the VM's namespace (None when it does not exist)."""
        ns = names.vm_netns(vm)
        return ["ip", "netns", "exec", ns] if netns_exists(ns) else None

    def wait_released(self, vm: str, nics: Iterable[str], timeout: float) -> bool:
        """The namespace is gone and so are the NICs' synthetic host ends (the kernel
        tears a namespace down asynchronously)."""
        if netns_exists(names.vm_netns(vm)):
            return False
        host_ends = {names.synthetic_host_ifname(vm, nic) for nic in nics}
        return wait_until(lambda: not host_ends & set(self._links.names()), timeout)

    # -- switches (not in the VmRuntime port yet: see docs/failover.md) ---------------

    def remove_switch(self, switch: str) -> None:
        """Delete the switch's bridge and its private VLAN filters; its uplink PF stays
        (released). Idempotent. Root."""
        self._links.delete(bridge_name(switch))
        pvlan_nft.drop(bridge_name(switch))

    # -- helpers ------------------------------------------------------------------

    def guest_address(self, vm: str, nic: str, config: NicConfig) -> ipaddress.IPv4Interface | None:
        """The IPv4 identity the NIC's master carries."""
        return self._address_of(vm, nic, config)

    def _ensure_switch_bridge(self, switch: str) -> int:
        return ensure_switch_bridge(self._links, switch, self._uplink_of(switch))

    def _ensure_master(self, ns: str, vm: str, nic: str, config: NicConfig) -> int:
        links = self._links
        name = names.nic_ifname(nic)
        # ageing 0: the master never remembers a MAC behind a port that may go away.
        # vlan_default_pvid 0: a bridge otherwise adds VLAN 1 to each port's filter,
        # and a VF whose PF set a port VLAN refuses that (igbvf: "Vlan id 1 is not
        # added", EINVAL), so the VF could never join the pair.
        links.add(
            f"creating NIC {vm}/{nic}",
            ns,
            ifname=name,
            kind="bridge",
            br_ageing_time=0,
            br_vlan_default_pvid=0,
        )
        message = links.get(name, ns)
        assert message is not None
        index = int(message["index"])
        # Only a real change: setting even the same MAC flushes the NIC's ARP cache
        # (NETDEV_CHANGEADDR), and every `nic set` passes through here.
        links.set(
            f"configuring NIC {vm}/{nic}",
            ns,
            index=index,
            state="up",
            **_changed_address(message, config.mac),
        )
        self._ensure_anchor(ns, vm, nic, index)
        address = self.guest_address(vm, nic, config)
        ipr = links(ns)
        current = [
            (str(a.get("IFA_ADDRESS")), int(a["prefixlen"]))
            for a in ipr.get_addr(index=index, family=2)
        ]
        wanted = (str(address.ip), address.network.prefixlen) if address else None
        for ip, prefix in current:
            if (ip, prefix) != wanted:
                with tolerate(errno.EADDRNOTAVAIL):
                    ipr.addr("del", index=index, address=ip, prefixlen=prefix)
        if wanted and wanted not in current:
            with tolerate(errno.EEXIST):
                ipr.addr("add", index=index, address=wanted[0], prefixlen=wanted[1])
        return index

    def _ensure_anchor(self, ns: str, vm: str, nic: str, master: int) -> None:
        """A port of the master that is always up, and to which nothing is forwarded.

        A bridge has carrier while one of its ports forwards. Without the anchor the
        master would have none for a moment at every path switch (the old port goes
        down before the new one comes up), and the kernel then flushes the NIC's ARP
        cache and may deactivate the master until the next linkwatch run, up to a
        second later (net/core/link_watch.c rate-limits non-urgent events to one
        run per second); packets queue behind an ARP request sent into that hole
        and wait for its retransmission: a 1 s failover gap instead of 10-20 ms.
        """
        links = self._links
        anchor, peer = names.anchor_ifname(nic), names.anchor_peer_ifname(nic)
        message = links.get(anchor, ns)
        if message is None:
            links.delete(peer, ns)  # half of a pair left by a killed command
            links.add(
                f"creating the carrier anchor of {vm}/{nic}",
                ns,
                ifname=anchor,
                kind="veth",
                peer={"ifname": peer},
            )
            message = links.get(anchor, ns)
            assert message is not None
        if message.get("IFLA_MASTER") == master and message["flags"] & IFF_UP:
            return
        links.set(
            f"starting the carrier anchor of {vm}/{nic}",
            ns,
            index=links.index(peer, ns),
            state="up",
        )
        links.set(
            f"anchoring NIC {vm}/{nic}",
            ns,
            index=message["index"],
            master=master,
            state="up",
        )
        # Nothing is ever forwarded to it: no flooding of any kind, no learning.
        links.brport(
            f"muting the carrier anchor of {vm}/{nic}",
            anchor,
            ns,
            learning=0,
            unicast_flood=0,
            mcast_flood=0,
            bcast_flood=0,
        )

    def _has_carrier(self, name: str, ns: str | None) -> bool:
        message = self._links.get(name, ns)
        return message is not None and message.get("IFLA_CARRIER") == 1

    def _adopt_mac(self, ns: str, netdev: str, index: int, mac: str) -> None:
        """Give the VF netdev the NIC's MAC (set on the VF by its PF when granted).

        An emulated VF takes it as any netdev does. A real VF asks its PF, and igb
        refuses a VF's request once the PF has set the VF's MAC ("attempted to
        override administratively set MAC address"); igbvf then keeps the MAC it
        learned at its last reset. Its reset (when it goes down) fetches the PF's, so
        the VF is cycled up, down and up (not yet a port of the master: no loop)
        until it shows it.
        """
        links = self._links

        def current() -> str | None:
            message = links.get(netdev, ns)
            return None if message is None else str(message.get("IFLA_ADDRESS"))

        if current() == mac:
            return
        try:
            links(ns).link("set", index=index, address=mac)
            return
        except NetlinkError as exc:
            if exc.code != errno.EADDRNOTAVAIL:
                raise kernel_error(f"setting the MAC of {netdev}", exc) from exc
        # igbvf resets when it goes down: up first, so that the down is one.
        for state in ("up", "down", "up"):
            links.set(f"resetting {netdev}", ns, index=index, state=state)
        if not wait_until(lambda: current() == mac, PORT_WAIT_S):
            raise HardwareError(
                "vf-mac-refused",
                f"{netdev} keeps MAC {current()} instead of {mac}, set by its PF",
                "check the PF driver's messages (dmesg); reloading the VF driver resets it",
            )

    def _wait_forwarding(self, *ports: tuple[str, str | None]) -> None:
        """Wait (bounded) until each (port, namespace) has carrier and forwards.

        A bridge learns a port's carrier from the kernel's link watch, a moment after
        the link came up (longer on a loaded host, and a real VF needs its PF's word
        first). A gratuitous ARP sent before is dropped at the port, and a bridge on
        the way keeps pointing the MAC at the old path until the VM happens to send
        something: a VM that only answers (a server) stays unreachable. Past the
        bound the switch goes on; traffic will teach the bridges instead.
        """

        def forwarding() -> bool:
            for name, ns in ports:
                message = self._links.get(name, ns)
                if message is None:
                    continue
                state = brport_flags(message).get("state")
                if message.get("IFLA_CARRIER") != 1 or state not in (None, BR_STATE_FORWARDING):
                    return False
            return True

        wait_until(forwarding, PORT_WAIT_S)

    def _software_path(
        self, uplink: int | None, host_end: int | None, mac: str, vlan: int, *, present: bool
    ) -> None:
        """Tell both switches that ``mac`` lives on the software path (or no longer).

        The uplink's filter (:meth:`_uplink_filter`) makes the NIC's switch hand
        frames for it up to the PF. The host bridge gets a static, sticky entry for it
        on the NIC's port (``bridge fdb replace MAC dev iovs<crc> master static
        sticky``): learning must never move it elsewhere. The NIC's switch may bring a
        VM's own broadcasts back up to the PF (QEMU's igb does, to every pool,
        the sender's included); the bridge then learned the MAC on the uplink, and a
        VM that only answers (a server) was unreachable from the software path
        until it sent something itself. On the VF path the entry goes, so that the
        bridge learns the MAC on the uplink, where it is then. On a bridge that filters
        VLANs, entries are per VLAN: the pin is made in the NIC's access VLAN
        (``vlan``, 0 for none).
        """
        if uplink is not None:
            self._uplink_filter(uplink, mac, present=present)
        if host_end is None:
            return
        for in_vlan in self._pin_vlans(host_end, vlan):
            try:
                if present:
                    self._links().fdb(
                        "replace",
                        ifindex=host_end,
                        lladdr=mac,
                        state=NUD_NOARP,
                        flags=NTF_MASTER | NTF_STICKY,
                        **in_vlan,
                    )
                else:
                    self._links().fdb(
                        "del", ifindex=host_end, lladdr=mac, flags=NTF_MASTER, **in_vlan
                    )
            except NetlinkError as exc:
                if exc.code not in (errno.ENOENT, errno.EINVAL, errno.ENODEV):
                    raise kernel_error(f"pinning {mac} on the switch bridge", exc) from exc

    def _pin_vlans(self, host_end: int, vlan: int) -> list[dict[str, int]]:
        """Where an FDB entry on ``host_end`` goes: ``[{}]`` when its bridge does not
        filter VLANs; else one ``{"vlan": id}`` per VLAN of the port: the NIC's VLAN
        (or the default one), or every VLAN of a port in a private VLAN (its replies
        come back in another VLAN than its requests leave in)."""
        ipr = self._links()
        try:
            message = ipr.get_links(host_end)[0]
            master = message.get("IFLA_MASTER")
            on = master is not None and bridge_vlan.filtering(ipr.get_links(master)[0])
        except NetlinkError:
            return [{}]
        if not on:
            return [{}]
        name = str(message.get("IFLA_IFNAME"))
        member = pvlan_nft.member(name, message.get("IFLA_IFALIAS"))
        vids = bridge_vlan.vlans_of(name) if member and member.pvlan else []
        return [{"vlan": vid} for vid in vids or [vlan or bridge_vlan.DEFAULT_PVID]]

    def uplink_tagging(self, vm: str, nic: str) -> UplinkTagging:
        """What the NIC's frames carry out of its switch's uplink, from its host end's
        bridge (see ``bridge_vlan``). One or two netlink reads. Root."""
        host_end = self._links.get(names.synthetic_host_ifname(vm, nic))
        master = None if host_end is None else host_end.get("IFLA_MASTER")
        if not master:
            return UplinkTagging.OFF
        try:
            bridge = self._links().get_links(master)[0]
        except NetlinkError:
            return UplinkTagging.OFF
        _, trunk = pvlan_nft.members_of(self._links, int(master))
        if not all(self._can_tag(port) for port in trunk):
            return UplinkTagging.NIC_CANNOT
        if not bridge_vlan.filtering(bridge):
            return UplinkTagging.KERNEL_CANNOT
        return UplinkTagging.TAGGED

    def _uplink_filter(self, uplink: int, mac: str, *, present: bool) -> None:
        """Put the MAC of a NIC on the software path in (or out of) the uplink's own
        unicast filter: ``bridge fdb add|del MAC dev PF self``.

        The NIC's embedded switch knows only the MACs programmed into it: the PF's,
        each VF's, and this list. A frame from a VF to any other MAC goes out on the
        wire, never up to the PF, so without this a VM on a VF could not reach a VM
        on the software path of the same switch (its frames left the host). Hyper-V's
        switch does the same for its synthetic NICs. A NIC on its VF is left out: the
        VF's own filter then delivers to it, and two pools with one MAC would get
        every frame twice. Idempotent; a device without the operation is left alone.
        """
        command = "add" if present else "del"
        try:
            self._links().fdb(
                command, ifindex=uplink, lladdr=mac, state=NUD_PERMANENT, flags=NTF_SELF
            )
        except NetlinkError as exc:
            if exc.code not in (errno.EEXIST, errno.ENOENT, errno.EOPNOTSUPP):
                raise kernel_error(
                    f"{'adding' if present else 'removing'} {mac} on the uplink", exc
                ) from exc

    def _forget_on_uplink(self, ns: str, syn: Any) -> None:
        """Take the MAC of the NIC whose synthetic half is ``syn`` out of the uplink's
        filter; the uplink is the port of the switch bridge that is not a VM's."""
        master = syn.get("IFLA_MASTER")
        host_end = syn.get("IFLA_LINK")  # the peer's index, in the host
        if not master or not host_end:
            return
        nic = self._links(ns).get_links(master)[0]
        host = self._links()
        try:
            bridge = host.get_links(host_end)[0].get("IFLA_MASTER")
        except NetlinkError:
            return
        for port in host.get_links():
            name = str(port.get("IFLA_IFNAME"))
            if (
                bridge
                and port.get("IFLA_MASTER") == bridge
                and not name.startswith(names.SYNTHETIC_HOST_PREFIX)
            ):
                self._uplink_filter(port["index"], str(nic.get("IFLA_ADDRESS")), present=False)

    def _ensure_spoof_check(self, host_end: str, config: NicConfig) -> None:
        """Unless the NIC may spoof MACs, drop what the VM sends on its synthetic half
        from any source but the NIC's MAC, as the VF's spoof check does on its half.

        A netdev ingress chain on the host end (what enters it is what the VM sent),
        named after it, in the host's table for synthetic ports; rewritten whole
        (flush + rule, one nft transaction) unless its one rule already says it checks
        this MAC, so it follows a new MAC or setting, and a plug that changes neither
        costs a netlink dump instead of an nft process and a rule deletion (whose RCU
        grace period is ~14 ms here). A NIC that may spoof has no chain.
        """
        if config.allow_mac_spoofing:
            self._drop_spoof_checks(host_end)
            return
        t = names.SYNTHETIC_NFT_TABLE
        comment = f"spoof check: source must be {config.mac}"
        if nft_rule_comments(t, host_end) == [comment]:
            return
        script = [
            f"add table netdev {t}",
            f"add chain netdev {t} {host_end} {{ type filter hook ingress device"
            f' "{host_end}" priority 0; }}',
            f"flush chain netdev {t} {host_end}",
            f"add rule netdev {t} {host_end} ether saddr != {config.mac} counter drop"
            f' comment "{comment}"',
        ]
        run_tool(["nft", "-f", "-"], stdin="\n".join(script) + "\n")

    def _drop_spoof_checks(self, *host_ends: str) -> None:
        """Delete the spoof-check chains of these host ends, and the table once empty.

        Needed although the devices are gone: on recent kernels (6.18 here) a netdev
        chain outlives its device, unbound, and binds to the next device of that name,
        with whatever MAC it held. Older ones (6.1) delete a single-device chain with
        its device (nft_chain_filter.c, nft_netdev_event), so the table is looked at
        even when no chain was left to delete. Both only ask when there is nothing.
        """
        t = names.SYNTHETIC_NFT_TABLE
        for host_end in host_ends:
            nft_delete_chain(t, host_end)
        nft_delete_table_if_empty(t)

    def _bridges_of(self, *host_ends: str) -> dict[int, str]:
        """The switch bridges (ifindex -> name) these host ends are ports of."""
        out = {}
        for host_end in host_ends:
            message = self._links.get(host_end)
            master = None if message is None else message.get("IFLA_MASTER")
            if not master:
                continue
            try:
                bridge = self._links().get_links(master)[0]
            except NetlinkError:
                continue
            out[int(master)] = str(bridge.get("IFLA_IFNAME"))
        return out

    def _sync_private_vlans(self, bridges: dict[int, str]) -> None:
        """Rebuild the private VLAN filters of these bridges after ports left them, and
        their VLANs: what no port uses any more leaves the uplink and the promiscuous
        ports."""
        for index, name in bridges.items():
            message = self._links.get(name)
            if message is None or message["index"] != index:
                continue
            pvlan_nft.sync(self._links, index, name)
            if bridge_vlan.filtering(message):
                self._sync_bridge_vlans(index)

    def _can_tag(self, uplink: str) -> bool:
        """Whether a private VLAN's frames may leave ``uplink`` tagged: not when it is
        an emulated NIC's PF, whose embedded switch passes its VFs' frames up
        untagged (a NIC on the software path tagged would not meet them)."""
        return not netns_exists(names.nic_netns(uplink))

    def _sync_bridge_vlans(
        self, bridge: int, uplink: str | None = None, port: str | None = None, vlan: int = 0
    ) -> None:
        """Make the VLANs of a bridge that filters VLANs hold its NICs: ``port`` (just
        plugged) an access port of ``vlan`` unless it is in a private VLAN, every port
        in a private VLAN what ``domain.pvlan.port_vlans`` says (when the uplink can
        tag them; else they are access ports of the default VLAN, as a NIC in none),
        the uplink a trunk of them all. ``uplink``: the bridge's port that is no NIC's
        (found when not given). One dump of the bridge's ports, one ``bridge`` run to
        read, at most one to write. Root."""
        members, trunk = pvlan_nft.members_of(self._links, bridge)
        if uplink is None:
            if len(trunk) != 1:
                return  # not a switch's bridge as this runtime builds them
            uplink = trunk[0]
        tagged = self._can_tag(uplink)
        private = {
            m.port: m.pvlan
            for m in members
            if m.port is not None and m.pvlan is not None and tagged
        }
        ports = dict(pvlan_port_vlans(private))
        if port is not None and port not in ports:
            ports[port] = bridge_vlan.access(vlan)
        neighbours = [m.port for m in members if m.port is not None and m.port not in ports]
        macs = {m.port: m.mac for m in members if m.port is not None and m.mac != NO_MAC}
        pins = {port: mac for port, mac in macs.items() if port in private}
        bridge_vlan.sync(uplink, ports, neighbours, pins, macs)

    def _host_end_name(self, syn: Any) -> str | None:
        """Name of the host end of synthetic veth ``syn`` (its peer, in the host)."""
        peer = syn.get("IFLA_LINK")
        if not peer:
            return None
        try:
            return str(self._links().get_links(peer)[0].get("IFLA_IFNAME"))
        except NetlinkError:
            return None

    def _vf_ports(self, ns: str, master: int) -> list[Any]:
        """Ports of the master that are VFs (not the synthetic veth, not the anchor)."""
        return [
            m
            for m in self._links(ns).get_links()
            if m.get("IFLA_MASTER") == master
            and not names.is_pair_helper(str(m.get("IFLA_IFNAME")))
        ]

    def _reclaim(self, netdev: str, but: str) -> int | None:
        """Bring a VF being granted home from another VM's namespace; its host index.

        The allocator grants only VFs the store has free, inside the command's write
        transaction: a VF netdev found in a VM is left there by a command killed
        before it committed (or by a VM namespace the store has forgotten).
        """
        for ns in list_netns(names.VM_NETNS_PREFIX):
            if ns == but or not netns_exists(ns):
                continue
            message = self._links.get(netdev, ns)
            if message is not None:
                self._return_to_host(ns, message)
                return self._links.index(netdev)
            self._links.forget(ns)  # only looked: hold no handle into it
        return None

    def _return_to_host(self, ns: str, message: Any) -> None:
        name = str(message.get("IFLA_IFNAME"))
        self._links.set(
            f"returning {name} to the host", ns, index=message["index"], state="down", master=0
        )
        self._links.set(f"returning {name} to the host", ns, index=message["index"], net_ns_pid=1)

    def _vf_link_in(self, ns: str, vf: VirtualFunction) -> Any:
        """The VF's link inside ``ns``. Seen from the host, a netdev moved into a
        namespace vanishes from the VF's sysfs ``net/`` (so ``vf.netdev`` is None);
        the kernel still names its parent device (IFLA_PARENT_DEV_NAME, 5.15+)."""
        if vf.netdev is not None:
            found = self._links.get(vf.netdev, ns)
            if found is not None:
                return found
        for message in self._links(ns).get_links():
            if message.get("IFLA_PARENT_DEV_NAME") == vf.pci_address:
                return message
        return None

    def _vf_netdev(self, vf: VirtualFunction) -> str:
        if vf.netdev is None:
            raise HardwareError(
                "vf-netdev-missing",
                f"VF {vf.index} of {vf.adapter} has no netdev (unbound or on vfio-pci)",
                "network-namespace VMs need VFs bound to their net driver",
            )
        return vf.netdev

    def _ipv4(self, ns: str, master: int) -> str | None:
        for a in self._links(ns).get_addr(index=master, family=2):
            return str(a.get("IFA_ADDRESS"))
        return None
