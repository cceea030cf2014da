"""Building, opening, searching, appending and resuming indexes: real sentencepiece, FAISS, bm25s, MiniLM."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from index import Index
from index.build import BuildConfig, build_index
from pipelines.cli import main
from tests.conftest import tree_digest

FAST = BuildConfig(vocab_size=1000, dense="off", shard_chunks=400)


def _docs(corpus: Path) -> list[dict]:
    return [json.loads(line) for line in open(corpus)]


@pytest.fixture(scope="module")
def built(tmp_path_factory, real_corpus) -> Path:
    out = tmp_path_factory.mktemp("idx") / "index"
    build_index(real_corpus, out, FAST, quiet=True)
    return out


def test_counts_chunks_and_provenance_trace_back_to_the_source(built, real_corpus):
    idx = Index.open(built, verify=True)
    docs = _docs(real_corpus)
    assert idx.num_docs == len(docs) and idx.manifest["faiss"]["factory"] == "Flat"
    lengths = [len(idx.tokenizer.encode(d["text"])) for d in docs]
    assert idx.num_tokens == sum(lengths)
    assert idx.num_chunks == sum(-(-n // 64) for n in lengths)
    assert len(idx.manifest["shards"]) >= 2  # shard_chunks=400 splits this corpus
    ids = np.arange(idx.num_chunks)
    for prov, text in zip(idx.provenance(ids), idx.chunk_text(ids), strict=True):
        doc = docs[prov["doc_index"]]
        assert prov["doc_id"] == doc["id"] and prov["line"] == prov["doc_index"] + 1
        assert doc["text"][prov["char_start"] : prov["char_end"]] == text
    # a document's last chunk is padded, never merged with the next document
    toks = idx.chunk_tokens(ids)
    doc_of = idx.chunk_doc(ids)
    last = np.flatnonzero(np.diff(doc_of) != 0)
    assert all((toks[i] == idx.tokenizer.pad_id).any() or lengths[doc_of[i]] % 64 == 0 for i in last)


def test_neighbours_are_chunk_plus_continuation_in_the_same_document(built):
    idx = Index.open(built)
    doc_of = idx.chunk_doc(np.arange(idx.num_chunks))
    inside = int(np.flatnonzero(doc_of[:-1] == doc_of[1:])[0])
    end = int(np.flatnonzero(doc_of[:-1] != doc_of[1:])[0])
    nb = idx.neighbour_tokens([inside, end])
    assert nb.shape == (2, 128)
    assert (nb[0, 64:] == idx.chunk_tokens([inside + 1])[0]).all()
    assert (nb[1, 64:] == idx.tokenizer.pad_id).all()
    assert idx.neighbour_text([inside])[0] == idx.chunk_text([inside])[0] + idx.chunk_text([inside + 1])[0]


def test_bm25_and_static_tiers_find_a_chunk_by_its_own_words(built):
    idx = Index.open(built)
    rng = np.random.default_rng(0)
    hits_bm25 = hits_static = 0
    texts = idx.chunk_text(np.arange(idx.num_chunks))
    everything = "\n".join(texts)  # stdlib docstrings repeat (int's, in many modules): pick unique chunks
    unique = [i for i, t in enumerate(texts) if len(t) > 120 and everything.count(t[40:100]) == 1]
    targets = rng.choice(unique, 20, replace=False)
    for cid, text in zip(targets, idx.chunk_text(targets), strict=True):
        ids, scores = idx.search_bm25(text, k=5)
        assert (np.diff(scores) <= 0).all()
        hits_bm25 += int(cid in ids)
        ids, scores = idx.search_static(text, k=5)
        hits_static += int(cid in ids)
    assert hits_bm25 >= 18 and hits_static >= 15
    I, D = idx.search_static_tokens(idx.chunk_tokens(targets), k=3)
    assert (I[:, 0] == targets).mean() >= 0.9 and np.allclose(D[:, 0], 1.0, atol=1e-3)
    I, D = idx.search_bm25_tokens(idx.chunk_tokens(targets), k=3)
    # BM25 scores neighbour text: the chunk before the target holds it as its continuation and may tie
    assert I.shape == (20, 3) and ((I[:, 0] == targets) | (I[:, 0] == targets - 1)).mean() >= 0.9


def test_bad_queries_and_ids(built):
    idx = Index.open(built)
    with pytest.raises(ValueError, match="query is empty"):
        idx.search_bm25("   ", k=3)
    with pytest.raises(ValueError, match="k=0"):
        idx.search_static("text", k=0)
    with pytest.raises(ValueError, match="chunk ids must be in"):
        idx.chunk_text([idx.num_chunks])
    with pytest.raises(ValueError, match="built without the dense tier"):
        idx.dense_vectors([0])


def test_info_cli_reports_sizes(built, capsys):
    assert main(["index", "info", str(built), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shards"] >= 2 and info["bytes_per_token"] > 0 and info["tiers"][0] == "bm25"
    assert main(["index", "info", str(built)]) == 0
    assert "| bytes per token |" in capsys.readouterr().out


def test_output_folder_that_holds_something_else_is_refused(tmp_path, real_corpus, built):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="holds no retro index"):
        build_index(real_corpus, tmp_path / "busy", FAST, quiet=True)
    assert (tmp_path / "busy" / "thesis.tex").read_text() == "precious"
    other = dataclasses.replace(FAST, shard_chunks=300)
    with pytest.raises(FileExistsError, match="already holds an index of another corpus or config"):
        build_index(real_corpus, built, other, quiet=True)
    assert main(["index", "build", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "x")]) == 2
    with pytest.raises(ValueError, match="not a retro index"):
        Index.open(tmp_path / "busy")


def test_rerun_of_a_finished_build_is_complete_and_touches_nothing(built, real_corpus, capsys):
    before = {p: p.stat().st_mtime_ns for p in built.rglob("*")}
    manifest = json.loads((built / "index.json").read_text())
    assert build_index(real_corpus, built, FAST, quiet=True) == manifest
    args = ["index", "build", str(real_corpus), "--out", str(built), "--set", "vocab_size=1000"]
    args += ["--set", "dense=off", "--set", "shard_chunks=400"]
    assert main(args) == 0
    assert "complete (same corpus and config); nothing to do" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in built.rglob("*")} == before


def test_mismatched_tokenizer_or_embedder_is_refused(tmp_path, built, real_corpus):
    from index.tokenizer import train_tokenizer

    other = train_tokenizer(
        [d["text"] for d in _docs(real_corpus)[:30]], tmp_path / "other.model", vocab_size=700
    )
    with pytest.raises(ValueError, match="not the tokenizer"):
        Index.open(built, tokenizer=other)
    with pytest.raises(ValueError, match="not the one"):
        Index.open(built, dense_model=str(tmp_path))  # an empty folder is another model
    with pytest.raises(ValueError, match="not the tokenizer this index was built with"):
        build_index(real_corpus, built, BuildConfig(tokenizer=str(other)), append=True, quiet=True)
    assert Index.open(built, tokenizer=built / "tokenizer.model").num_docs > 0


def test_damaged_index_does_not_open(tmp_path, built):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    tokens = copy / "shards" / "000001" / "tokens.npy"
    tokens.write_bytes(tokens.read_bytes()[:-64])
    with pytest.raises(ValueError, match="damaged"):
        Index.open(copy)
    (copy / "tokenizer.model").write_bytes(b"x")
    with pytest.raises(ValueError, match="tokenizer file was replaced"):
        Index.open(copy)
    manifest = json.loads((copy / "index.json").read_text())
    (copy / "index.json").write_text(json.dumps(dict(manifest, format_version=1)))
    with pytest.raises(ValueError, match="v1, this code reads retro-index v2"):
        Index.open(copy)
    manifest.pop("counts")  # valid JSON, a field missing: named, not a KeyError
    (copy / "index.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"index.json: missing or malformed field\(s\) counts"):
        Index.open(copy)


@pytest.mark.slow
def test_append_adds_shards_without_touching_old_ones(tmp_path, real_corpus):
    docs = _docs(real_corpus)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps(d) + "\n" for d in docs[:40]))
    b.write_text("".join(json.dumps(d) + "\n" for d in docs[40:]))
    out = tmp_path / "idx"
    build_index(a, out, FAST, quiet=True)
    before = Index.open(out)
    old = {k: v for k, v in tree_digest(out).items() if k.startswith("shards/")}
    # an append keeps the index's chunking and tiers whatever the command line says
    assert (
        main(["index", "build", str(b), "--out", str(out), "--append", "--quiet", "--chunk-len", "32"]) == 0
    )
    after = Index.open(out, verify=True)
    assert after.num_docs == len(docs) and after.num_chunks > before.num_chunks
    assert len(after.manifest["shards"]) > len(before.manifest["shards"])
    assert after.chunk_len == 64 and after.chunk_tokens(np.arange(after.num_chunks)).shape[1] == 64
    assert {k: v for k, v in tree_digest(out).items() if k in old} == old
    target = docs[55]["text"][:300]
    ids, _ = after.search_bm25(target, k=3)
    assert after.provenance(ids[:1])[0]["doc_id"] == docs[55]["id"]
    assert [c["path"] for c in after.manifest["corpora"]] == [str(a.resolve()), str(b.resolve())]


def _build_cmd(corpus: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pipelines.cli",
        "index",
        "build",
        str(corpus),
        "--out",
        str(out),
        "--quiet",
        "--vocab",
        "1000",
        "--no-dense",
        "--shard-chunks",
        "150",
    ]


def _fixed_queries(idx: Index) -> list:
    queries = ["decimal floating point arithmetic", "parse command line options", "compress data with bzip2"]
    return [
        (idx.search_bm25(q, 5)[0].tolist(), np.round(idx.search_static(q, 5)[1], 5).tolist()) for q in queries
    ]


@pytest.mark.slow
def test_killed_build_resumes_to_an_identical_index(tmp_path, real_corpus):
    """kill -9 at several moments; each rerun resumes; the end result equals an uninterrupted build."""
    reference = tmp_path / "reference"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    subprocess.run(_build_cmd(real_corpus, reference), check=True, env=env, capture_output=True)

    out = tmp_path / "killed"
    kills = 0
    for wait_for in ("build.json", "shards/000001", "shards/000004"):
        proc = subprocess.Popen(
            _build_cmd(real_corpus, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and not (out / wait_for).exists():
            time.sleep(0.02)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        if (out / "build.json").exists():  # killed mid-build: it must not open as an index
            with pytest.raises(ValueError, match="unfinished build"):
                Index.open(out)
    assert kills >= 2
    if (out / "build.json").exists() or not (out / "index.json").exists():
        subprocess.run(_build_cmd(real_corpus, out), check=True, env=env, capture_output=True)

    ref, got = Index.open(reference, verify=True), Index.open(out, verify=True)
    strip = lambda info: {k: v for k, v in info.items() if k != "path"}  # noqa: E731
    assert strip(got.info()) == strip(ref.info())
    assert _fixed_queries(got) == _fixed_queries(ref)
    assert tree_digest(out) == tree_digest(reference)
    assert not list(out.rglob("*.tmp"))


def test_ivf_factory_and_too_few_training_vectors(tmp_path, real_corpus):
    out = tmp_path / "ivf"
    build_index(
        real_corpus,
        out,
        BuildConfig(vocab_size=1000, dense="off", faiss_factory="IVF16,PQ16x4fs"),
        quiet=True,
    )
    idx = Index.open(out)
    assert idx.manifest["faiss"]["factory"] == "IVF16,PQ16x4fs"
    text = idx.chunk_text([7])[0]
    assert 7 in idx.search_static(text, k=10, nprobe=16)[0]
    with pytest.raises(ValueError, match="needs at least 65536 training vectors"):
        build_index(
            real_corpus,
            tmp_path / "big",
            BuildConfig(vocab_size=1000, dense="off", faiss_factory="IVF65536,Flat"),
            quiet=True,
        )


@pytest.mark.slow
def test_dense_tier_with_minilm(tmp_path, real_corpus, capsys):
    small = tmp_path / "small.jsonl"
    small.write_text(
        "".join(json.dumps({"id": d["id"], "text": d["text"][:1200]}) + "\n" for d in _docs(real_corpus)[:12])
    )
    out = tmp_path / "dense"
    build_index(small, out, BuildConfig(vocab_size=600), quiet=True)  # dense=auto: on for a corpus this small
    idx = Index.open(out, dense_model="all-MiniLM-L6-v2")
    assert idx.has_dense and idx.manifest["dense"]["dim"] == 384
    vecs = idx.dense_vectors(np.arange(idx.num_chunks))
    assert vecs.shape == (idx.num_chunks, 384) and np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-2)
    model = idx.dense_encoder()
    texts = idx.chunk_text([3, 10])
    q = model.encode(texts, normalize_embeddings=True)
    assert (np.argmax(vecs @ q.T, axis=0) == [3, 10]).all()
    dense = out / "shards" / "000000" / "dense.npy"  # truncated: named when the index opens
    dense.write_bytes(dense.read_bytes()[:-100])
    assert main(["index", "info", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{dense}: size" in err and "damaged" in err


@pytest.mark.slow
def test_build_over_mixed_folder_reports_bad_input_with_file_and_line(tmp_path, real_corpus, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = _docs(real_corpus)
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text(docs[0]["text"])
    (src / "sub" / "b.md").write_bytes(docs[1]["text"].encode() + b" \xff\xfe broken bytes")
    (src / "c.jsonl").write_text(json.dumps(docs[2]) + "\n{oops\n" + json.dumps({"id": 5}) + "\n")
    pq.write_table(pa.table({"text": [docs[3]["text"], docs[4]["text"]]}), src / "d.parquet")
    (src / "empty.txt").write_text("")
    (src / "image.md").write_bytes(b"\x00\x01\x02" * 100)
    out = tmp_path / "idx"
    assert main(["index", "build", str(src), "--out", str(out), "--vocab", "800", "--no-dense"]) == 0
    captured = capsys.readouterr()
    assert f"{src / 'c.jsonl'}:2: not JSON (line skipped)" in captured.err
    assert "| docs | 5 |" in captured.out
    warnings = Index.open(out).info()["input_warnings"]
    assert warnings["empty file (skipped)"] == 1 and warnings["binary file (skipped)"] == 1
    assert warnings["no string field 'text' (line skipped)"] == 1
    assert any(k.startswith("invalid UTF-8") for k in warnings)
    idx = Index.open(out)
    assert {p["doc_id"] for p in idx.provenance(range(idx.num_chunks))} == {
        "a.txt",
        "sub/b.md",
        docs[2]["id"],
        "d.parquet:1",
        "d.parquet:2",
    }


def test_bm25_terms_are_stemmed_words_and_bigrams():
    from index.bm25 import text_terms

    terms = text_terms("The special magic numbers for lemon-parrot is: 8429280.")
    assert "the" not in terms and "is" not in terms
    assert "number" in terms and "8429280" in terms  # stems; a number is one term, not digits
    assert "lemon parrot" in terms and "magic number" in terms
    assert text_terms("Numbers") == text_terms("number")


def test_bm25_compound_terms_tell_a_hyphenated_key_from_its_words_apart(tmp_path):
    """Filler that says "lemon parrot" in passing (as a 100M-token needle haystack does) matches the
    key's words and bigram; the hyphenated compound, a term of its own, finds the needle itself."""
    from index.bm25 import compound_terms, query_term_weights

    assert compound_terms("for lemon-parrot is: 1. x86-64 and read-only") == [
        "lemon-parrot",
        "x86-64",
        "read-onli",
    ]
    assert "lemon-parrot" not in query_term_weights("lemon-parrot", True, 0.5, compounds=False)
    rng = np.random.default_rng(0)
    adjs, nouns = ["amber", "quiet", "rapid", "pale"], ["falcon", "otter", "lynx", "heron"]
    docs = []
    for i in range(60):
        words = [
            f"The {rng.choice(adjs)} {rng.choice(nouns)} watches the {rng.choice(nouns)}." for _ in range(12)
        ]
        if i == 37:
            words.insert(6, "One of the special magic numbers for lemon-parrot is: 4242.")
        else:  # a distractor key that shares a word, next to a filler sentence with the other one
            words.insert(6, f"One of the special magic numbers for lemon-{rng.choice(nouns)} is: {i}.")
            words.insert(7, "The lemon parrot sleeps.")
        docs.append({"id": f"d{i}", "text": " ".join(words)})
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    question = "What is the special magic number for lemon-parrot?"
    found = {}
    for compounds in (True, False):
        out = tmp_path / f"idx-{compounds}"
        if compounds:
            build_index(tmp_path / "c.jsonl", out, BuildConfig(vocab_size=300, dense="off"), quiet=True)
        else:  # through the CLI: --set takes a BuildConfig field anywhere on the line
            cmd = ["index", "build", str(tmp_path / "c.jsonl"), "--out", str(out), "--vocab", "300"]
            assert main([*cmd, "--no-dense", "--quiet", "--set", "bm25_compounds=false"]) == 0
        idx = Index.open(out)
        assert idx.manifest["bm25"]["compounds"] is compounds
        ids, _ = idx.search_bm25(question, k=1)
        found[compounds] = "lemon-parrot is: 4242" in idx.neighbour_text(ids)[0]
    assert found[True] and not found[False]


