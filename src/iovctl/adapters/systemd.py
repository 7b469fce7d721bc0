"""Install the boot-time unit that runs ``iovctl apply``, or the daemon's unit
(``iovctld.service``), for systemd.

Writes the unit shipped in ``iovctl/data`` with this installation's command and
state directory filled in, then reloads and enables it when systemd runs. Needs
root for the default unit directory. Idempotent: an identical unit is not rewritten.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from iovctl.domain.text import shown
from iovctl.errors import InvalidInput, StateError

UNIT_NAME = "iovctl-apply.service"
DAEMON_UNIT_NAME = "iovctld.service"


def render_unit(command: str, state_dir: Path, unit: str = UNIT_NAME) -> str:
    template = resources.files("iovctl").joinpath(f"data/{unit}").read_text()
    return template.replace("@IOVCTL@", command).replace("@STATE_DIR@", str(state_dir))


#: A path systemd reads as written in ``Environment=`` and ``ConditionPathExists=``:
#: no whitespace (splits), ``%`` (specifiers), quotes, backslashes or newlines (which
#: would add directives of the caller's choosing to a unit run as root at boot).
_UNIT_PATH_RE = re.compile(r"/[A-Za-z0-9_./+@:,=-]*")


def install_unit(
    unit_dir: Path, command: str, state_dir: Path, *, enable: bool = True, unit: str = UNIT_NAME
) -> dict[str, object]:
    """Write (if changed) and enable the unit. Returns what was done.

    Raises InvalidInput(``unit-path-unsafe``) for a state directory the unit file
    cannot hold as written.
    """
    if not _UNIT_PATH_RE.fullmatch(str(state_dir)):
        raise InvalidInput(
            "unit-path-unsafe",
            f"state directory {shown(str(state_dir))} cannot be written into a systemd unit",
            "use a state directory path of letters, digits and _ . / + @ : , = -",
        )
    text = render_unit(command, state_dir, unit)
    path = unit_dir / unit
    changed = not path.is_file() or path.read_text() != text
    if changed:
        try:
            unit_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(path)
        except OSError as exc:
            raise StateError(
                "unit-write-failed",
                f"cannot write {path}: {exc.strerror}",
                "run as root, or pass --unit-dir to a writable directory",
            ) from exc
    enabled = False
    systemctl = shutil.which("systemctl")
    if enable and systemctl and Path("/run/systemd/system").is_dir():
        subprocess.run([systemctl, "daemon-reload"], check=False)
        result = subprocess.run(
            [systemctl, "enable", unit], check=False, capture_output=True, text=True
        )
        enabled = result.returncode == 0
    return {"unit": str(path), "changed": changed, "enabled": enabled}
