"""The one exception tree of iovctl.

Every foreseeable failure is an :class:`IovctlError` carrying a stable kebab-case
``code``, a ``message`` that names the object, and a ``hint`` that says what to do.
Adapters translate OS and library errors into these at their edge
(``raise ... from exc``); the CLI catches them in one place and maps the family to
an exit code::

    IovctlError                      exit 1
    ├── InvalidInput                 exit 2   bad MAC, VLAN, weight, name...
    ├── NotFound                     exit 3   unknown adapter, switch, VM, NIC
    ├── Conflict                     exit 4   duplicate name, VFs in use, IOV fixed...
    ├── HardwareError                exit 5   the kernel/driver/simulated NIC refused
    │   └── UnsupportedVfSetting     exit 5   the driver cannot do this on VFs
    └── StateError                   exit 6   state store busy, corrupt, too new

Must not import anything but the standard library.
"""

from __future__ import annotations

import errno as _errno


class IovctlError(Exception):
    """Base: ``error[code]: message`` + ``hint``."""

    exit_code = 1

    def __init__(self, code: str, message: str, hint: str = "") -> None:
        message, hint = shorten(message), shorten(hint)
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"error[{self.code}]: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "hint": self.hint}


#: Longest word (a name, a path, a value) an error repeats back; names are <= 64
#: characters, paths rarely longer.
WORD_LIMIT = 160
#: Longest message or hint: a screenful, not an echo of a 10,000-character argument.
TEXT_LIMIT = 800


def shorten(text: str) -> str:
    """``text`` with each over-long word, and the whole, cut with an ellipsis.

    The one place errors are kept readable whatever the user typed: a 10,000-character
    name is not echoed back in full (the object is still named by its start).
    """
    if len(text) <= WORD_LIMIT:
        return text
    words = [w if len(w) <= WORD_LIMIT else w[: WORD_LIMIT - 1] + "\u2026" for w in text.split(" ")]
    text = " ".join(words)
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "\u2026"


class InvalidInput(IovctlError):
    """A value the user gave is malformed or out of range."""

    exit_code = 2


class NotFound(IovctlError):
    """A named object does not exist."""

    exit_code = 3


class Conflict(IovctlError):
    """The request contradicts the current state (duplicate, in use, fixed...)."""

    exit_code = 4


class HardwareError(IovctlError):
    """The kernel, the driver or the (simulated) device refused the operation."""

    exit_code = 5

    def __init__(self, code: str, message: str, hint: str = "", errno: int | None = None):
        super().__init__(code, message, hint)
        self.errno = errno


class UnsupportedVfSetting(HardwareError):
    """The PF driver does not support a VF setting (e.g. igb and link state)."""

    def __init__(self, driver: str, setting: str, hint: str = "", errno: int | None = None):
        super().__init__(
            "vf-setting-unsupported",
            f"the {driver} driver does not support {setting} on VFs",
            hint or f"leave {setting} unset for NICs on {driver} adapters",
            errno,
        )
        self.driver = driver
        self.setting = setting


class StateError(IovctlError):
    """The state store cannot be used (busy, corrupt, written by a newer iovctl)."""

    exit_code = 6


EXIT_CODES: dict[str, int] = {
    cls.__name__: cls.exit_code
    for cls in (IovctlError, InvalidInput, NotFound, Conflict, HardwareError, StateError)
}


def not_simulated(backend: str) -> Conflict:
    """What a real host answers to ``power_cycle`` (HostHardware)."""
    return Conflict(
        "not-simulated",
        f"the {backend} host cannot be power-cycled by iovctl",
        "reboot the machine itself; iovctl-apply.service restores the VFs at boot",
    )


def pf_down(adapter: str, driver: str, vf: str) -> HardwareError:
    """What a host answers when asked for VF ``vf`` of a PF that is administratively
    down and whose driver finishes a VF's reset only while it is up
    (``domain.drivers.VF_RESET_NEEDS_PF_UP``)."""
    return HardwareError(
        "pf-down",
        f"adapter {adapter} is down, and {driver} completes a VF's reset only while its PF "
        f"is up: VF {vf} would come up with a random MAC and no failover pair",
        f"bring it up (ip link set {adapter} up), then iovctl apply",
        _errno.ENETDOWN,
    )
