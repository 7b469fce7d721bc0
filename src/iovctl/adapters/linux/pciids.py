"""Model names of PCI devices from the pci.ids database (what ``lspci`` prints).

The file (Debian package ``pci.ids``: ``/usr/share/misc/pci.ids``; Fedora's hwdata:
``/usr/share/hwdata/pci.ids``) is ~1.5 MB; it is read lazily, line by line, only up
to the vendor asked for, and answers are cached. Missing file or id: the name is
``vendor:device`` in hex. Paths are relative to ``root``.

Format (header of pci.ids): ``vendor  vendor_name``, then ``\\tdevice  device_name``,
``\\t\\tsubvendor subdevice  subsystem_name``; ``#`` comments; the device classes
section starts with ``C``. Must not import anything beyond the standard library.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_PATHS = ("usr/share/misc/pci.ids", "usr/share/hwdata/pci.ids")


class PciIds:
    """Looks up ``(vendor, device)`` names under ``root``."""

    def __init__(
        self, root: str | os.PathLike[str] = "/", paths: tuple[str, ...] = DEFAULT_PATHS
    ) -> None:
        self.root = Path(root)
        self.paths = paths
        self._vendors: dict[str, tuple[str, dict[str, str]] | None] = {}

    def _file(self) -> Path | None:
        for relative in self.paths:
            path = self.root / relative
            if path.is_file():
                return path
        return None

    def _vendor(self, vendor: str) -> tuple[str, dict[str, str]] | None:
        """Vendor name and its device names, parsed once per vendor asked for."""
        if vendor in self._vendors:
            return self._vendors[vendor]
        found: tuple[str, dict[str, str]] | None = None
        path = self._file()
        if path is not None:
            found = _scan_vendor(path, vendor)
        self._vendors[vendor] = found
        return found

    def vendor_name(self, vendor: str) -> str | None:
        entry = self._vendor(_norm(vendor))
        return entry[0] if entry else None

    def device_name(self, vendor: str, device: str) -> str | None:
        entry = self._vendor(_norm(vendor))
        return entry[1].get(_norm(device)) if entry else None

    def model(self, vendor: str, device: str) -> str:
        """'Intel Corporation 82576 Gigabit Network Connection', or '8086:10c9'."""
        vendor, device = _norm(vendor), _norm(device)
        entry = self._vendor(vendor)
        if entry is None:
            return f"{vendor}:{device}"
        name = entry[1].get(device)
        if name is None:
            return f"{entry[0]} {vendor}:{device}"
        return f"{entry[0]} {name}"


def _norm(identifier: str) -> str:
    return identifier.lower().removeprefix("0x").zfill(4)


def _scan_vendor(path: Path, vendor: str) -> tuple[str, dict[str, str]] | None:
    name: str | None = None
    devices: dict[str, str] = {}
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if not line.strip() or line.startswith("#"):
                continue
            if not line.startswith("\t"):
                if name is not None or line.startswith("C "):
                    break  # next vendor, or the class section: our vendor is complete
                ident, _, rest = line.partition(" ")
                if ident.lower() == vendor:
                    name = rest.strip()
                continue
            if name is None or line.startswith("\t\t"):
                continue
            ident, _, rest = line.strip().partition(" ")
            devices[ident.lower()] = rest.strip()
    return (name, devices) if name is not None else None
