"""The connection to libvirt: the only module that imports libvirt-python, opens a
URI, runs libvirt's event loop and translates ``libvirtError`` into iovctl's errors.

libvirt-python is an optional dependency (the ``libvirt`` extra): importing this
module without it works, :func:`load` raises a Conflict with a hint. Events need the
default event implementation registered *before* a connection is opened, and
``virEventRunDefaultImpl`` running in a thread: :func:`ensure_event_loop` does both
once per process, in a daemon thread.

Device removal (``detach`` only requests it; the guest finishes later) is waited for
with :meth:`Connection.removal`: register first, request, wait, then re-read.
"""

from __future__ import annotations

import enum
import importlib
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from iovctl.errors import Conflict, HardwareError, NotFound

INSTALL_HINT = (
    "install libvirt-python: pip install 'iovctl[libvirt]' (it builds against libvirt's"
    " headers: apt-get install libvirt-dev pkg-config gcc python3-dev)"
)

_loop_lock = threading.Lock()
_loop_thread: threading.Thread | None = None

# libvirt-domain.h, virDomainEventID (stable ABI).
EVENT_LIFECYCLE = 0
EVENT_DEVICE_REMOVED = 15
EVENT_DEVICE_REMOVAL_FAILED = 22
# virerror.h, virErrorNumber.
ERR_NO_DOMAIN = 42
ERR_OPERATION_INVALID = 55
ERR_NO_NETWORK = 43
ERR_DEVICE_MISSING = 99
ERR_NO_DOMAIN_METADATA = 80


def load() -> ModuleType:
    """The ``libvirt`` module; Conflict ``libvirt-missing`` without it."""
    try:
        return importlib.import_module("libvirt")
    except ImportError as exc:
        raise Conflict(
            "libvirt-missing",
            "the libvirt runtime needs libvirt-python, which this Python cannot import",
            INSTALL_HINT,
        ) from exc


def ensure_event_loop(libvirt: ModuleType) -> None:
    """Register libvirt's default event loop and run it in a daemon thread, once per
    process. Must come before the first ``open`` whose events are wanted."""
    global _loop_thread
    with _loop_lock:
        if _loop_thread is not None:
            return
        libvirt.virEventRegisterDefaultImpl()
        # Errors come back as libvirtError; libvirt's default handler would also
        # print each one (a lookup of a missing domain included) on stderr.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        _loop_thread = threading.Thread(target=run, name="libvirt-events", daemon=True)
        _loop_thread.start()


def error_code(exc: BaseException) -> int | None:
    get = getattr(exc, "get_error_code", None)
    return int(get()) if callable(get) and get() is not None else None


def error_text(exc: BaseException) -> str:
    get = getattr(exc, "get_error_message", None)
    text = get() if callable(get) else None
    return str(text or exc)


class Removal(enum.Enum):
    REMOVED = "removed"
    FAILED = "failed"
    PENDING = "pending"


@dataclass
class _Waiter:
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Removal = Removal.PENDING


class Connection:
    """One open libvirt connection with iovctl's event plumbing.

    Raises HardwareError ``libvirt-unreachable`` (with libvirt's reason) when the URI
    cannot be opened; Conflict ``libvirt-missing`` without libvirt-python.
    """

    def __init__(self, uri: str) -> None:
        self.libvirt = load()
        self.uri = uri
        ensure_event_loop(self.libvirt)
        try:
            self.conn: Any = self.libvirt.open(uri)
        except self.libvirt.libvirtError as exc:
            raise HardwareError(
                "libvirt-unreachable",
                f"cannot connect to libvirt at {uri}: {error_text(exc)}",
                "start libvirtd (or virtqemud), or give another URI: --libvirt-uri"
                " / IOVCTL_LIBVIRT_URI",
            ) from exc
        self._lock = threading.Lock()
        self._waiters: dict[tuple[str, str], _Waiter] = {}
        self._callbacks = [
            self.conn.domainEventRegisterAny(
                None, EVENT_DEVICE_REMOVED, self._on_removed, Removal.REMOVED
            ),
            self.conn.domainEventRegisterAny(
                None, EVENT_DEVICE_REMOVAL_FAILED, self._on_removed, Removal.FAILED
            ),
        ]

    @property
    def error(self) -> type[BaseException]:
        return self.libvirt.libvirtError  # type: ignore[no-any-return]

    def close(self) -> None:
        for callback in self._callbacks:
            with suppress(self.error):
                self.conn.domainEventDeregisterAny(callback)
        self._callbacks = []
        with suppress(self.error):
            self.conn.close()

    def domain(self, name: str) -> Any | None:
        """The domain named ``name``, None when libvirt has none."""
        try:
            return self.conn.lookupByName(name)
        except self.error as exc:
            if error_code(exc) == ERR_NO_DOMAIN:
                return None
            raise self.translate(exc, f"looking up domain {name}") from exc

    def get_domain(self, name: str) -> Any:
        """The domain named ``name``; NotFound ``unknown-domain`` naming it."""
        dom = self.domain(name)
        if dom is None:
            raise NotFound(
                "unknown-domain",
                f"libvirt at {self.uri} has no domain named {name!r}",
                f"list them: virsh -c {self.uri} list --all",
            )
        return dom

    def translate(self, exc: BaseException, doing: str) -> HardwareError:
        """A libvirt error as iovctl's, naming what was being done."""
        return HardwareError(
            "libvirt-error",
            f"libvirt refused {doing}: {error_text(exc)}",
            f"see libvirt's log (virsh -c {self.uri}) and the domain's QEMU log",
        )

    def qemu_monitor(self, dom: Any, command: dict[str, Any]) -> dict[str, Any] | None:
        """A QMP command's reply from the domain's QEMU (libvirt-qemu's passthrough);
        None where the driver has no QEMU monitor (the test driver) or it failed."""
        try:
            qemu = importlib.import_module("libvirt_qemu")
            reply = qemu.qemuMonitorCommand(dom, json.dumps(command), 0)
            return dict(json.loads(reply))
        except (ImportError, self.error, ValueError):
            return None

    @contextmanager
    def removal(self, domain: str, alias: str) -> Iterator[Callable[[float], Removal]]:
        """Watch for the removal of device ``alias`` of ``domain``: yields a wait
        (bound in seconds) that says REMOVED, FAILED or PENDING (bound reached).
        Enter before requesting the removal: the event may come at once."""
        key = (domain, alias)
        waiter = _Waiter()
        with self._lock:
            self._waiters[key] = waiter

        def wait(bound: float) -> Removal:
            waiter.done.wait(bound)
            return waiter.outcome

        try:
            yield wait
        finally:
            with self._lock:
                if self._waiters.get(key) is waiter:
                    del self._waiters[key]

    def _on_removed(self, conn: Any, dom: Any, alias: str, outcome: Removal) -> None:
        """Event loop thread: never calls libvirt back."""
        with self._lock:
            waiter = self._waiters.get((dom.name(), alias))
        if waiter is not None:
            waiter.outcome = outcome
            waiter.done.set()
