"""The expansion table (index/expansion_table.py): written by the build, extended by an append, only
read by a query; an index built before it still answers and says that it embeds its words now."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from index import Index
from index.build import BuildConfig, build_index
from index.embedders import load_dense
from index.expansion_table import embed_words
from pipelines.cascade import Cascade
from pipelines.cascade_config import CascadeConfig
from pipelines.expansion import QueryExpander
from tests.conftest import stdlib_docs

CFG = BuildConfig(vocab_size=600, dense="off")
REPTILE = "The old tortoise slept under the dinghy by the zookeeper's hut."  # words WordPiece splits


def _write(path: Path, docs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return [{"id": d["id"], "text": d["text"][:2500]} for d in stdlib_docs(limit=10)]


@pytest.fixture(scope="module")
def built(tmp_path_factory, docs) -> Path:
    folder = tmp_path_factory.mktemp("table")
    build_index(_write(folder / "a.jsonl", docs), folder / "idx", CFG, quiet=True)
    return folder / "idx"


def test_a_build_writes_the_table_and_the_manifest_lists_it(built):
    idx = Index.open(built, verify=True)  # verify: the table's files match their sha256
    entry = idx.manifest["expansion"]
    folder = built / entry["folder"]
    assert entry["folder"] == "expansion/000000" and sorted(p.name for p in folder.iterdir()) == [
        "vectors.npy",
        "words.json",
    ]
    for name, meta in entry["files"].items():
        data = (folder / name).read_bytes()
        assert len(data) == meta["bytes"] and hashlib.sha256(data).hexdigest() == meta["sha256"]
    table = idx.expansion_table()
    assert isinstance(table.vectors, np.memmap) and table.vectors.dtype == np.float16
    assert len(table.words) == len(table.vectors) == entry["words"] > table.vocabulary > 20_000
    corpus = list(idx.corpus_words())
    assert [table.words[r] for r in table.corpus] == corpus  # every corpus word, most frequent first
    assert entry["corpus_words"] == len(corpus) and entry["new_words"] == entry["words"] - table.vocabulary
    np.testing.assert_allclose(
        np.linalg.norm(np.asarray(table.vectors[:50], np.float32), axis=1), 1, atol=2e-3
    )
    assert f"expansion:{entry['words']} words" in idx.info()["tiers"]
    assert not (built / "expansion" / ".parts").exists()


def test_the_first_search_after_a_build_only_reads(built, tmp_path, monkeypatch):
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    monkeypatch.setenv("RETRO_CACHE", str(cache))
    before = _snapshot(built)
    res = Cascade(Index.open(built), CascadeConfig(), quiet=True).search("read a compressed archive", k=3)
    assert len(res.neighbours) == 3 and res.hops[0].stages["cheap"].expansion.added
    assert list(cache.iterdir()) == []  # nothing embedded, nothing cached
    assert _snapshot(built) == before  # and nothing written into the index


def test_an_append_extends_the_table_and_expansion_reaches_the_new_words(tmp_path, built, docs):
    out = tmp_path / "idx"
    shutil.copytree(built, out)
    old = Index.open(out).expansion_table()
    old_words, old_vectors = list(old.words), np.array(old.vectors)
    assert "tortoise" not in old_words
    build_index(
        _write(tmp_path / "b.jsonl", [{"id": "reptile", "text": REPTILE * 3}]),
        out,
        CFG,
        append=True,
        quiet=True,
    )
    idx = Index.open(out, verify=True)
    entry = idx.manifest["expansion"]
    assert entry["folder"] == "expansion/000001" and [p.name for p in (out / "expansion").iterdir()] == [
        "000001"
    ]
    table = idx.expansion_table()
    new = table.words[len(old_words) :]
    assert table.words[: len(old_words)] == old_words
    assert {"tortoise", "dinghy", "zookeeper"} <= set(new) <= set(REPTILE.lower().replace("'", " ").split())
    assert entry["new_words"] == len(new)  # only the new words were embedded
    # the old rows are copied as they were
    assert np.array_equal(np.asarray(table.vectors[: len(old_words)]), old_vectors)
    model = load_dense()
    expander = QueryExpander(model, table=table)
    assert "tortois" in expander.expand("Where does the shelled reptile sleep?").added
    res = Cascade(idx, CascadeConfig(), quiet=True).search("Where does the shelled reptile sleep?", k=2)
    expanded = res.hops[0].stages["cheap"].lists["expanded"].ids
    assert idx.provenance(expanded[:1])[0]["doc_id"] == "reptile"  # the expanded BM25 list finds it first


def test_an_index_without_a_table_still_answers_and_says_it_builds_one(tmp_path, built, capsys):
    out = tmp_path / "old"
    shutil.copytree(built, out)
    manifest = json.loads((out / "index.json").read_text())
    del manifest["expansion"]  # as an index built before the table
    (out / "index.json").write_text(json.dumps(manifest))
    shutil.rmtree(out / "expansion")
    idx = Index.open(out, verify=True)
    assert idx.expansion_table() is None
    capsys.readouterr()
    res = Cascade(idx, CascadeConfig(expand_corpus_words=200)).search("read a compressed archive", k=2)
    err = capsys.readouterr().err
    assert len(res.neighbours) == 2 and res.hops[0].stages["cheap"].expansion is not None
    assert "no expansion table" in err and "expansion table: " in err  # the note, then its bar
    stored = Cascade(Index.open(built), CascadeConfig(expand_corpus_words=200), quiet=True).search(
        "read a compressed archive", k=2
    )
    assert [n.chunk for n in res.neighbours] == [n.chunk for n in stored.neighbours]


def test_word_blocks_resume_from_their_saved_parts(tmp_path):
    model = load_dense()
    words = ["tortoise", "dinghy", "zookeeper", "lantern", "harbour", "granite", "meadow", "quarry", "ferry"]
    parts = tmp_path / "parts"
    first = embed_words(model, words, parts=parts, desc="test", quiet=True, block=4)
    saved = sorted(parts.iterdir())
    assert len(saved) == 3
    saved[1].unlink()  # a kill before the second block was saved
    kept = {p: p.stat().st_mtime_ns for p in (saved[0], saved[2])}
    again = embed_words(model, words, parts=parts, desc="test", quiet=True, block=4)
    assert np.array_equal(first, again) and len(list(parts.iterdir())) == 3
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # the saved blocks were read, not redone
