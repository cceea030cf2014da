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


HEAVY_MODULES = ("torch", "sentence_transformers", "transformers", "jax", "flax", "faiss")


def assert_refused_before_heavy_imports(cases: list[tuple[list[str], str]], cwd: Path | None = None) -> None:
    """Run each `retro` argv of `cases` [(argv, expected text)] through `pipelines.cli.main` in one fresh
    interpreter: each must exit 2 with one line of stderr holding its expected text, and none may have
    imported a heavy module (HEAVY_MODULES) by then: bad input is refused in about a second."""
    import subprocess

    script = (
        "import contextlib, io, json, sys\n"
        "from pipelines.cli import main\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err):\n"
        "        rc = main(argv)\n"
        f"    heavy = [m for m in {HEAVY_MODULES!r} if m in sys.modules]\n"
        "    print(json.dumps({'rc': rc, 'err': err.getvalue(), 'heavy': heavy}))\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, "-c", script, json.dumps([argv for argv, _ in cases])],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    results = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(results) == len(cases)
    for (argv, expected), got in zip(cases, results, strict=True):
        err = got["err"].strip()
        assert got["rc"] == 2 and expected in err and "\n" not in err, (argv, got)
        assert got["heavy"] == [], (argv, got["heavy"])


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
