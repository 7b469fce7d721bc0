"""Private VLANs on a Linux bridge: nftables (bridge family) filters derived from the rule.

The rule is ``domain.pvlan.may_reach``; this module only turns the pairs it denies
(``denied_pairs``) into nftables rules on one bridge, a switch's (host namespace, chain
named after the bridge) or an emulated NIC's embedded switch (chain ``esw`` in its
namespace, kept by ``nic``). Needs no 802.1Q module and no bridge VLAN filtering: a
bridge-family ``forward`` chain sees every frame the bridge forwards, one copy per
port it leaves on (floods included).

Each bridge port of a NIC is a **member**: its port, its NIC's MAC, its private VLAN
(or none). For each denied pair of classes (A, B), frames are dropped

- from a port of A to a port of B (``iifname {A ports} oifname {B ports}``);
- from a port of A out the trunk to a MAC of B (``oifname {trunk} ether daddr {B}``),
  a NIC of B that is behind the trunk (on a VF, behind the NIC's own switch);
- from the trunk, sent by a MAC of A, to a port of B (``ether saddr {A}``).

A frame's VLAN is no help here: on a bridge that filters VLANs, the bridge takes the
tag off a frame for a port where the VLAN leaves untagged before the ``forward`` hook
sees it (``__br_forward``: ``br_handle_vlan``, then ``NF_BR_FORWARD``), so a rule
cannot tell what the uplink brought tagged with an isolated secondary VLAN.

The **trunk** is every port of the bridge that is not a member: the uplink (the PF)
on a switch's bridge, the PF and the wire in an embedded switch. Frames from and to
MACs that are no member's (the world, the host) pass: the trunk carries every VLAN,
as a PVLAN trunk does. The MAC is what the spoof check holds a NIC to on both paths;
a NIC allowed to spoof MACs is held by its port on its own bridge, but across the
trunk only by the MAC it claims.

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
from dataclasses import dataclass, replace

from iovctl.adapters.netns import names
from iovctl.adapters.netns.kernel import Links, netns_exists, run_tool
from iovctl.adapters.netns.nft import nft_delete_chain, nft_delete_table_if_empty, nft_rule_comments
from iovctl.domain.pvlan import Membership, as_text, denied_pairs, enforcement_class, from_text

TABLE = names.PVLAN_NFT_TABLE
FAMILY = "bridge"
_ALIAS_PREFIX = "iovctl-port"
_NO_MAC = "00:00:00:00:00:00"


@dataclass(frozen=True)
class Member:
    """One NIC's port on a bridge, as the filters see it."""

    #: Its port on the bridge; None for a NIC behind the trunk (known by its MAC).
    port: str | None
    #: The NIC's MAC; the zero MAC when unknown (then only its port is filtered).
    mac: str
    pvlan: Membership


def alias(mac: str, pvlan: Membership) -> str:
    """What a member's port carries as its alias: ``iovctl-port mac=M pvlan=MODE/P/S``."""
    return f"{_ALIAS_PREFIX} mac={mac} pvlan={as_text(pvlan)}"


def member(port: str, text: str | None) -> Member | None:
    """The member whose port ``port`` carries alias ``text``; None when the port is no
    NIC's (no alias of this module's)."""
    words = (text or "").split()
    if not words or words[0] != _ALIAS_PREFIX:
        return None
    fields = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    return Member(port, fields.get("mac", _NO_MAC), from_text(fields.get("pvlan")))


def _names(items: Iterable[str], quoted: bool) -> str:
    """An anonymous nft set: ``{ "a", "b" }`` (names) or ``{ a, b }`` (addresses)."""
    words = sorted(set(items))
    return "{ " + ", ".join(f'"{w}"' if quoted else w for w in words) + " }"


def plan(members: Iterable[Member], trunk: Iterable[str]) -> list[str]:
    """The rule bodies (what follows ``add rule <family> <table> <chain>``) that drop
    what ``domain.pvlan`` denies among ``members``, with ``trunk`` the bridge's other
    ports. A member without a port is behind the trunk, known by its MAC only. Empty
    when no member is in a private VLAN. Pure."""
    members = list(members)
    t = _names(trunk, True) if trunk else ""
    ports: dict[Membership, list[str]] = {}
    macs: dict[Membership, list[str]] = {}
    for m in members:
        cls = enforcement_class(m.pvlan)
        if m.port is not None:
            ports.setdefault(cls, []).append(m.port)
        if m.mac != _NO_MAC:
            macs.setdefault(cls, []).append(m.mac.lower())
    rules = []
    for a, b in denied_pairs(m.pvlan for m in members):
        a_ports, b_ports = ports.get(a), ports.get(b)
        a_in = f"iifname {_names(a_ports, True)}" if a_ports else ""
        b_out = f"oifname {_names(b_ports, True)}" if b_ports else ""
        if a_in and b_out:
            rules.append(f"{a_in} {b_out} drop")
        if t and a_in and macs.get(b):
            rules.append(f"{a_in} oifname {t} ether daddr {_names(macs[b], False)} drop")
        if t and b_out and macs.get(a):
            rules.append(f"iifname {t} ether saddr {_names(macs[a], False)} {b_out} drop")
    return rules


