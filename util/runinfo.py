"""What every output folder records about the run that made it, and atomic file writes.

`run_info()` gives the git hash, package versions, host and date for results.json files;
`atomic_write_*` write to a temporary name, fsync, then rename, so a reader never sees half a file.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
import subprocess
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


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory so a rename inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` via a temporary file, fsync and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Text version of `atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """JSON version of `atomic_write_bytes`, indented and key-sorted for stable diffs."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
