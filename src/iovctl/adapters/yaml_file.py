"""Reading a user's YAML spec file (host specs, emulation specs), errors translated.

``yaml`` is imported only here and only when a file is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from iovctl.errors import IovctlError, NotFound


def read_yaml_file(
    name_or_path: str,
    *,
    code: str,
    kind: str,
    builtins: Iterable[str],
    invalid: Callable[[str, str], IovctlError],
) -> Any:
    """The document in the YAML file ``name_or_path``.

    Raises NotFound(``code``) when it is no file (naming the built-ins), and
    ``invalid(where, problem)`` when it is not YAML.
    """
    path = Path(name_or_path)
    if not path.is_file():
        raise NotFound(
            code,
            f"{kind} {name_or_path!r} is neither built in nor a file",
            f"built-in: {', '.join(builtins)}; or give the path of a YAML {kind}",
        )
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise invalid(str(path), f"not valid YAML: {exc}") from exc
