"""What ``vm create`` defines a hypervisor's VM from: the template options, checked.

The files a template names (a disk image, a kernel, an initrd) are input like any
argument: each must exist, be a regular file and be readable here, or the command
is refused before anything is recorded, with the path and a hint. (The hypervisor
opens them later, on this host: a file missing now would fail at the first start.)
"""

from __future__ import annotations

import os
import stat

from iovctl.domain.model import VmTemplate
from iovctl.domain.text import shown
from iovctl.domain.validation import check_integer, conflicting
from iovctl.errors import InvalidInput

#: Bounds of the numbers a template takes (libvirt's own limits are wider).
MEMORY_MIB = (64, 4 * 1024 * 1024)
VCPUS = (1, 512)


def template_from(
    memory: int | None = None,
    vcpus: int | None = None,
    disk: str | None = None,
    kernel: str | None = None,
    initrd: str | None = None,
    cmdline: str | None = None,
) -> VmTemplate | None:
    """The template the options describe; None when none was given. Raises
    InvalidInput naming the option (or file) and what to give instead."""
    given = (memory, vcpus, disk, kernel, initrd, cmdline)
    if all(v is None for v in given):
        return None
    # What a JSON body may hold that a CLI parser never hands over.
    for flag, number in (("--memory", memory), ("--vcpus", vcpus)):
        if number is not None:
            check_integer(flag, number)
    for flag, text in (
        ("--disk", disk),
        ("--kernel", kernel),
        ("--initrd", initrd),
        ("--cmdline", cmdline),
    ):
        if text is not None and not isinstance(text, str):
            raise InvalidInput(
                "invalid-template", f"{flag} {text!r} is not text", f"give {flag} a path or string"
            )
    if disk is not None and kernel is not None:
        raise conflicting("--disk", "--kernel", "a disk image to boot or a kernel")
    if kernel is None and (initrd is not None or cmdline is not None):
        raise InvalidInput(
            "template-needs-kernel",
            f"{'--initrd' if initrd is not None else '--cmdline'} belongs to a kernel boot",
            "add --kernel PATH, or leave it out and boot a --disk",
        )
    if disk is None and kernel is None:
        raise InvalidInput(
            "template-no-boot",
            "a new VM needs something to boot",
            "give --disk PATH (a qcow2 or raw image) or --kernel PATH [--initrd PATH]",
        )
    template = VmTemplate()
    if memory is not None:
        template = _replace(template, memory_mib=_bounded("--memory", memory, MEMORY_MIB, "MiB"))
    if vcpus is not None:
        template = _replace(template, vcpus=_bounded("--vcpus", vcpus, VCPUS, "vCPUs"))
    if cmdline is not None and ("\0" in cmdline or "\n" in cmdline):
        raise InvalidInput(
            "invalid-cmdline",
            "--cmdline holds a NUL or newline",
            "give one line of kernel parameters",
        )
    return _replace(
        template,
        disk=_readable("--disk", "disk image", disk),
        kernel=_readable("--kernel", "kernel", kernel),
        initrd=_readable("--initrd", "initrd", initrd),
        cmdline=cmdline,
    )


def _replace(template: VmTemplate, **changes: object) -> VmTemplate:
    from dataclasses import replace

    return replace(template, **changes)  # type: ignore[arg-type]


def _bounded(flag: str, value: int, bounds: tuple[int, int], unit: str) -> int:
    low, high = bounds
    if not low <= value <= high:
        raise InvalidInput(
            "template-out-of-range",
            f"{flag} {value} is out of range",
            f"give {low}-{high} {unit}",
        )
    return value


def _readable(flag: str, noun: str, path: str | None) -> str | None:
    """The file's absolute path (the hypervisor does not share our working directory)."""
    if path is None:
        return None
    if not path.strip() or "\0" in path:
        raise InvalidInput(
            "input-file-invalid", f"{flag}: {shown(path)} is no path", f"give the {noun}'s path"
        )
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as exc:
        raise InvalidInput(
            "input-file-invalid",
            f"{noun} {shown(path)} does not exist",
            f"check the path given to {flag}",
        ) from exc
    except OSError as exc:
        raise InvalidInput(
            "input-file-invalid",
            f"{noun} {shown(path)}: {exc.strerror or exc}",
            f"check the path given to {flag}",
        ) from exc
    if not stat.S_ISREG(mode):
        raise InvalidInput(
            "input-file-invalid",
            f"{noun} {shown(path)} is not a regular file",
            f"give {flag} a file",
        )
    if not os.access(path, os.R_OK):
        raise InvalidInput(
            "input-file-invalid",
            f"{noun} {shown(path)} is not readable",
            f"make it readable (chmod a+r), or give {flag} another file",
        )
    return os.path.abspath(path)
