"""IovctlError families as HTTP statuses, and the one JSON shape of an error:
``{"error": {"code", "message", "hint"}}`` (the same object ``-o json`` prints)."""

from __future__ import annotations

from iovctl.errors import (
    Conflict,
    HardwareError,
    InvalidInput,
    IovctlError,
    NotFound,
    StateError,
)

#: Most specific first: HardwareError's subclasses share its status.
STATUS: tuple[tuple[type[IovctlError], int], ...] = (
    (InvalidInput, 400),
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


def error_body(exc: IovctlError) -> dict[str, dict[str, str]]:
    return {"error": exc.to_dict()}