def digest(rules: list[str]) -> str:
    """What names a set of rules: each rule's comment, and how a caller that keeps it
    elsewhere tells that nothing changed."""
    return f"pvlan {zlib.crc32(chr(10).join(rules).encode()):08x}"


def script(chain: str, rules: list[str]) -> str:
    """The ``nft -f`` text that makes ``chain`` hold exactly ``rules`` (created if
    missing, flushed, refilled: one transaction), each commented with their digest."""
    lines = [
        f"add table {FAMILY} {TABLE}",
        f"add chain {FAMILY} {TABLE} {chain} {{ type filter hook forward priority 0; }}",
        f"flush chain {FAMILY} {TABLE} {chain}",
    ]
    note = digest(rules)
    lines += [f'add rule {FAMILY} {TABLE} {chain} {rule} comment "{note}"' for rule in rules]
    return "\n".join(lines) + "\n"


def members_of(links: Links, bridge: int, ns: str | None = None) -> tuple[list[Member], list[str]]:
    """The members among the ports of bridge ``bridge`` (ifindex in ``ns``), and the
    other ports (the trunk). One netlink dump, of the bridge's ports only (the kernel
    filters by IFLA_MASTER). Root."""
    found, trunk = [], []
    for message in links(ns).link("dump", master=bridge):
        if message.get("IFLA_MASTER") != bridge:
            continue
        port = str(message.get("IFLA_IFNAME"))
        m = member(port, message.get("IFLA_IFALIAS"))
        if m is None:
            trunk.append(port)
        else:
            found.append(m)
    return found, trunk


def sync(links: Links, bridge: int, chain: str) -> None:
    """Make chain ``chain`` hold the private VLAN filters of switch bridge ``bridge``
    (host namespace), from its ports' aliases; delete it when there is nothing to
    filter. Idempotent; no ``nft`` run when nothing changed. Root."""
    members, trunk = members_of(links, bridge)
    rules = plan(members, trunk)
    if not rules:
        drop(chain)
    elif nft_rule_comments(TABLE, chain, FAMILY) != [digest(rules)] * len(rules):
        run_tool(["nft", "-f", "-"], stdin=script(chain, rules))
    for port in trunk:  # an emulated NIC's switch hears of the NICs behind its PF
        if netns_exists(names.nic_netns(port)):
            sync_embedded_switch(links, names.nic_netns(port), port, members)


def sync_embedded_switch(
    links: Links, ns: str, pf: str, behind: list[Member] | None = None, *, vf_changed: bool = False
) -> None:
    """Make an emulated NIC's embedded switch (namespace ``ns``, PF netdev ``pf`` in
    the host) filter what ``domain.pvlan`` denies: between its VF ports (members by
    their aliases, written by ``nic``), and between them and the NICs behind its PF
    port, the host bridge's members, known by MAC. A real NIC would tell those apart by
    the secondary VLAN they arrive tagged with; this kernel cannot tag, so the
    emulation reads the host bridge instead. The switch's alias keeps the digest of
    the rules in force: an unchanged set costs two netlink dumps, no ``nft`` run
    (one when the caller read the host bridge's members already: ``behind``; none
    when no private VLAN is anywhere). ``vf_changed``: a VF port's alias was just
    rewritten (the emulated NIC's call), so its ports are read whatever the digest
    says. No private VLAN on either side: no table in ``ns``. Idempotent. Root."""
    esw = links.get(names.ESW, ns)
    if esw is None:
        return
    if behind is None:
        host_pf = links.get(pf)
        bridge = None if host_pf is None else host_pf.get("IFLA_MASTER")
        behind = members_of(links, bridge)[0] if bridge else []
    in_force = str(esw.get("IFLA_IFALIAS") or "")
    if not in_force and all(m.pvlan is None for m in behind) and not vf_changed:
        # No filters means no VF in a private VLAN (one alone would be filtered), and
        # none behind the PF: nothing to filter, without reading the VF ports.
        return
    members, trunk = members_of(links, esw["index"], ns)
    members += [replace(m, port=None) for m in behind]
    rules = plan(members, trunk)
    note = digest(rules) if rules else ""
    if in_force == note:
        return
    if rules:
        run_tool(["nft", "-f", "-"], ns, stdin=script(names.ESW, rules))
    else:
        run_tool(["nft", "delete", "table", FAMILY, TABLE], ns)
    links.set("recording the private VLAN filters", ns, index=esw["index"], IFLA_IFALIAS=note)


def drop(chain: str) -> None:
    """Delete chain ``chain`` (a switch bridge's filters), and the table once empty.
    Idempotent. Root."""
    nft_delete_chain(TABLE, chain, FAMILY)
    nft_delete_table_if_empty(TABLE, FAMILY)
