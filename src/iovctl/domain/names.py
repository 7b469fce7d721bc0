"""Names iovctl derives for kernel objects, shared by views and adapters (pure)."""

from __future__ import annotations

import zlib


def bridge_name(switch: str) -> str:
    """The Linux bridge of a switch's software path (IFNAMSIZ: at most 15 chars)."""
    return f"iovbr{zlib.crc32(switch.encode()):08x}"[:15]