def test_bm25_scores_merge_across_shards_like_one_shard(tmp_path, built, real_corpus):
    one = tmp_path / "one"
    tok = str(built / "tokenizer.model")
    build_index(real_corpus, one, BuildConfig(tokenizer=tok, dense="off", shard_chunks=10**6), quiet=True)
    many, single = Index.open(built), Index.open(one)
    assert len(many.manifest["shards"]) >= 3 and len(single.manifest["shards"]) == 1
    assert many.num_chunks == single.num_chunks
    for q in ["decimal floating point arithmetic", "parse command line options", "calendar month names"]:
        ids_m, sc_m = many.search_bm25(q, 10)
        ids_s, sc_s = single.search_bm25(q, 10)
        assert len(set(ids_m[:5]) & set(ids_s[:5])) >= 4
        assert np.allclose(sc_m[:5], sc_s[:5], rtol=0.05)


def test_bm25_finds_a_sentence_cut_by_a_chunk_boundary(built):
    """The chunk a sentence starts in is a BM25 hit for the whole sentence (its neighbour holds all of it)."""
    idx = Index.open(built)
    hits = tried = 0
    for cid in range(5, idx.num_chunks - 1, max(1, idx.num_chunks // 40)):
        if idx.chunk_doc([cid])[0] != idx.chunk_doc([cid + 1])[0]:
            continue
        a, b = idx.chunk_text([cid, cid + 1])
        span = a[-80:] + b[:80]  # straddles the boundary of cid and cid + 1
        ids, _ = idx.search_bm25(span, k=1)
        hits, tried = hits + int(span in idx.neighbour_text(ids)[0]), tried + 1
    assert tried >= 20 and hits >= 0.85 * tried  # stdlib docstrings repeat, so a few spans are ambiguous


def test_bm25_joins_a_word_cut_by_the_chunk_boundary(built):
    """A word split across two chunks is one BM25 term of the first chunk (its neighbour text)."""
    from index.bm25 import term_hashes, text_words

    idx = Index.open(built)
    shard = idx._shards[0]
    checked = 0
    for cid in range(len(shard.chunk_doc) - 1):
        if checked == 10 or shard.chunk_doc[cid] != shard.chunk_doc[cid + 1]:
            continue
        a, b = idx.chunk_text([cid, cid + 1])
        if not (a[-1:].isalpha() and b[:1].isalpha()):
            continue
        word = a.split()[-1] + b.split()[0]  # cut by the boundary: neither chunk holds it whole
        terms = text_words(word)
        if len(terms) != 1 or not word.isalpha():
            continue
        (col,) = shard.bm25.lookup(term_hashes(terms))
        assert col >= 0, word
        postings, _ = shard.bm25.postings(int(col))
        assert cid in postings, word
        checked += 1
    assert checked >= 5


def test_auto_factory_by_estimated_size():
    from index.shared import _auto_factory

    cfg = BuildConfig()
    assert _auto_factory(50_000, 10_000, cfg) == "Flat"
    assert _auto_factory(500_000, 200_000, cfg).endswith(",SQ8")
    assert (
        _auto_factory(15_000_000, 200_000, cfg) == "IVF4096,PQ32x4fs"
    )  # nlist capped by training vectors / 39


def test_generation_counts_appends_that_add_shards(tmp_path, built, real_corpus, capsys):
    """0 when built; an append of documents the index holds adds no shard and leaves it; one that
    adds shards makes it 1; a manifest from before the field reads as 0; `index info` prints it."""
    import shutil

    out = tmp_path / "idx"
    shutil.copytree(built, out)
    assert Index.open(out).generation == 0
    build_index(real_corpus, out, FAST, append=True, quiet=True)  # every document already there
    same = Index.open(out)
    assert same.generation == 0 and len(same.manifest["corpora"]) == 2
    new = tmp_path / "new.jsonl"
    new.write_text(
        json.dumps({"id": "n1", "text": "A note on lighthouse keepers and their lamps. " * 30}) + "\n"
    )
    build_index(new, out, FAST, append=True, quiet=True)
    grown = Index.open(out)
    assert grown.generation == 1 and len(grown.manifest["shards"]) == len(same.manifest["shards"]) + 1
    assert main(["index", "info", str(out)]) == 0
    assert "| generation | 1 |" in capsys.readouterr().out
    manifest = json.loads((out / "index.json").read_text())
    del manifest["generation"]
    (out / "index.json").write_text(json.dumps(manifest))
    assert Index.open(out).generation == 0 and Index.open(out).info()["generation"] == 0
