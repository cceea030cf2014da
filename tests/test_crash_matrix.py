"""The crash matrix: `kill -9` at every phase of `retro index build` and of `... --append`, then
the same command again; the index it ends with must be byte-identical to an uninterrupted build.

The kills are real SIGKILLs the build sends itself at a named kill point (`RETRO_KILL_AT=<point>[:<n>]`,
util/progress.py), so each lands at a known phase on any machine: the first run's exit status must be
-9, or the point was never reached and the test fails. Between kill and rerun the folder must not
open as a finished index (a fresh build) or must still open as the old one (an append). Files are
compared by sha256, all of them (hidden temporary names included) except the build logs, whose run
info holds dates. Slow: about 30 builds of a tiny corpus, a few minutes in all (BENCHMARKS.md,
"Crash matrix").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from index import Index
from tests.conftest import tree_digest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# every phase of a fresh build; bm25 and shard are per shard (":2" = the second shard)
BUILD_KILLS = [
    ["tokenizer"],
    ["static"],
    ["quantizer"],
    ["bm25:1"],
    ["bm25:2"],
    ["shard:1"],
    ["shard:2"],
    ["expansion:1"],  # the expansion table: before counting words
    ["expansion:2"],  # its vectors written, its word list not yet
    ["expansion:3"],  # both written, the manifest not yet
    ["manifest:1"],  # build.json names the manifest; index.json not yet written
    ["manifest:2"],  # index.json written; build.json not yet removed
    ["shard:2", "shard:1", "manifest:2"],  # each rerun is killed too: a resumed resume
]
APPEND_KILLS = [
    ["digests"],
    ["bm25:1"],
    ["shard:1"],
    ["shard:2"],
    ["expansion:1"],
    ["expansion:2"],
    ["manifest:1"],
    ["manifest:2"],
]


def _cmd(corpus: Path, out: Path, *extra: str) -> list[str]:
    return [
        *(sys.executable, "-m", "pipelines.cli", "index", "build", str(corpus), "--out", str(out)),
        *("--quiet", "--vocab", "800", "--no-dense", "--shard-chunks", "120", *extra),
    ]


def _run(cmd: list[str], kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("RETRO_KILL_AT", None)
    if kill_at:
        env["RETRO_KILL_AT"] = kill_at
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory, real_corpus) -> tuple[Path, Path]:
    """A (24 documents, ~3 shards) and B (12 more, ~2 shards to append)."""
    docs = [json.loads(line) for line in open(real_corpus)]
    folder = tmp_path_factory.mktemp("crash-corpora")
    a, b = folder / "a.jsonl", folder / "b.jsonl"
    a.write_text("".join(json.dumps(d) + "\n" for d in docs[:24]))
    b.write_text("".join(json.dumps(d) + "\n" for d in docs[24:36]))
    return a, b


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpora) -> tuple[Path, Path]:
    """Uninterrupted runs: A built, and A built then B appended."""
    a, b = corpora
    folder = tmp_path_factory.mktemp("crash-reference")
    built, appended = folder / "built", folder / "appended"
    assert _run(_cmd(a, built)).returncode == 0
    shutil.copytree(built, appended)
    assert _run(_cmd(b, appended, "--append")).returncode == 0
    assert len(Index.open(built).manifest["shards"]) >= 2
    assert len(Index.open(appended).manifest["shards"]) - len(Index.open(built).manifest["shards"]) >= 2
    return built, appended


def _kill(cmd: list[str], point: str) -> None:
    """Run `cmd` with a kill -9 at `point`, which it must reach."""
    proc = _run(cmd, kill_at=point)
    assert proc.returncode == -9, f"kill point {point} not reached (exit {proc.returncode}): {proc.stderr}"


@pytest.mark.parametrize("kills", BUILD_KILLS, ids=lambda k: "+".join(k))
def test_killed_build_resumes_to_the_identical_index(tmp_path, corpora, reference, kills):
    a, _ = corpora
    out = tmp_path / "idx"
    for point in kills:
        _kill(_cmd(a, out), point)
        if (out / "build.json").exists() and not (out / "index.json").exists():
            with pytest.raises(ValueError, match="unfinished build"):
                Index.open(out)
    done = _run(_cmd(a, out))
    assert done.returncode == 0, done.stderr
    assert not (out / "build.json").exists()
    assert tree_digest(out) == tree_digest(reference[0])
    assert Index.open(out, verify=True).generation == 0


@pytest.mark.parametrize("kills", APPEND_KILLS, ids=lambda k: "+".join(k))
def test_killed_append_resumes_to_the_identical_index(tmp_path, corpora, reference, kills):
    _, b = corpora
    built, appended = reference
    out = tmp_path / "idx"
    shutil.copytree(built, out)
    old = Index.open(built)
    for point in kills:
        _kill(_cmd(b, out, "--append"), point)
        now = Index.open(out)  # the old index stays valid until the new manifest replaces it
        written = point.startswith("manifest:2")
        assert now.generation == (1 if written else 0)
        assert now.num_docs == (Index.open(appended).num_docs if written else old.num_docs)
    done = _run(_cmd(b, out, "--append"))
    assert done.returncode == 0, done.stderr
    assert not (out / "build.json").exists()
    assert tree_digest(out) == tree_digest(appended)
    assert Index.open(out, verify=True).generation == 1
