"""Reading a user's YAML spec file (host specs, emulation specs), errors translated.

A spec file is input like any argument, so reading it is bounded: at most
:data:`MAX_BYTES`, UTF-8 only, nested at most :data:`MAX_DEPTH` levels, at most
:data:`MAX_NODES` values once aliases are expanded (a "billion laughs" file of a few
hundred bytes expands to millions), no alias cycles and no duplicate keys (YAML
forbids them; PyYAML silently keeps the last one).

``yaml`` is imported only here and only when a file is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from iovctl.domain.text import shown
from iovctl.errors import InvalidInput, IovctlError, NotFound

MAX_BYTES = 256 << 10  # a 256-adapter spec is ~100 KiB; PyYAML parses ~0.5 MiB/s
MAX_DEPTH = 32
MAX_NODES = 100_000


def read_yaml_file(
    name_or_path: str,
    *,
    code: str,
    kind: str,
    builtins: Iterable[str],
    invalid: Callable[[str, str], IovctlError],
) -> Any:
    """The document in the YAML file ``name_or_path``.

    Raises NotFound(``code``) when it is no file (naming the built-ins),
    InvalidInput(``spec-unreadable``) when it cannot be read, and
    ``invalid(where, problem)`` when it is not bounded UTF-8 YAML.
    """
    path = Path(name_or_path)
    try:
        is_file = path.is_file()
    except (OSError, ValueError):  # a name too long for the OS, a NUL byte
        is_file = False
    if not is_file:
        raise NotFound(
            code,
            f"{kind} {shown(name_or_path)!r} is neither built in nor a file",
            f"built-in: {', '.join(builtins)}; or give the path of a YAML {kind}",
        )
    where = shown(str(path))
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise InvalidInput(
            "spec-unreadable",
            f"{kind} {where} cannot be read: {exc.strerror or exc}",
            "check the file's permissions: the user running iovctl must be able to read it",
        ) from exc
    if len(raw) > MAX_BYTES:
        raise invalid(where, f"larger than {MAX_BYTES // 1024} KiB; a spec is a few KiB of YAML")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid(
            where, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from exc
    return parse_yaml(text, where, invalid)


def parse_yaml(text: str, where: str, invalid: Callable[[str, str], IovctlError]) -> Any:
    """The document in ``text``, within the bounds of this module's docstring."""
    import yaml

    loader = None
    try:
        loader = _loader_class()(text)  # its reader refuses control characters here
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded(node, where, invalid)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise invalid(where, f"not valid YAML: {_problem(exc)}") from exc
    except (ValueError, OverflowError) as exc:  # int('9' * 5000), 2024-13-45 as a date
        raise invalid(where, f"not valid YAML: {shown(str(exc))}") from exc
    finally:
        if loader is not None:
            loader.dispose()


def _problem(exc: Exception) -> str:
    """One line: PyYAML's problem and where, without its multi-line excerpt."""
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return shown(f"{problem} (line {mark.line + 1}, column {mark.column + 1})", 200)
    return shown(str(problem or exc).splitlines()[0], 200)


_LOADER: type | None = None


def _loader_class() -> Any:
    """SafeLoader refusing deep nesting and duplicate keys (built once, lazily)."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml
    from yaml.constructor import ConstructorError

    class BoundedLoader(yaml.SafeLoader):
        _depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self._depth += 1
            try:
                if self._depth > MAX_DEPTH:
                    raise yaml.composer.ComposerError(
                        None,
                        None,
                        f"nested deeper than {MAX_DEPTH} levels",
                        self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                    )
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                seen: set[Any] = set()
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        duplicate = key in seen
                    except TypeError:  # unhashable: super() says so
                        break
                    if duplicate:
                        raise ConstructorError(
                            "while constructing a mapping",
                            node.start_mark,
                            f"found duplicate key {shown(str(key))!r}",
                            key_node.start_mark,
                        )
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    _LOADER = BoundedLoader
    return _LOADER


def _children(node: Any) -> list[Any]:
    import yaml

    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expanded(root: Any, where: str, invalid: Callable[[str, str], IovctlError]) -> None:
    """Refuse a node graph whose aliases expand past the bounds, or refer to themselves.

    Iterative depth-first walk with a memo per node: linear in the nodes written, not
    in the expansion.
    """
    measured: dict[int, tuple[int, int] | None] = {}  # id -> (size, depth); None = on path
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        children = _children(node)
        if finished:
            sizes = [measured[id(c)] for c in children]
            size = 1 + sum(s[0] for s in sizes if s)
            depth = 1 + max((s[1] for s in sizes if s), default=0)
            if size > MAX_NODES:
                raise invalid(where, f"expands to more than {MAX_NODES} values (YAML aliases)")
            if depth > MAX_DEPTH:
                raise invalid(where, f"expands deeper than {MAX_DEPTH} levels (YAML aliases)")
            measured[id(node)] = (size, depth)
            continue
        if id(node) in measured:
            continue
        measured[id(node)] = None
        stack.append((node, True))
        for child in children:
            if id(child) in measured:
                if measured[id(child)] is None:
                    raise invalid(where, "a YAML alias refers to a value that contains it")
                continue
            stack.append((child, False))
