"""Remove every kernel object the namespace backends created, found by name.

Works from names alone (see ``names``), so it also cleans up after a process that
was killed mid-operation: VM and NIC namespaces (``iov-*``; with them go their veth
pairs, bridges, tc and nftables objects, and the VF netdevs in the host), then the
host's switch bridges and synthetic veth ends (``iov*``), then the spoof-check
chains of the synthetic ports in the host's nftables table (named after their host
ends, which they may outlive), the private VLAN chains of the switch bridges (named
after the bridges), and each table once empty. Needs root.

Must not import services, the CLI or the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from iovctl.adapters.netns import names
from iovctl.adapters.netns.kernel import (
    Links,
    list_netns,
    remove_netns,
    wait_until,
)
from iovctl.adapters.netns.nft import nft_chains, nft_delete_chain, nft_delete_table_if_empty


@dataclass
class CleanupReport:
    """What :func:`cleanup` removed."""

    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    #: Chains of the host's tables for synthetic ports (``names.SYNTHETIC_NFT_TABLE``)
    #: and for the switch bridges' private VLANs (``names.PVLAN_NFT_TABLE``).
    nft_chains: list[str] = field(default_factory=list)


#: The host's nftables tables whose chains are named after host links.
_TABLES = ((names.SYNTHETIC_NFT_TABLE, "netdev"), (names.PVLAN_NFT_TABLE, "bridge"))

#: One prefix, or several (``str.startswith`` semantics).
Prefixes = str | tuple[str, ...]


def _host_links(link_prefix: Prefixes, links: Links) -> list[str]:
    return [n for n in links.names() if n.startswith(link_prefix)]


def leftovers(
    netns_prefix: Prefixes = names.NETNS_PREFIX,
    link_prefix: Prefixes = names.HOST_IFNAME_PREFIX,
    links: Links | None = None,
) -> tuple[list[str], list[str], list[str]]:
    """Namespaces, host links and nftables chains (named after host links) that match
    the prefixes: what cleanup would remove."""
    own = links is None
    links = links or Links()
    try:
        host = _host_links(link_prefix, links)
    finally:
        if own:
            links.close()
    chains = [
        c
        for table, family in _TABLES
        for c in nft_chains(table, family)
        if c.startswith(link_prefix)
    ]
    return [n for n in list_netns() if n.startswith(netns_prefix)], host, chains


def cleanup(
    netns_prefix: Prefixes = names.NETNS_PREFIX,
    link_prefix: Prefixes = names.HOST_IFNAME_PREFIX,
    extra_links: tuple[str, ...] = (),
) -> CleanupReport:
    """Delete namespaces starting with ``netns_prefix``, host links starting with
    ``link_prefix`` (plus ``extra_links``: emulated PF netdevs named without the prefix)
    and the synthetic ports' nftables chains named like those links; the table goes
    when nothing is left in it. Each prefix may be a tuple of prefixes: one run scoped
    to several families of names (what ``iovctl bench`` made, and nothing of anyone
    else's).

    Idempotent; waits (bounded) until the kernel has really torn the objects down.
    """
    report = CleanupReport()
    links = Links()
    try:
        # VM namespaces first: their VFs die with them instead of being left half-moved.
        spaces = sorted(
            (n for n in list_netns() if n.startswith(netns_prefix)),
            key=lambda n: not n.startswith("iov-vm-"),
        )
        for ns in spaces:
            remove_netns(ns)
            report.namespaces.append(ns)
        for name in links.names():
            if name.startswith(link_prefix) or name in extra_links:
                links.delete(name)
                report.links.append(name)
        for table, family in _TABLES:
            for chain in nft_chains(table, family):
                if (chain.startswith(link_prefix) or chain in extra_links) and nft_delete_chain(
                    table, chain, family
                ):
                    report.nft_chains.append(chain)
            nft_delete_table_if_empty(table, family)
        wait_until(
            lambda: (
                not _host_links(link_prefix, links)
                and not any(n in extra_links for n in links.names())
            )
        )
    finally:
        links.close()
    return report
