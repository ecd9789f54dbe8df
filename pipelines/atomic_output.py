"""Replace an output folder atomically: a job that fails, is interrupted (ctrl-C, SIGKILL) or
fills the disk leaves the complete old output or the complete new one, never a mix and
never nothing.

    with staged_output("data/rc15") as staging:  # data/.rc15.tmp-<pid>-<hex>, created now
        write_shards(staging)
        write_meta(staging)                      # last: its presence marks completeness
    # data/rc15 is now the new folder; after an exception it is what it was before

Local paths: the staging folder is a sibling of the target (same filesystem), so the swap
is two renames — ``target -> .<name>.old-<pid>-<hex>``, ``staging -> target`` — and then
the removal of the old folder. A job killed between the two renames leaves no target but a
complete ``.old`` sibling: `recover`, run by the next `staged_output` on that target,
renames it back (and removes a leftover ``.old`` next to a target, and the staging folders
of processes that no longer run).

``s3://`` / ``gs://`` URIs (object stores cannot rename) get a weaker guarantee: the job
still builds under a staging prefix, so a failure while building leaves the old output
untouched; the swap then deletes the old objects and copies the new ones in, ``meta.json``
last. A job killed during that copy leaves a folder without ``meta.json`` — incomplete,
refused by every reader and replaced by ``--overwrite`` — never a ``meta.json`` that
describes other shards. Stale staging prefixes are not cleaned up automatically.

The swap replaces the whole target, so callers refuse a target that holds files recrl did
not write (`refuse_foreign`) before staging. Single files (reports) use `atomic_write`,
the few files of one result in a shared folder `atomic_writes`.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import pyarrow.fs as pafs
from recrl.pipelines.prepare.errors import ForeignFilesError, OutputNotWritableError

SHOWN = 5
"""Foreign files named in a refusal; the rest are counted."""


def is_remote(path: str | os.PathLike) -> bool:
    return "://" in str(path)


def _sibling(target: Path, kind: str) -> Path:
    return target.with_name(f".{target.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours, and not in use: a staging folder in use is not looked at
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftovers(target: Path, kind: str) -> list[Path]:
    """Siblings ``.<name>.<kind>-<pid>-<hex>`` of dead processes, oldest first."""
    if not target.parent.is_dir():
        return []
    found = []
    for path in target.parent.glob(f".{target.name}.{kind}-*"):
        pid = path.name.removeprefix(f".{target.name}.{kind}-").split("-")[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            found.append(path)
    return sorted(found, key=lambda p: p.stat().st_mtime)


def recover(target: str | os.PathLike) -> None:
    """Finish or undo a swap that was interrupted, and remove stale staging folders.

    No target but a ``.old`` sibling: the job died between its two renames, and the
    ``.old`` folder is the complete previous output: it is renamed back. Local paths only.
    """
    if is_remote(target):
        return
    target = Path(os.path.realpath(target))
    olds = _leftovers(target, "old")
    if olds and not target.exists():
        # The interrupted swap moved a complete output: one with its meta.json (a leftover
        # whose removal was cut short may have lost it), the newest of those.
        olds.sort(key=lambda p: ((p / "meta.json").is_file(), p.stat().st_mtime))
        olds.pop().rename(target)
    for path in olds + _leftovers(target, "tmp"):
        shutil.rmtree(path, ignore_errors=True)


def check_writable(target: str | os.PathLike) -> None:
    """Refuse a target that exists as a file, lies under a file, or whose nearest existing
    folder is not writable — before any expensive work. Local paths only."""
    if is_remote(target):
        return
    target = Path(os.path.abspath(target))
    if target.exists() and not target.is_dir():
        raise OutputNotWritableError("output path exists and is not a folder", file=str(target))
    existing = target
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputNotWritableError(
            f"cannot create the output folder: {existing} is a file", file=str(target)
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputNotWritableError(
            f"cannot create the output folder: {existing} is not writable", file=str(target)
        )


@contextlib.contextmanager
def staged_output(target: str, *, ours: Callable[[str], bool] | None = None) -> Iterator[str]:
    """Yield a fresh staging folder for ``target`` and swap it in when the block ends
    without an exception; after an exception (KeyboardInterrupt included) the staging
    folder is removed and ``target`` is untouched. See the module docstring.

    ``ours`` tells the files recrl writes in ``target``; it is checked again right before
    the swap, so a file the user put there while the job ran is refused, not deleted."""
    if is_remote(target):
        with _staged_remote(target) as staging:
            yield staging
        return
    path = Path(os.path.realpath(target))  # a symlinked output: replace what it points to
    recover(path)
    check_writable(path)
    staging = _sibling(path, "tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
    except OSError as error:
        raise OutputNotWritableError(
            f"cannot create the output folder ({error.strerror or error})", file=str(path)
        ) from None
    try:
        yield str(staging)
        if ours is not None:
            refuse_foreign(str(path), list_files(str(path)), ours)
        _swap(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap(staging: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = _sibling(target, "old")
        target.rename(old)
    try:
        staging.rename(target)
    except BaseException:
        if old is not None and not target.exists():
            old.rename(target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _staged_remote(target: str) -> Iterator[str]:
    fs, path = pafs.FileSystem.from_uri(target)
    path = path.rstrip("/")
    scheme = target.split("://", 1)[0]
    parent, name = posixpath.split(path)
    staging = posixpath.join(parent, f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    fs.create_dir(staging, recursive=True)
    try:
        yield f"{scheme}://{staging}"
    except BaseException:
        with contextlib.suppress(OSError):
            fs.delete_dir(staging)
        raise
    try:
        if fs.get_file_info(path).type != pafs.FileType.NotFound:
            fs.delete_dir(path)
        files = [
            info.path
            for info in fs.get_file_info(pafs.FileSelector(staging, recursive=True))
            if info.type == pafs.FileType.File
        ]
        files.sort(key=lambda f: posixpath.basename(f) == "meta.json")  # meta.json last
        for file in files:
            dest = posixpath.join(path, posixpath.relpath(file, staging))
            fs.create_dir(posixpath.dirname(dest), recursive=True)
            fs.copy_file(file, dest)
    except BaseException as error:
        # The old output is gone and the new one is partly copied: the staging prefix is
        # the only complete copy, so it is kept and named.
        raise OutputNotWritableError(
            f"copying the new output into place failed ({error}); the complete output is "
            f"kept at {scheme}://{staging}",
            file=target,
        ) from error
    with contextlib.suppress(OSError):
        fs.delete_dir(staging)


def list_files(root: str) -> list[str]:
    """Relative (``/``-separated) paths of every file under ``root``, at any depth; [] when
    ``root`` does not exist. Local paths and URIs."""
    if is_remote(root):
        fs, path = pafs.FileSystem.from_uri(root)
    else:
        fs, path = pafs.LocalFileSystem(), os.path.abspath(root)
    path = path.rstrip("/")
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return []
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    return sorted(
        posixpath.relpath(i.path, path) for i in infos if i.type != pafs.FileType.Directory
    )


def refuse_foreign(target: str, files: Iterable[str], ours: Callable[[str], bool]) -> None:
    """Raise `ForeignFilesError` listing the ``files`` (relative paths) not ``ours``."""
    foreign = sorted(f for f in files if not ours(f))
    if not foreign:
        return
    shown = ", ".join(foreign[:SHOWN])
    more = f" and {len(foreign) - SHOWN} more" if len(foreign) > SHOWN else ""
    raise ForeignFilesError(
        f"output folder holds {len(foreign)} file(s) recrl did not write ({shown}{more}); "
        "recrl never deletes them: move them out or choose another folder",
        file=str(target),
    )


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, fsync it, then rename it to
    ``path``: a reader sees the old file or the new one, never half of one. Local paths
    only."""
    return atomic_writes({path: write})[0]


def atomic_writes(writes: Mapping[str | os.PathLike, Callable[[Path], object]]) -> list[Path]:
    """`atomic_write` for several files of one result (a table and its plot): every file
    is written and fsynced to its temporary sibling before any is renamed, so an exception
    in any ``write`` leaves all the old files as they were and no temporary file behind.
    The renames follow one another; a crash between two of them can leave a new file next
    to an old one, never a partial file. Leftover temporary siblings of dead processes are
    removed first. Local paths only."""
    staged: list[tuple[Path, Path]] = []
    try:
        for target, write in writes.items():
            path = Path(target)
            for stale in _leftovers(path, "tmp"):
                stale.unlink(missing_ok=True)
            tmp = _sibling(path, "tmp")
            staged.append((tmp, path))
            write(tmp)
            _fsync(tmp)
        for tmp, path in staged:
            tmp.replace(path)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for folder in {path.parent for _, path in staged}:
        _fsync(folder)  # the renames themselves
    return [path for _, path in staged]


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file, or a folder's entries) to disk; a no-op where the OS cannot."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
