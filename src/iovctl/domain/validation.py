"""Input checks shared by every front end. Each raises InvalidInput naming the object."""

from __future__ import annotations

import re

from iovctl.errors import InvalidInput

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def check_name(kind: str, name: str) -> str:
    """A VM, switch or NIC name: letters, digits, ``_.-``; no path or shell characters."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidInput(
            "invalid-name",
            f"{kind} name {name!r} is not allowed",
            "use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
        )
    return name


def normalize_mac(mac: str, what: str = "MAC address") -> str:
    """Lower-case ``aa:bb:cc:dd:ee:ff``; accepts ``-`` separators and bare 12 hex digits."""
    raw = (mac or "").strip().lower().replace("-", ":")
    if re.fullmatch(r"[0-9a-f]{12}", raw):
        raw = ":".join(raw[i : i + 2] for i in range(0, 12, 2))
    if not _MAC_RE.fullmatch(raw):
        raise InvalidInput(
            "invalid-mac", f"{what} {mac!r} is not a MAC address", "write it as 52:54:00:12:34:56"
        )
    first = int(raw[:2], 16)
    if first & 1:
        raise InvalidInput(
            "invalid-mac",
            f"{what} {mac!r} is a multicast address",
            "the first octet of a unicast MAC is even, e.g. 52:54:00:12:34:56",
        )
    if raw == "00:00:00:00:00:00":
        raise InvalidInput(
            "invalid-mac", f"{what} {mac!r} is the all-zero address", "pick a unicast MAC"
        )
    return raw


def check_vlan(vlan: int, what: str = "VLAN") -> int:
    if not 1 <= vlan <= 4094:
        raise InvalidInput(
            "invalid-vlan", f"{what} {vlan} is outside 1-4094", "802.1Q VLAN ids run from 1 to 4094"
        )
    return vlan


def check_weight(weight: int) -> int:
    if not 0 <= weight <= 100:
        raise InvalidInput(
            "invalid-weight",
            f"IOV weight {weight} is outside 0-100",
            "0 turns SR-IOV off for the NIC; 1-100 rank NICs when VFs are scarce",
        )
    return weight


#: Longest wait for a guest to shut down that ``vm stop --timeout`` takes (an hour).
MAX_SHUTDOWN_TIMEOUT_S = 3600


def check_shutdown_timeout(seconds: int) -> int:
    if not 1 <= seconds <= MAX_SHUTDOWN_TIMEOUT_S:
        raise InvalidInput(
            "invalid-timeout",
            f"shutdown timeout {seconds} s is outside 1-{MAX_SHUTDOWN_TIMEOUT_S}",
            "give the seconds to wait for the guest to power off, e.g. --timeout 120, "
            "or --turn-off to power it off at once",
        )
    return seconds


def check_queue_pairs(count: int) -> int:
    if not 1 <= count <= 4096:
        raise InvalidInput(
            "invalid-queue-pairs",
            f"{count} queue pairs requested",
            "ask for at least 1 queue pair (more than 1 lets the VF do RSS)",
        )
    return count


def check_rate(mbps: int) -> int:
    if not 1 <= mbps <= 10_000_000:
        raise InvalidInput(
            "invalid-rate", f"max rate {mbps} Mbit/s is out of range", "give a rate in Mbit/s, >= 1"
        )
    return mbps


def check_event_window(limit: int | None, since: int) -> None:
    if limit is not None and not 1 <= limit <= 1_000_000:
        raise InvalidInput(
            "invalid-limit", f"--limit {limit} is out of range", "give 1 to 1000000 events"
        )
    if not 0 <= since < 2**62:
        raise InvalidInput(
            "invalid-since",
            f"--since {since} is not an event number",
            "give the seq of an event (0 = from the start)",
        )


def check_num_vfs(adapter: str, count: int) -> int:
    if count < 0:
        raise InvalidInput(
            "invalid-vf-count", f"adapter {adapter}: VF count {count} is negative", "give 0 or more"
        )
    return count


def check_integer(what: str, value: object) -> int:
    """A whole number as a front end hands it over: a real int, not a bool or a string.

    The CLI parses its numbers with :func:`parse_integer`; this holds every other
    front end (a JSON body's ``true`` or ``"5"``) to the same rule.
    """
    if type(value) is not int:
        raise InvalidInput(
            "invalid-number", f"{what} {value!r} is not a whole number", "give digits, e.g. 10"
        )
    return value


_PLAIN_INTEGER = re.compile(r"-?[0-9]+")


def parse_integer(what: str, text: str) -> int:
    """``text`` as an admin writes a number: ASCII digits with an optional ``-``.

    Python's ``int()`` also takes ``1_0``, ``+5``, `` 7 `` and non-ASCII digits
    (full-width ``１０``); no admin means those, so they are refused, not guessed at.
    """
    if not _PLAIN_INTEGER.fullmatch(text) or len(text) > 20:
        raise InvalidInput(
            "invalid-number",
            f"{what} {text!r} is not a whole number",
            "write it with the digits 0-9 only (a leading '-' for negatives), e.g. 10",
        )
    return int(text)


def conflicting(first: str, second: str, meaning: str) -> InvalidInput:
    """The error for two options that contradict each other (``--vlan`` and ``--untagged``)."""
    return InvalidInput(
        "conflicting-options",
        f"{first} and {second} contradict each other",
        f"give one of them: {meaning}",
    )
