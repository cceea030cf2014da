"""BM25 postings layouts: once per chunk (index/postings_once.py, the default), packed (index/postings.py,
4 bytes a posting) and bm25s's csc give bit-identical scores; indexes in an older layout still open,
answer and append in their own layout: real builds over a small real corpus (three builds: slow)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from index import Index
from index.build import BuildConfig, build_index
from index.postings import is_packed, pack_postings
from index.postings_once import LAYOUT as ONCE
from index.postings_once import layout_of, write_once
from index.tokenizer import sha256_file

pytestmark = pytest.mark.slow

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
def builds(tmp_path_factory, real_corpus):
    """The same corpus built three times with one tokenizer: once (the default), packed and csc."""
    root = tmp_path_factory.mktemp("postings")
    build_index(real_corpus, root / "once", FAST, quiet=True)
    tok = str(root / "once" / "tokenizer.model")
    for layout in ("packed", "csc"):
        build_index(
            real_corpus,
            root / layout,
            dataclasses.replace(FAST, tokenizer=tok, bm25_postings=layout),
            quiet=True,
        )
    return root


@pytest.fixture(scope="module")
def pair(builds):
    """(packed, csc) index folders."""
    return builds / "packed", builds / "csc"


def _same_columns(a: Index, b: Index) -> int:
    """Assert every column of every shard of `a` and `b` has the same rows, score bits and df
    (both in hash-ordered layouts); returns the number of postings compared."""
    n = 0
    for sa, sb in zip(a._shards, b._shards, strict=True):
        ba, bb = sa.bm25, sb.bm25
        assert np.array_equal(ba.hashes, bb.hashes)
        for col in range(len(ba.hashes)):
            ra, va = ba.postings(col)
            rb, vb = bb.postings(col)
            assert ra.tolist() == rb.tolist() and va.tobytes() == vb.tobytes(), col
            n += len(rb)
        cols = np.arange(len(ba.hashes))
        assert np.array_equal(ba.df(cols), bb.df(cols))
    return n


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


def test_once_postings_give_every_packed_posting_back_bit_for_bit_in_fewer_bytes(builds):
    once, packed = Index.open(builds / "once"), Index.open(builds / "packed")
    assert once.manifest["bm25"]["postings"] == "once"
    assert all(layout_of(s.folder / "bm25") == ONCE for s in once._shards)
    assert _same_columns(once, packed) > 10_000
    for q in QUERIES:
        a, b = once.search_bm25(q, 20), packed.search_bm25(q, 20)
        assert len(a[0]) and a[0].tolist() == b[0].tolist() and a[1].tobytes() == b[1].tobytes(), q
    weights = {"decim": 1.0, "float": 0.7, "point": 0.3, "decim float": 0.5, "read-onli": 0.4}
    groups = {"float": "g", "point": "g"}
    a, b = once.search_bm25_weighted(weights, 15, groups), packed.search_bm25_weighted(weights, 15, groups)
    assert a[0].tolist() == b[0].tolist() and a[1].tobytes() == b[1].tobytes()
    size = {
        k: sum(f.stat().st_size for f in (builds / k).glob("shards/*/bm25/postings.npy"))
        for k in builds.iterdir()
    }
    assert size[builds / "once"] < 0.65 * size[builds / "packed"]  # each chunk's terms once, not twice


def test_boundary_terms_stay_exact(tmp_path):
    """Words, bigrams and compounds cut by chunk boundaries (a 300-piece tokenizer cuts many), a
    Greek capital sigma whose lower case depends on what follows, terms in long runs of consecutive
    chunks: every score as the packed layout's."""
    words = "lemon-parrot magic numbers x86-64 read-only ΟΔΟΣ ΟΔΟΣα hut 4242 cabin-shed parrot lemon".split()
    rng = np.random.default_rng(0)
    docs = [{"id": f"d{i}", "text": " ".join(rng.choice(words, 400))} for i in range(12)]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
    cfg = BuildConfig(vocab_size=300, dense="off", sample_chars=1000)
    build_index(corpus, tmp_path / "once", cfg, quiet=True)
    tok = str(tmp_path / "once" / "tokenizer.model")
    build_index(
        corpus,
        tmp_path / "packed",
        dataclasses.replace(cfg, tokenizer=tok, bm25_postings="packed"),
        quiet=True,
    )
    once = Index.open(tmp_path / "once")
    assert all(layout_of(s.folder / "bm25") == ONCE for s in once._shards)
    # entries carry their previous document's frequency: fewer entries than documents' postings
    entries = sum(len(s.bm25.once.words) for s in once._shards)
    postings = sum(int(s.bm25.df(np.arange(len(s.bm25.hashes))).sum()) for s in once._shards)
    assert entries < 0.6 * postings
    _same_columns(once, Index.open(tmp_path / "packed"))


def test_once_refuses_scores_it_cannot_give_back(tmp_path):
    rows, ptr, doc_len = np.array([0, 1, 1], np.int32), np.array([0, 2, 3]), np.array([5, 7])
    data = np.array([0.5, 0.25, 0.9], np.float32)
    hashes = np.array([1, 2], np.uint64)
    assert not write_once(tmp_path, data, rows, ptr, doc_len, hashes, np.array([1, -1]), k1=1.5, b=0.75)
    assert not any(tmp_path.iterdir())


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


def test_packed_index_appends_packed_and_int64_spans_still_read(tmp_path, pair):
    """An index of the packed layout with int64 chunk spans (as built before both cuts) answers with
    the same provenance, and an append keeps its layout."""
    old = tmp_path / "old"
    shutil.copytree(pair[0], old)
    ids = np.arange(0, Index.open(old).num_chunks, 17)
    before = Index.open(old).provenance(ids)
    for f in old.glob("shards/*/chunk_span.npy"):
        assert np.load(f).dtype == np.int32
        np.save(f, np.load(f).astype(np.int64))
        meta = json.loads((f.parent / "shard.json").read_text())
        meta["files"]["chunk_span.npy"] = {"bytes": f.stat().st_size, "sha256": sha256_file(f)}
        (f.parent / "shard.json").write_text(json.dumps(meta))
    assert Index.open(old).provenance(ids) == before
    extra = tmp_path / "extra.jsonl"
    extra.write_text(
        json.dumps({"id": "x", "text": "A lemon-parrot keeps the magic number 4242. " * 30}) + "\n"
    )
    build_index(extra, old, FAST, append=True, quiet=True)
    after = Index.open(old)
    assert [layout_of(s.folder / "bm25") for s in after._shards] == ["packed-u32"] * len(after._shards)
