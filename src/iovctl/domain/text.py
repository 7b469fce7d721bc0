"""Text a user or a file gave us, made safe to show on a terminal (pure).

A name read from a spec file or typed on the command line ends up in messages and
tables. Control characters there would drive the terminal (``ESC [ 2 J`` clears
it, ``ESC ] 0 ;`` retitles it), and a 10,000-character name would bury the error.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from typing import Any

#: Unicode categories that are not printable text: controls (C0, DEL, C1), format
#: characters (bidi overrides that reorder what is shown), surrogates, unassigned.
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})

#: How much of a user's text an error message repeats.
SHOWN_MAX = 80


#: Layout, not commands: allowed in free text (a spec's description).
_LAYOUT = frozenset("\t\n")


def control_character(text: str) -> str | None:
    """The first character of ``text`` a terminal would not print as text (tab and
    newline aside), or None."""
    for char in text:
        if char not in _LAYOUT and unicodedata.category(char) in _HIDDEN:
            return char
    return None


def shown(text: str, limit: int = SHOWN_MAX) -> str:
    """``text`` as an error message may repeat it: hidden characters escaped
    (``\\x1b``), and cut to ``limit`` characters with the count of the rest."""
    out: list[str] = []
    for char in text[:limit]:
        if unicodedata.category(char) in _HIDDEN:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    rest = len(text) - limit
    return "".join(out) + (f"... ({rest} more characters)" if rest > 0 else "")


def strings_in(doc: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every string (keys included) of a parsed YAML/JSON document, with its path.

    Iterative, so a deep document cannot exhaust the stack; the reader bounds depth
    and size before a document gets here.
    """
    stack: list[tuple[str, Any]] = [(where, doc)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            yield path, value
        elif isinstance(value, dict):
            for key, item in value.items():
                sub = f"{path}.{key}" if path else str(key)
                if isinstance(key, str):
                    yield sub, key
                stack.append((sub, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))


def first_control_character(doc: Any) -> tuple[str, str] | None:
    """``(path, character)`` of the first string in ``doc`` holding a hidden character."""
    for path, text in strings_in(doc):
        char = control_character(text)
        if char is not None:
            return path, char
    return None
