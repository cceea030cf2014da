"""What every output folder records about the run that made it, and atomic file writes.

`run_info()` gives the git hash, package versions, host and date for results.json files;
`atomic_write_*` write to a temporary name, fsync, then rename, so a reader never sees half a file;
`check_writable` says before any work that an output cannot be written.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_PACKAGES = (
    "retro",
    "numpy",
    "jax",
    "flax",
    "optax",
    "faiss-cpu",
    "sentence-transformers",
    "torch",
    "sentencepiece",
    "bm25s",
    "model2vec",
)


def git_hash(repo: str | os.PathLike | None = None) -> str | None:
    """The current commit of the source checkout (with '-dirty' when it has changes), or None."""
    where = Path(repo) if repo else Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape results."""
    out: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def run_info() -> dict[str, Any]:
    """git hash, versions, machine and UTC date: the provenance block of every results.json."""
    return {
        "git_hash": git_hash(),
        "versions": versions(),
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def fsync_path(path: str | os.PathLike) -> None:
    """fsync a file, or a folder so that a rename inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    """fsync a file, or a folder with every file and folder under it."""
    if path.exists():
        for p in (path, *path.rglob("*")) if path.is_dir() else (path,):
            fsync_path(p)


def remove_path(path: Path) -> None:
    """Delete a file or a folder tree, if there."""
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, folder: bool = False) -> Iterator[Path]:
    """The one atomic-write helper: yields a temporary sibling of `path` (a file name, or an empty
    folder when `folder`) for any writer (open, np.save, faiss.write_index, a streamed jsonl, a
    whole shard); on success it is fsynced and renamed over `path` (an old folder is replaced), on an
    exception it is removed and `path` is untouched. Readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # one writer per path; a killed run's leftover is reused
    remove_path(tmp)
    if folder:
        tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        if folder and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
        fsync_path(path.parent)
    except BaseException:
        remove_path(tmp)
        raise


def check_writable(path: str | os.PathLike, what: str = "--out", *, folder: bool = False) -> Path:
    """`path` if this process can write it (as a file, or with `folder` as a folder to fill), else a
    one-line ValueError naming `what` and the path. Called before any work, so a long job never
    computes results it cannot keep. A new output is probed by creating (and removing) a file in the
    nearest folder that exists, where it will be made: a read-only mount or a missing permission shows
    there, for root too. An existing output folder (an index to resume or append to) is asked with
    os.access instead, so that checking it leaves a finished index untouched."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        kind = "a folder" if path.is_dir() else "a file"
        raise ValueError(f"{what} {path}: is {kind}, expected {'a folder' if folder else 'a file'}")
    if folder and path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"{what} {path}: cannot write in this folder (read-only or no permission)")
        return path
    where = path.parent
    while not where.exists():
        where = where.parent
    if not where.is_dir():
        raise ValueError(f"{what} {path}: cannot be written ({where} is a file, not a folder)")
    try:
        fd, probe = tempfile.mkstemp(dir=where, prefix=".retro-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"{what} {path}: cannot write in {where} ({e.strerror})") from None
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Text version of `atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def json_text(obj: Any) -> str:
    """`obj` as `atomic_write_json` writes it (so a caller can know the sha256 of a file it will write)."""
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """JSON version of `atomic_write_bytes`, indented and key-sorted for stable diffs."""
    atomic_write_text(path, json_text(obj))
