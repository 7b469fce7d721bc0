"""Files and directories a user names for iovctl to write (snapshots, bench results,
the demo's kept state), checked up front and written whole or not at all.

A path is input like any argument: a directory, a missing parent or a full disk is
a clear error naming the path, never a traceback, and never a half-written file.
Front ends call :func:`check_output_path` before long work (a benchmark) and
:func:`write_output_file` to write.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from iovctl.domain.text import shown
from iovctl.errors import InvalidInput, IovctlError


def _invalid(path: str, problem: str, hint: str, noun: str = "output file") -> InvalidInput:
    return InvalidInput("output-path-invalid", f"{noun} {shown(path)}: {problem}", hint)


def check_output_path(path: str) -> Path:
    """``path`` as a file iovctl can create or replace; does not create it.

    Raises InvalidInput(``output-path-invalid``) when it is empty, a directory, or
    its parent is missing, not a directory or not writable.
    """
    if not path.strip() or "\0" in path:
        raise _invalid(path, "is no path", "give the path of the file to write")
    target = Path(path)
    parent = target.parent
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:  # ENAMETOOLONG, ELOOP, ENOTDIR (a file as a parent), EACCES
        raise _invalid(path, exc.strerror or str(exc), _PARENT_HINT) from exc
    if mode is not None and stat.S_ISDIR(mode):
        raise _invalid(path, "is a directory", "name a file, e.g. DIR/host.yaml")
    if not parent.is_dir():
        raise _invalid(path, f"directory {shown(str(parent))} does not exist", _PARENT_HINT)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _invalid(
            path,
            f"directory {shown(str(parent))} is not writable",
            "write somewhere you may write",
        )
    return target


_PARENT_HINT = "create the directory first (mkdir -p), or write somewhere that exists"


def write_output_file(path: str, text: str) -> None:
    """Write ``text`` to ``path``: whole, or not at all (a temporary file beside it,
    renamed over it). An existing non-regular file (a FIFO, /dev/stdout) is written
    in place, never replaced.

    Raises InvalidInput(``output-path-invalid``) as :func:`check_output_path`, and
    IovctlError(``output-write-failed``) when writing fails (a full disk, EIO); the
    file is then as it was.
    """
    target = check_output_path(path)
    data = text.encode()
    try:
        if target.exists() and not target.is_file():
            with target.open("wb") as f:
                f.write(data)
            return
        temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise _write_failed(path, exc) from exc


def _write_failed(path: str, exc: OSError) -> IovctlError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "free space on the file system that holds it, or write somewhere else"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "write somewhere you may write"
    else:
        hint = "check the file system that holds it (dmesg), or write somewhere else"
    return IovctlError(
        "output-write-failed",
        f"cannot write {shown(path)}: {exc.strerror or exc}; nothing was written",
        hint,
    )


def check_unused_directory(path: str, what: str) -> Path:
    """``path`` as a directory iovctl may fill: absent or empty. Does not create it.

    Raises InvalidInput(``directory-in-use``) when it holds files, and
    InvalidInput(``output-path-invalid``) when it is a file or cannot be made.
    """
    target = Path(path)
    if not path.strip() or "\0" in path:
        raise _invalid(
            path, "is no path", f"give the path of a new directory for {what}", "directory"
        )
    try:
        if target.exists() and not target.is_dir():
            raise _invalid(path, "is a file", f"give a new directory for {what}", "directory")
        if target.is_dir() and any(target.iterdir()):
            raise InvalidInput(
                "directory-in-use",
                f"directory {shown(path)} for {what} is not empty",
                "give a new or empty directory; iovctl does not mix its files with others",
            )
    except OSError as exc:
        raise _invalid(
            path, exc.strerror or str(exc), f"give a new directory for {what}", "directory"
        ) from exc
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise _invalid(
            path, f"{shown(str(ancestor))} is not a directory", _PARENT_HINT, "directory"
        )
    return target
