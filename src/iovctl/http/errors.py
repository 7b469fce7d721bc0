"""IovctlError families as HTTP statuses, and the one JSON shape of an error:
``{"error": {"code", "message", "hint"}}`` (the same object ``-o json`` prints).

:data:`STATUS` is read both ways: the daemon answers an error with its family's
status, and the CLI's client (:mod:`iovctl.http.client`) turns the status back into
the family, so ``--connect`` exits with the code the direct CLI would.
"""

from __future__ import annotations

from iovctl.errors import (
    Conflict,
    HardwareError,
    InvalidInput,
    IovctlError,
    NotFound,
    StateError,
)


class Unauthorized(IovctlError):
    """TCP only: no bearer token, or one the daemon does not know."""


class Forbidden(IovctlError):
    """A mutation on the read-only socket or with a ``reader`` token."""


#: Most specific first: HardwareError's subclasses share its status.
STATUS: tuple[tuple[type[IovctlError], int], ...] = (
    (InvalidInput, 400),
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (HardwareError, 502),
    (StateError, 503),
)


def status_of(exc: IovctlError) -> int:
    for family, status in STATUS:
        if isinstance(exc, family):
            return status
    return 500


def family_of(status: int) -> type[IovctlError]:
    """The error family an HTTP status stands for (IovctlError when none does)."""
    for family, known in STATUS:
        if known == status:
            return family
    return IovctlError


def error_body(exc: IovctlError) -> dict[str, dict[str, str]]:
    return {"error": exc.to_dict()}


def read_only() -> Forbidden:
    return Forbidden(
        "read-only",
        "this connection may only read: the read-only socket, or a reader token",
        "use the admin socket (group iovctl) or an admin token to change anything",
    )
