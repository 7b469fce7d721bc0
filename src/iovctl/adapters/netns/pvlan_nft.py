"""Private VLANs on a Linux bridge: nftables (bridge family) filters derived from the rule.

The rule is ``domain.pvlan.may_reach``; this module only turns the pairs it denies
(``denied_pairs``) into nftables rules on one bridge, a switch's (host namespace, chain
named after the bridge) or an emulated NIC's embedded switch (its namespace). Needs
no 802.1Q module and no bridge VLAN filtering: a bridge-family ``forward`` chain sees
every frame the bridge forwards, one copy per port it leaves on (floods included).

Each bridge port of a NIC is a **member**: its port, its NIC's MAC, its private VLAN
(or none). For each denied pair of classes (A, B), frames are dropped

- from a port of A to a port of B (``iifname {A ports} oifname {B ports}``);
- from a port of A out the trunk to a MAC of B (``oifname {trunk} ether daddr {B}``),
  a NIC of B that is behind the trunk (on a VF, behind the NIC's own switch);
- from the trunk, sent by a MAC of A, to a port of B (``ether saddr {A}``).

The **trunk** is every port of the bridge that is not a member: the uplink (the PF)
on a switch's bridge, the PF and the wire in an embedded switch. Frames from and to
MACs that are no member's (the world, the host) pass: the trunk carries every VLAN,
as a PVLAN trunk does. The MAC is what the spoof check holds a NIC to on both paths.

Where a member lives is written on its port (the interface alias, :func:`alias`), so
that any later command rebuilds the whole chain from the kernel alone, and a member
whose port is deleted is gone from the next rebuild. A chain is rewritten whole (one
``nft`` transaction) only when its rules change: each rule's comment carries a digest
of the set. A bridge without private VLANs has no chain.

Must not import services, the CLI, the store or other adapters.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from iovctl.adapters.netns import names
from iovctl.adapters.netns.kernel import Links, run_tool
from iovctl.adapters.netns.nft import nft_delete_chain, nft_delete_table_if_empty, nft_rule_comments
from iovctl.domain.model import PrivateVlan, PvlanMode
from iovctl.domain.pvlan import Membership, denied_pairs, enforcement_class

TABLE = names.PVLAN_NFT_TABLE
FAMILY = "bridge"
_ALIAS_PREFIX = "iovctl-port"
_NO_MAC = "00:00:00:00:00:00"


@dataclass(frozen=True)
class Member:
    """One NIC's port on a bridge, as the filters see it."""

    port: str
    #: The NIC's MAC; the zero MAC when unknown (then only its port is filtered).
    mac: str
    pvlan: Membership


def alias(mac: str, pvlan: Membership) -> str:
    """What a member's port carries as its alias: ``iovctl-port mac=M pvlan=MODE/P/S``."""
    if pvlan is None:
        where = "-"
    else:
        where = f"{pvlan.mode.value}/{pvlan.primary_vlan}/{pvlan.secondary_vlan or 0}"
    return f"{_ALIAS_PREFIX} mac={mac} pvlan={where}"


def member(port: str, text: str | None) -> Member | None:
    """The member whose port ``port`` carries alias ``text``; None when the port is no
    NIC's (no alias of this module's)."""
    words = (text or "").split()
    if not words or words[0] != _ALIAS_PREFIX:
        return None
    fields = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    pvlan: Membership = None
    parts = fields.get("pvlan", "-").split("/")
    if len(parts) == 3:
        try:
            mode, primary, secondary = PvlanMode(parts[0]), int(parts[1]), int(parts[2])
        except ValueError:
            return None  # not one this module wrote: filter nothing by it
        pvlan = PrivateVlan(mode, primary, secondary or None)
    return Member(port, fields.get("mac", _NO_MAC), pvlan)


def _names(items: Iterable[str], quoted: bool) -> str:
    words = sorted(set(items))
    return "{ " + ", ".join(f'"{w}"' if quoted else w for w in words) + " }"


