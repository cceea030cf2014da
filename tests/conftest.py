"""Shared test setup: offline models, a per-session cache, and small real-text corpora."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _retro_cache(tmp_path_factory):
    """Derived models (static tables) are cached per test session, never in the user's home."""
    if "RETRO_CACHE" not in os.environ:
        os.environ["RETRO_CACHE"] = str(tmp_path_factory.mktemp("retro-cache"))
    yield


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under an index folder by relative path, less the build logs (timestamps)."""
    import hashlib

    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith("build-log")
    }


def stdlib_docs(limit: int | None = None) -> list[dict]:
    """Real English text nobody on this project wrote: docstrings of the Python standard library.

    Deterministic for a given Python version; one document per module (module + public members).
    """
    import importlib
    import inspect

    names = sorted(
        n
        for n in sys.stdlib_module_names
        if not n.startswith("_")
        and n
        not in {
            "antigravity",
            "this",
            "idlelib",
            "tkinter",
            "turtle",
            "turtledemo",
            "msvcrt",
            "winreg",
            "winsound",
            "nt",
            "ensurepip",
            "lib2to3",
            "pydoc_data",
            "venv",
            "xxsubtype",
            "crypt",
            "nis",
            "spwd",
            "ossaudiodev",
        }
    )
    docs = []
    for name in names:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mod = importlib.import_module(name)
        except Exception:
            continue
        parts = [inspect.getdoc(mod) or ""]
        for attr in sorted(dir(mod))[:60]:
            if attr.startswith("_"):
                continue
            doc = inspect.getdoc(getattr(mod, attr, None))
            if doc and doc not in parts and len(doc) > 80:
                parts.append(f"{attr}: {doc}")
        text = "\n\n".join(p for p in parts if p)
        if len(text) > 400:
            docs.append({"id": name, "text": text[:6000]})
        if limit and len(docs) >= limit:
            break
    return docs


@pytest.fixture(scope="session")
def real_corpus(tmp_path_factory) -> Path:
    """A jsonl corpus of ~60 stdlib docstring documents (~60k tokens)."""
    path = tmp_path_factory.mktemp("corpus") / "stdlib.jsonl"
    with open(path, "w") as f:
        for d in stdlib_docs(limit=60):
            f.write(json.dumps(d) + "\n")
    return path


def build_small_index(docs: list[dict], folder: Path, vocab_size: int) -> Path:
    """Write `docs` ({"id", "text"}) as folder/corpus.jsonl and build an index without the dense tier
    at folder/idx; returns the index folder."""
    from index.build import BuildConfig, build_index

    corpus = folder / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    build_index(corpus, folder / "idx", BuildConfig(vocab_size=vocab_size, dense="off"), quiet=True)
    return folder / "idx"
