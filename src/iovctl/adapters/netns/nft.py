"""nftables over netlink (NETLINK_NETFILTER), for the questions asked on every plug.

Listing chains and rules and deleting a chain or an empty table through ``nft`` costs
a process each, and a change the kernel refuses costs ~14 ms more; these talk
nfnetlink directly (writes still go through ``nft -f``, in ``runtime``). Host
namespace only. Root. Must not import services, the CLI, the store or other adapters.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct

from iovctl.adapters.netns.kernel import KERNEL_WAIT_S, kernel_error, run_tool
from iovctl.errors import HardwareError

NETLINK_NETFILTER = 12
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_NONREC = 0x100
NLM_F_DUMP = 0x300
NLMSG_ERROR = 0x2
NLMSG_DONE = 0x3
NFNL_MSG_BATCH_BEGIN = 0x10
NFNL_MSG_BATCH_END = 0x11
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETTABLE = 1
NFT_MSG_DELTABLE = 2
NFT_MSG_GETCHAIN = 4
NFT_MSG_DELCHAIN = 5
NFT_MSG_GETRULE = 7
_NFT_GETS = (NFT_MSG_GETTABLE, NFT_MSG_GETCHAIN, NFT_MSG_GETRULE)
NFTA_TABLE_NAME = 1
NFTA_TABLE_USE = 3
NFTA_CHAIN_TABLE = 1
NFTA_CHAIN_NAME = 3
NFTA_RULE_TABLE = 1
NFTA_RULE_CHAIN = 2
NFTA_RULE_USERDATA = 7
NFTNL_UDATA_RULE_COMMENT = 0
NFPROTO_BRIDGE = 7
NFPROTO_NETDEV = 5
#: nft's family words -> the kernel's numbers.
FAMILIES = {"netdev": NFPROTO_NETDEV, "bridge": NFPROTO_BRIDGE}


def nft_chains(table: str, family: str = "netdev") -> list[str]:
    """Chains of table ``table`` (``family``: netdev or bridge) in the host namespace
    (none without ``nft``). Root."""
    try:
        listing = run_tool(["nft", "-j", "list", "chains", family])
    except HardwareError as exc:
        if exc.code == "tool-missing":
            return []  # no nft, so no chain iovctl could have made
        raise
    return sorted(
        item["chain"]["name"]
        for item in json.loads(listing)["nftables"]
        if item.get("chain", {}).get("table") == table
    )


def nft_rule_comments(table: str, chain: str, family: str = "netdev") -> list[str]:
    """Comments of the rules of ``chain`` in ``family`` table ``table`` (host namespace),
    in order; none for a chain that is not there. Root.

    A netlink dump, ~10 us, where ``nft list`` would cost a process: lets a caller
    that writes its rules with a comment naming what they hold skip an unchanged
    rewrite (deleting a rule costs the kernel an RCU grace period, ~14 ms here).
    """
    comments = []
    code, rules = _nft_exchange(
        NFT_MSG_GETRULE,
        NLM_F_DUMP,
        [(NFTA_RULE_TABLE, table), (NFTA_RULE_CHAIN, chain)],
        FAMILIES[family],
    )
    if code not in (0, errno.ENOENT):
        raise kernel_error(f"reading nftables chain {chain}", OSError(code, os.strerror(code)))
    for rule in rules:
        data, offset = rule.get(NFTA_RULE_USERDATA, b""), 0
        while offset + 2 <= len(data):  # TLVs of libnftnl's udata: type, length, value
            kind, length = data[offset], data[offset + 1]
            if kind == NFTNL_UDATA_RULE_COMMENT:
                comments.append(data[offset + 2 : offset + 2 + length].rstrip(b"\0").decode())
            offset += 2 + length
    return comments


def nft_delete_chain(table: str, chain: str, family: str = "netdev") -> bool:
    """Delete ``chain`` and its rules from ``family`` table ``table`` in the host namespace.

    False if there was no such chain or table (idempotent: older kernels delete a
    netdev chain with its device; recent ones, 6.18 here, keep it, unbound). Asks
    first: a refused change costs the kernel an RCU grace period (its abort path),
    ~14 ms here, a question nothing. Root.
    """
    attrs = [(NFTA_CHAIN_TABLE, table), (NFTA_CHAIN_NAME, chain)]
    if _nft_exchange(NFT_MSG_GETCHAIN, 0, attrs, FAMILIES[family])[0] == errno.ENOENT:
        return False
    code = _nft_exchange(NFT_MSG_DELCHAIN, 0, attrs, FAMILIES[family])[0]
    if code == errno.ENOENT:
        return False
    if code:
        raise kernel_error(f"deleting nftables chain {chain}", OSError(code, os.strerror(code)))
    return True


def nft_delete_table_if_empty(table: str, family: str = "netdev") -> bool:
    """Delete ``family`` table ``table`` of the host namespace if it holds nothing. Root.

    True if it was deleted; False if it holds something or is not there. Atomic:
    with NLM_F_NONREC the kernel refuses (EBUSY) to delete a table that is in use
    (nf_tables_api.c, nf_tables_deltable), so a chain another process adds at the
    same moment is never deleted with the table, as it could be between an
    ``nft list`` and an ``nft delete table``. Asks first, as
    :func:`nft_delete_chain` does.
    """
    attrs = [(NFTA_TABLE_NAME, table)]
    code, found = _nft_exchange(NFT_MSG_GETTABLE, 0, attrs, FAMILIES[family])
    if code == errno.ENOENT:
        return False
    if code or not found:
        code = code or errno.EPROTO  # an answer without the table
        raise kernel_error(f"reading nftables table {table}", OSError(code, os.strerror(code)))
    if struct.unpack("!I", found[0].get(NFTA_TABLE_USE, bytes(4)))[0]:
        return False  # chains in it
    code = _nft_exchange(NFT_MSG_DELTABLE, NLM_F_NONREC, attrs, FAMILIES[family])[0]
    if code in (errno.ENOENT, errno.EBUSY):
        return False
    if code:
        raise kernel_error(f"deleting nftables table {table}", OSError(code, os.strerror(code)))
    return True


def _nft_exchange(
    kind: int, flags: int, attrs: list[tuple[int, str]], family: int = NFPROTO_NETDEV
) -> tuple[int, list[dict[int, bytes]]]:
    """Send one nf_tables message (``family``) in the calling thread's namespace.

    A change (DEL*) goes in a batch, as the kernel wants it; a get or a dump alone.
    Returns the errno of the kernel's answer (0 = done) and the attributes of each
    object a get or dump answered with. No nfnetlink in the kernel: ENOENT.
    """

    def message(kind: int, flags: int, seq: int, family: int, res_id: int, body: bytes) -> bytes:
        body = struct.pack("=BBH", family, 0, socket.htons(res_id)) + body  # nfgenmsg
        return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body

    payload = b""
    for attr, value in attrs:
        data = value.encode() + b"\0"
        payload += struct.pack("=HH", 4 + len(data), attr) + data + bytes(-len(data) % 4)
    ack = 0 if flags & NLM_F_DUMP == NLM_F_DUMP else NLM_F_ACK  # a dump ends with DONE
    request = message(
        NFNL_SUBSYS_NFTABLES << 8 | kind,
        NLM_F_REQUEST | ack | flags,
        2,
        family,
        0,
        payload,
    )
    if kind not in _NFT_GETS:
        request = (
            message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 1, 0, NFNL_SUBSYS_NFTABLES, b"")
            + request
            + message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, 3, 0, NFNL_SUBSYS_NFTABLES, b"")
        )
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    except OSError as exc:
        if exc.errno == errno.EPROTONOSUPPORT:  # no nfnetlink: no nftables object either
            return errno.ENOENT, []
        raise kernel_error("asking nftables", exc) from exc
    found: list[dict[int, bytes]] = []
    try:
        with sock:
            sock.settimeout(KERNEL_WAIT_S)
            sock.send(request)
            while True:  # until the answer to message 2: an error or ack, or DONE
                data, offset = sock.recv(65536), 0
                while offset + 16 <= len(data):
                    length, msg_type, _, seq = struct.unpack_from("=IHHI", data, offset)
                    if length < 16:
                        break
                    if msg_type == NLMSG_ERROR and length >= 36:
                        error, _, _, _, acked = struct.unpack_from("=iIHHI", data, offset + 16)
                        if acked == 2:
                            return -int(error), found
                    elif msg_type == NLMSG_DONE and seq == 2:
                        return 0, found
                    elif seq == 2 and msg_type >> 8 == NFNL_SUBSYS_NFTABLES:
                        found.append(_nl_attrs(data[offset + 20 : offset + length]))
                    offset += (length + 3) & ~3
    except OSError as exc:
        raise kernel_error("asking nftables", exc) from exc


def _nl_attrs(data: bytes) -> dict[int, bytes]:
    """Netlink attributes (type without flag bits -> payload) of one message body."""
    attrs, offset = {}, 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        attrs[kind & 0x3FFF] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return attrs
