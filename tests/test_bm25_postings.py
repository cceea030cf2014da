"""Packed BM25 postings (index/postings.py): 4 bytes a posting, the same scores as bm25s's layout, and
indexes in the old layout still open and answer: real builds over a small real corpus."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from index import Index
from index.build import BuildConfig, build_index
from index.postings import is_packed, pack_postings

FAST = BuildConfig(vocab_size=1000, dense="off", shard_chunks=400)
QUERIES = [
    "decimal floating point arithmetic",
    "parse command line options",
    "calendar month names",
    "the file is opened in binary mode",
    "return a new list of the items",
    "socket timeout",
]


@pytest.fixture(scope="module")
def pair(tmp_path_factory, real_corpus):
    """The same corpus built twice with one tokenizer: packed postings (the default) and the old csc."""
    root = tmp_path_factory.mktemp("postings")
    build_index(real_corpus, root / "packed", FAST, quiet=True)
    tok = str(root / "packed" / "tokenizer.model")
    old = dataclasses.replace(FAST, tokenizer=tok, bm25_postings="csc")
    build_index(real_corpus, root / "csc", old, quiet=True)
    return root / "packed", root / "csc"


def _bm25_bytes(index) -> tuple[int, int]:
    """(bytes of posting files, number of postings) over every shard of an index folder."""
    size = count = 0
    for f in index.glob("shards/*/bm25/*.npy"):
        if f.name in ("postings.npy", "data.csc.index.npy", "indices.csc.index.npy"):
            size += f.stat().st_size
        if f.name in ("postings.npy", "indices.csc.index.npy"):
            count += len(np.load(f, mmap_mode="r"))
    return size, count


def test_packed_postings_give_bit_identical_scores_and_half_the_bytes(pair):
    packed, csc = pair
    new, old = Index.open(packed), Index.open(csc)
    assert new.manifest["bm25"]["postings"] == "packed" and old.manifest["bm25"]["postings"] == "csc"
    assert all(is_packed(s.folder / "bm25") for s in new._shards)
    assert not any(is_packed(s.folder / "bm25") for s in old._shards)
    assert len(new._shards) >= 3
    for q in QUERIES:
        ids_n, sc_n = new.search_bm25(q, 20)
        ids_o, sc_o = old.search_bm25(q, 20)
        assert len(ids_n) > 0
        assert ids_n.tolist() == ids_o.tolist() and sc_n.tobytes() == sc_o.tobytes(), q
    # weighted, grouped terms (the expanded list's path) agree too
    weights = {"decim": 1.0, "float": 0.7, "point": 0.3, "decim float": 0.5}
    groups = {"float": "g", "point": "g"}
    a = new.search_bm25_weighted(weights, 15, groups)
    b = old.search_bm25_weighted(weights, 15, groups)
    assert a[0].tolist() == b[0].tolist() and a[1].tobytes() == b[1].tobytes()
    # every column, every posting: same rows and same float32 scores
    for sn, so in zip(new._shards, old._shards, strict=True):
        bn, bo = sn.bm25, so.bm25
        assert len(bn.hashes) == len(bo.hashes) and np.array_equal(bn.hashes, bo.hashes)
        for pos in range(0, len(bo.hashes), 7):
            rn, vn = bn.postings(pos)  # packed: the column is the hash's position
            ro, vo = bo.postings(int(bo.cols[pos]))
            assert rn.tolist() == ro.tolist() and vn.tobytes() == vo.tobytes()
    (size_n, count_n), (size_o, count_o) = _bm25_bytes(packed), _bm25_bytes(csc)
    assert count_n == count_o > 0
    assert size_n < 0.52 * size_o  # 4 bytes a posting instead of 8 (plus .npy headers)


def test_pack_refuses_what_it_cannot_give_back_exactly():
    rows, ptr, doc_len = np.array([0, 1, 1], np.int32), np.array([0, 2, 3]), np.array([5, 7])
    data = np.array([0.5, 0.25, 0.9], np.float32)  # not idf x tfc of any whole term frequency
    assert pack_postings(data, rows, ptr, doc_len, 1.5, 0.75) is None


def test_old_layout_index_opens_answers_and_appends_in_its_own_layout(tmp_path, pair, real_corpus):
    """An index made before packed postings (csc files, no `postings` in its manifest or build config)
    opens and answers; an append to it keeps the old layout."""
    packed, csc = pair
    old = tmp_path / "old"
    shutil.copytree(csc, old)
    manifest = json.loads((old / "index.json").read_text())
    del manifest["bm25"]["postings"], manifest["build_config"]["bm25_postings"]
    (old / "index.json").write_text(json.dumps(manifest))
    idx = Index.open(old)
    ref = Index.open(packed)
    for q in QUERIES[:3]:
        assert idx.search_bm25(q, 10)[0].tolist() == ref.search_bm25(q, 10)[0].tolist()
    extra = tmp_path / "extra.jsonl"
    extra.write_text(
        json.dumps({"id": "x", "text": "A lemon-parrot keeps the magic number 4242 in a hut. " * 30}) + "\n"
    )
    build_index(extra, old, FAST, append=True, quiet=True)
    after = Index.open(old)
    assert len(after._shards) == len(idx._shards) + 1
    assert not any(is_packed(s.folder / "bm25") for s in after._shards)
    ids, _ = after.search_bm25("lemon-parrot magic number", 1)
    assert after.provenance(ids)[0]["doc_id"] == "x"
