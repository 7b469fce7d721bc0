"""Network-namespace backends: real packets on hosts with or without SR-IOV hardware.

- ``runtime.NetnsVmRuntime``: ``VmRuntime`` where a VM is a network namespace and each
  NIC a failover pair (synthetic veth on the switch's bridge + the VF netdev).
- ``nic.EmulatedNic``: ``HostHardware`` for an SR-IOV NIC made of kernel devices
  (veth pairs, a bridge as embedded switch, tc and nftables), selected by an
  emulation spec (``spec``).
- ``cleanup.cleanup``: removes everything they created, found by name (``names``).

Everything here that touches the kernel needs root. See docs/failover.md.
"""
