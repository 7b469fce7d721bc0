"""Files and directories as input (issue 9, item 4): state directories, spec files,
output paths and the demo's kept directory. Each class that reached ``error[internal]``
(exit 70) or did the wrong thing gets a named test: a clear error and hint, and no
state change (the state dump, or the directory's files, are as they were).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from helpers import assert_clean_error, run_in_process, sql_dump, state_dump
from iovctl.adapters.output_file import check_output_path, write_output_file
from iovctl.errors import InvalidInput, IovctlError

STATE_ERROR, INVALID = 6, 2

SPEC_DIR = Path(__file__).parents[2] / "src" / "iovctl" / "adapters" / "sim" / "specs"


def files_under(path: Path) -> dict[str, bytes]:
    """Every file below ``path`` with its bytes (nothing created, nothing changed)."""
    if not path.exists():
        return {}
    if path.is_file():
        return {".": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


# -- --state-dir: empty, a file, read-only, a foreign database ----------------------------


def test_an_empty_state_dir_is_refused_not_the_default(tmp_path: Path) -> None:
    # Before: "" fell through to IOVCTL_STATE_DIR / the default directory.
    env_dir = Path(os.environ["IOVCTL_STATE_DIR"])
    for empty in ("", " "):
        result = run_in_process(["--sim", "demo", "--state-dir", empty, "vm", "create", "a"])
        assert_clean_error(result, "state-unusable", STATE_ERROR)
    assert not env_dir.exists()


def test_a_file_as_state_dir_is_refused_and_left_alone(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("mine")
    for state_dir in (a_file, a_file / "below"):
        result = run_in_process(["--sim", "demo", "--state-dir", str(state_dir), "vm", "list"])
        assert_clean_error(result, "state-dir-unusable", STATE_ERROR)
    assert a_file.read_text() == "mine"


@contextlib.contextmanager
def read_only_mount(path: Path) -> Iterator[None]:
    """``path`` as a read-only tmpfs (root ignores file modes, not a read-only mount)."""
    path.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {proc.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_a_read_only_state_dir_is_refused_and_nothing_written(tmp_path: Path) -> None:
    state_dir = tmp_path / "ro"
    if os.geteuid() != 0:
        state_dir.mkdir()
        state_dir.chmod(0o555)
        ctx: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    else:
        ctx = read_only_mount(state_dir)
    with ctx:
        for command in (("vm", "list"), ("vm", "create", "a"), ("host",)):
            result = run_in_process(["--sim", "demo", "--state-dir", str(state_dir), *command])
            assert_clean_error(result, "state-unusable", STATE_ERROR)
        assert list(state_dir.iterdir()) == []


def _foreign_db(path: Path, *, wal: bool) -> None:
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO photos (name) VALUES ('holiday')")
    conn.commit()
    conn.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@pytest.mark.parametrize("wal", [False, True], ids=["rollback-journal", "wal"])
@pytest.mark.parametrize("sim", [["--sim", "demo"], []], ids=["with-sim", "without-sim"])
def test_a_foreign_sqlite_database_is_refused_untouched(
    tmp_path: Path, wal: bool, sim: list[str]
) -> None:
    state_dir = tmp_path / "theirs"
    state_dir.mkdir()
    _foreign_db(state_dir / "iovctl.db", wal=wal)
    before = files_under(state_dir)
    for command in (("vm", "list"), ("vm", "create", "a"), ("apply",)):
        result = run_in_process([*sim, "--state-dir", str(state_dir), *command])
        assert_clean_error(result, "state-unusable", STATE_ERROR)
        assert "photos" in result.err
    assert files_under(state_dir) == before  # no -wal/-shm, no iovctl tables
    (journal_mode,) = sqlite3.connect(state_dir / "iovctl.db").execute("PRAGMA journal_mode")
    assert journal_mode[0] == ("wal" if wal else "delete")


def test_a_foreign_database_with_iovctls_table_names_but_another_stamp(tmp_path: Path) -> None:
    state_dir = tmp_path / "lookalike"
    state_dir.mkdir()
    conn = sqlite3.connect(state_dir / "iovctl.db")
    conn.execute("PRAGMA application_id = 1234")
    conn.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    conn.commit()
    conn.close()
    result = run_in_process(["--state-dir", str(state_dir), "vm", "list"])
    assert_clean_error(result, "state-unusable", STATE_ERROR)


def test_a_store_written_before_the_stamp_still_opens(tmp_path: Path) -> None:
    """Stores made before ``application_id`` was set carry schema 1's tables: iovctl's."""
    state_dir = tmp_path / "old"
    assert run_in_process(["--sim", "demo", "--state-dir", str(state_dir), "vm", "create", "a"])
    conn = sqlite3.connect(state_dir / "iovctl.db")
    conn.execute("PRAGMA application_id = 0")
    conn.commit()
    conn.close()
    result = run_in_process(["--state-dir", str(state_dir), "vm", "list", "-o", "json"])
    assert result.code == 0, result.err
    assert [vm["name"] for vm in result.json()] == ["a"]


# -- --sim / --emulate: a bad spec leaves a fresh state dir as it was (absent) --------------


@pytest.mark.parametrize(
    "spec_text",
    ["name: [unclosed", "name: x\nname: y\n", "name: x\nadapters: []\n", "\x00binary"],
)
@pytest.mark.parametrize("option", ["--sim", "--emulate"])
def test_an_invalid_spec_leaves_nothing_in_a_fresh_state_dir(
    tmp_path: Path, spec_text: str, option: str
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(spec_text)
    for spec_arg in (str(spec), "no-such-builtin", str(tmp_path)):
        state_dir = tmp_path / "fresh" / "state"
        result = run_in_process([option, spec_arg, "--state-dir", str(state_dir), "vm", "list"])
        assert result.code in (INVALID, 3), result.err
        assert "Traceback" not in result.err and "error[internal]" not in result.err
        assert not (tmp_path / "fresh").exists()


# -- a spec edited after the state directory's first use -------------------------------------


def test_a_spec_file_edited_after_first_use_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "lab.yaml"
    shutil.copy(SPEC_DIR / "igb.yaml", spec)
    state_dir = tmp_path / "state"
    base = ["--sim", str(spec), "--state-dir", str(state_dir)]
    assert run_in_process([*base, "vm", "create", "a"]).code == 0
    assert run_in_process([*base, "vm", "list"]).code == 0  # unchanged: fine
    before = state_dump(state_dir)
    doc = yaml.safe_load(spec.read_text())
    doc["adapters"][0]["sriov"]["total_vfs"] = 6
    spec.write_text(yaml.safe_dump(doc))
    for command in (("vm", "list"), ("vm", "create", "b"), ("adapter", "enable", "enp1s0")):
        result = run_in_process([*base, *command])
        assert_clean_error(result, "spec-changed", STATE_ERROR)
        assert "--state-dir" in result.err and "--sim" in result.err
    assert state_dump(state_dir) == before
    # Without --sim the stored host is used, as the hint says.
    result = run_in_process(["--state-dir", str(state_dir), "adapter", "list", "-o", "json"])
    assert result.code == 0, result.err
    assert result.json()[0]["total_vfs"] == 7


def test_reformatting_a_spec_file_is_no_change(tmp_path: Path) -> None:
    spec = tmp_path / "lab.yaml"
    shutil.copy(SPEC_DIR / "igb.yaml", spec)
    state_dir = tmp_path / "state"
    base = ["--sim", str(spec), "--state-dir", str(state_dir)]
    assert run_in_process([*base, "vm", "create", "a"]).code == 0
    spec.write_text("# comments and key order do not matter\n" + spec.read_text())
    assert run_in_process([*base, "vm", "list"]).code == 0


# -- output paths ----------------------------------------------------------------------------


def snapshot_args(state_dir: Path, out: str) -> list[str]:
    return ["--sim", "demo", "--state-dir", str(state_dir), "host", "snapshot", "--file", out]


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda t: t / "a-dir", "is a directory"),
        (lambda t: t / "missing" / "host.yaml", "does not exist"),
        (lambda t: t / "a-file" / "host.yaml", "Not a directory"),
        (lambda t: t / ("x" * 300), "File name too long"),
    ],
    ids=["directory", "missing-parent", "file-as-parent", "name-too-long"],
)
def test_snapshot_output_paths_that_cannot_be_files(tmp_path: Path, make, problem: str) -> None:
    (tmp_path / "a-dir").mkdir()
    (tmp_path / "a-file").write_text("x")
    state_dir = tmp_path / "state"
    run_in_process(["--sim", "demo", "--state-dir", str(state_dir), "vm", "create", "a"])
    before = sql_dump(state_dir)
    result = run_in_process(snapshot_args(state_dir, str(make(tmp_path))))
    assert_clean_error(result, "output-path-invalid", INVALID)
    assert problem in result.err
    assert sql_dump(state_dir) == before


def test_output_helper_refuses_empty_and_nul_paths() -> None:
    for path in ("", "   ", "a\0b"):
        with pytest.raises(InvalidInput) as exc_info:
            check_output_path(path)
        assert exc_info.value.code == "output-path-invalid"


@contextlib.contextmanager
def tiny_tmpfs(path: Path) -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    path.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {proc.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_a_full_disk_leaves_no_partial_file_and_keeps_the_old_one(tmp_path: Path) -> None:
    disk = tmp_path / "full"
    with tiny_tmpfs(disk):
        old = disk / "host.yaml"
        old.write_text("previous snapshot\n")
        state_dir = tmp_path / "state"
        # A spec big enough not to fit: 64 KiB disk, ~100 KiB of YAML.
        with pytest.raises(IovctlError) as exc_info:
            write_output_file(str(old), "x" * 100_000)
        err = exc_info.value
        assert (err.code, err.exit_code) == ("output-write-failed", 1)
        assert "No space left" in err.message and "free space" in err.hint
        assert old.read_text() == "previous snapshot\n"
        assert sorted(p.name for p in disk.iterdir()) == ["host.yaml"]
        # Through the CLI: fill the disk first, then snapshot onto it.
        filler = disk / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as f:
            f.write(b"\0" * 200_000)
        result = run_in_process(snapshot_args(state_dir, str(disk / "new.yaml")))
        assert_clean_error(result, "output-write-failed", 1)
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "host.yaml"]


def test_writing_replaces_a_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    write_output_file(str(target), "new\n")
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_bench_json_path_is_checked_before_the_bench_runs(tmp_path: Path) -> None:
    # The bench would take minutes (and root, namespaces) before failing to write.
    for path in (tmp_path, tmp_path / "missing" / "bench.json"):
        result = run_in_process(["bench", "datapath", "--quick", "--json", str(path)])
        assert_clean_error(result, "output-path-invalid", INVALID)


# -- demo --keep on a used directory ---------------------------------------------------------


def test_demo_keep_refuses_a_used_directory(tmp_path: Path) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    result = run_in_process(["demo", "--keep", str(used)])
    assert_clean_error(result, "directory-in-use", INVALID)
    assert files_under(used) == {"notes.txt": b"mine"}


def test_demo_keep_refuses_a_file(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("mine")
    for keep in (a_file, a_file / "below"):
        result = run_in_process(["demo", "--keep", str(keep)])
        assert_clean_error(result, "output-path-invalid", INVALID)
    assert a_file.read_text() == "mine"


# -- install-service: the state directory goes into a unit file run as root ----------


@pytest.mark.parametrize(
    "state_dir",
    ["state\nExecStartPre=/bin/sh -c id", "with space", "100%full", 'quo"te'],
    ids=["newline", "space", "specifier", "quote"],
)
def test_install_service_refuses_a_state_dir_a_unit_cannot_hold(
    tmp_path: Path, state_dir: str
) -> None:
    units = tmp_path / "units"
    result = run_in_process(
        [
            "--state-dir",
            str(tmp_path / state_dir),
            "install-service",
            "--unit-dir",
            str(units),
            "--no-enable",
        ]
    )
    assert_clean_error(result, "unit-path-unsafe", INVALID)
    assert not units.exists()


def test_an_emulation_spec_edited_after_first_use_is_refused_before_any_kernel_work(
    tmp_path: Path,
) -> None:
    """Bound without root: the store is written as a first --emulate run leaves it, so
    the refusal is shown to come before EmulatedNic touches the kernel."""
    from iovctl.adapters.netns.spec import emulation_to_json, load_emulation
    from iovctl.adapters.sqlite.store import SqliteStore

    spec = tmp_path / "lab.yaml"
    spec.write_text("name: lab\nadapters:\n  - {name: iovq0, total_vfs: 4}\n")
    state_dir = tmp_path / "state"
    store = SqliteStore.open(state_dir)
    with store.transaction():
        store.set_meta("backend", "emulated")
        store.set_meta("emulation_spec", emulation_to_json(load_emulation(str(spec))))
    store.close()
    before = sql_dump(state_dir)
    spec.write_text("name: lab\nadapters:\n  - {name: iovq0, total_vfs: 8}\n")
    result = run_in_process(["--emulate", str(spec), "--state-dir", str(state_dir), "vm", "list"])
    assert_clean_error(result, "spec-changed", STATE_ERROR)
    assert "--emulate" in result.err
    assert sql_dump(state_dir) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root searches any directory")
def test_a_state_dir_that_cannot_be_searched(tmp_path: Path) -> None:
    state_dir = tmp_path / "closed"
    state_dir.mkdir(mode=0o600)
    try:
        result = run_in_process(["--sim", "demo", "--state-dir", str(state_dir), "vm", "list"])
        assert_clean_error(result, "state-unusable", STATE_ERROR)
    finally:
        state_dir.chmod(0o700)


# -- what an error repeats of the input --------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["vm", "show", "x" * 10_000],
        ["nic", "add", "vm1", "--switch", "y" * 10_000],
        ["--sim", "z" * 10_000, "vm", "list"],
        ["vm", "create", "evil\x1b]0;pwned\x07"],
        ["adapter", "show", "\x1b[2J\x1b[H"],
        ["vm", "list", "\x1b[31mextra"],
    ],
    ids=["long-vm", "long-switch", "long-sim", "osc-escape", "csi-escape", "usage-escape"],
)
def test_errors_never_echo_escapes_or_10000_characters(populated, argv: list[str]) -> None:
    result = run_in_process(["--state-dir", str(populated.state_dir), *argv])
    assert result.code in (2, 3), result.err
    assert "\x1b" not in result.err and "\x07" not in result.err
    assert all(len(line) <= 1100 for line in result.err.splitlines()), result.err[:300]
    assert len(result.err.splitlines()[0]) <= 500