def plan(members: Iterable[Member], trunk: Iterable[str]) -> list[str]:
    """The rule bodies (what follows ``add rule <family> <table> <chain>``) that drop
    what ``domain.pvlan`` denies among ``members``, with ``trunk`` the bridge's other
    ports. Empty when no member is in a private VLAN. Pure."""
    members = list(members)
    trunk_ports = sorted(set(trunk))
    ports: dict[Membership, list[str]] = {}
    macs: dict[Membership, list[str]] = {}
    for m in members:
        cls = enforcement_class(m.pvlan)
        ports.setdefault(cls, []).append(m.port)
        if m.mac != _NO_MAC:
            macs.setdefault(cls, []).append(m.mac.lower())
    rules = []
    for a, b in denied_pairs(m.pvlan for m in members):
        a_ports, b_ports = _names(ports[a], True), _names(ports[b], True)
        rules.append(f"iifname {a_ports} oifname {b_ports} drop")
        if not trunk_ports:
            continue
        t = _names(trunk_ports, True)
        if macs.get(b):
            rules.append(f"iifname {a_ports} oifname {t} ether daddr {_names(macs[b], False)} drop")
        if macs.get(a):
            rules.append(f"iifname {t} ether saddr {_names(macs[a], False)} oifname {b_ports} drop")
    return rules


def script(chain: str, rules: list[str]) -> tuple[str, list[str]]:
    """The ``nft -f`` text that makes ``chain`` hold exactly ``rules`` (created if
    missing, flushed, refilled: one transaction), and the rule comments it leaves."""
    digest = f"pvlan {zlib.crc32(chr(10).join(rules).encode()):08x}"
    lines = [
        f"add table {FAMILY} {TABLE}",
        f"add chain {FAMILY} {TABLE} {chain} {{ type filter hook forward priority 0; }}",
        f"flush chain {FAMILY} {TABLE} {chain}",
    ]
    lines += [f'add rule {FAMILY} {TABLE} {chain} {rule} comment "{digest}"' for rule in rules]
    return "\n".join(lines) + "\n", [digest] * len(rules)


def members_of(links: Links, bridge: int, ns: str | None = None) -> tuple[list[Member], list[str]]:
    """The members among the ports of bridge ``bridge`` (ifindex in ``ns``), and the
    other ports (the trunk). One netlink dump. Root."""
    found, trunk = [], []
    for message in links(ns).get_links():
        if message.get("IFLA_MASTER") != bridge:
            continue
        port = str(message.get("IFLA_IFNAME"))
        m = member(port, message.get("IFLA_IFALIAS"))
        if m is None:
            trunk.append(port)
        else:
            found.append(m)
    return found, trunk


def sync(links: Links, bridge: int, chain: str, ns: str | None = None) -> None:
    """Make chain ``chain`` hold the private VLAN filters of bridge ``bridge`` (ifindex
    in ``ns``; None: the host namespace), from its ports' aliases; delete it when there
    is nothing to filter. Idempotent; no ``nft`` run when nothing changed. Root."""
    rules = plan(*members_of(links, bridge, ns))
    if not rules:
        drop(chain, ns)
        return
    text, comments = script(chain, rules)
    if ns is None and nft_rule_comments(TABLE, chain, FAMILY) == comments:
        return
    run_tool(["nft", "-f", "-"], ns, stdin=text)


def drop(chain: str, ns: str | None = None) -> None:
    """Delete chain ``chain`` (a bridge's filters), and the table once empty. Root."""
    if ns is None:
        nft_delete_chain(TABLE, chain, FAMILY)
        nft_delete_table_if_empty(TABLE, FAMILY)
        return
    listing = run_tool(["nft", "list", "tables", FAMILY], ns)
    if f"table {FAMILY} {TABLE}" in listing:
        run_tool(["nft", "delete", "table", FAMILY, TABLE], ns)
