"""What a new user meets building and keeping an index (issue 14, items 3, 6, 7, 10): a one-line file
trains a real vocabulary and a poor one is a warning; every phase is named and a resumed build says
so; a rejected command never blocks the corrected one; `index info` counts only the index, `--verify`
gives a verdict, and an append skips documents the index already holds. Real builds, the real CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from index import Index
from index.dedup import DUPLICATE
from index.tokenizer import Tokenizer, _pieces, train_tokenizer
from pipelines.cli import main
from tests.conftest import stdlib_docs

ARGS = ["--vocab", "600", "--no-dense", "--shard-chunks", "40"]


def _build(corpus: Path, out: Path, *extra: str) -> int:
    return main(["index", "build", str(corpus), "--out", str(out), *ARGS, *extra])


def _write_jsonl(path: Path, docs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return [{"id": d["id"], "text": d["text"][:2500]} for d in stdlib_docs(limit=12)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, docs) -> Path:
    """a.jsonl: 8 documents; b.jsonl: 4 others."""
    folder = tmp_path_factory.mktemp("h14-corpus")
    _write_jsonl(folder / "a.jsonl", docs[:8])
    _write_jsonl(folder / "b.jsonl", docs[8:])
    return folder


@pytest.fixture(scope="module")
def small(tmp_path_factory, corpus) -> Path:
    out = tmp_path_factory.mktemp("h14-idx") / "idx"
    assert _build(corpus / "a.jsonl", out, "--quiet") == 0
    return out


# -- item 3: a single-line file ---------------------------------------------------------------------
def test_a_single_line_text_trains_as_large_a_vocabulary_as_the_same_text_in_lines(tmp_path):
    text = "\n".join(d["text"] for d in stdlib_docs(limit=20))
    one_line = text.replace("\n", " ")
    pieces = list(_pieces(one_line, 1024))
    assert "".join(pieces) == one_line and max(map(len, pieces)) <= 1024
    assert sum(p.endswith((".", "!", "?")) for p in pieces) > len(pieces) / 2  # cut at sentence ends
    kw = {"vocab_size": 3000, "per_doc_chars": 10**7}
    lines = Tokenizer(train_tokenizer([text], tmp_path / "lines.model", **kw)).vocab_size
    single = Tokenizer(train_tokenizer([one_line], tmp_path / "one.model", **kw)).vocab_size
    assert lines > 2000 and single >= 0.8 * lines


def test_a_vocabulary_far_below_the_request_is_a_warning_in_the_summary_and_info(tmp_path, docs, capsys):
    text = tmp_path / "one-line.txt"
    text.write_text(" ".join(d["text"].replace("\n", " ") for d in docs[:3]))  # no newline at all
    out = tmp_path / "idx"
    assert main(["index", "build", str(text), "--out", str(out), "--vocab", "4000", "--no-dense"]) == 0
    got = capsys.readouterr()
    vocab = Index.open(out).tokenizer.vocab_size
    assert 400 < vocab < 2000  # the whole text trained it, not its first 1024 characters
    assert f"warning: tokenizer vocabulary {vocab:,} is far below the 4,000 requested" in got.err
    assert re.search(r"\| warning \| tokenizer vocabulary .* far below", got.out)  # the build summary
    assert main(["index", "info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"][0].startswith(f"tokenizer vocabulary {vocab:,}")
    assert main(["tokenizer", "train", str(text), "--vocab", "4000", "--out", str(tmp_path / "t.model")]) == 0
    err = capsys.readouterr().err
    assert "training the tokenizer (vocab 4,000)" in err and "warning: tokenizer vocabulary" in err


# -- item 6: named phases, a resumed build says so ----------------------------------------------------
def _interrupt(out: Path, stop: threading.Event) -> None:
    """Ctrl-C this process once the build at `out` has finished two shards (a real interruption).
    Sent again each second until the build returns: Python drops a KeyboardInterrupt that lands in a
    garbage-collector callback, and then the build would finish."""
    while not stop.is_set():
        if (out / "shards" / "000001" / "shard.json").is_file() and not (out / "index.json").exists():
            os.kill(os.getpid(), signal.SIGINT)
            stop.wait(1.0)
        else:
            time.sleep(0.005)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # a Ctrl-C dropped in gc
def test_every_phase_is_named_and_a_resumed_build_says_how_much_was_done(
    tmp_path, corpus, capsys, monkeypatch
):
    monkeypatch.setenv("RETRO_CACHE", str(tmp_path / "cache"))  # so the static table is really built
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job ignores it
    out, stop = tmp_path / "idx", threading.Event()
    watcher = threading.Thread(target=_interrupt, args=(out, stop), daemon=True)
    watcher.start()
    try:
        rc = _build(corpus / "a.jsonl", out, "--shard-chunks", "8")
    finally:
        stop.set()
        watcher.join()
        signal.signal(signal.SIGINT, handler)
    err = capsys.readouterr().err
    assert rc == 130 and (out / "build.json").is_file()
    for phase in (
        "reading a sample of a.jsonl",
        "training the tokenizer (vocab_size 600",
        "static table: vocabulary pieces through the dense model",
        "FAISS template: Flat from",
        "index a.jsonl",
        "writing shard 000000: static ANN + BM25",
        "writing shard 000001: checksums",
    ):
        assert phase in err, phase
    assert "Batches" not in err  # sentence-transformers' unlabelled bar
    assert _build(corpus / "a.jsonl", out, "--shard-chunks", "8") == 0
    err = capsys.readouterr().err
    done = re.search(r"resuming the build in .*: (\d+) of about (\d+) shards done \(([\d,]+) documents", err)
    assert done and int(done[1]) >= 2 and int(done[2]) >= int(done[1]), err
    assert Index.open(out, verify=True).num_docs == 8


# -- item 7: a rejected build does not block the corrected command ------------------------------------
def test_a_rejected_build_does_not_block_the_corrected_command(tmp_path, corpus, capsys):
    out = tmp_path / "vocab"
    assert main(["index", "build", str(corpus / "a.jsonl"), "--out", str(out), "--vocab", "5"]) == 2
    assert "vocab_size=5 is not allowed: must be between 64 and" in capsys.readouterr().err
    assert not (out / "build.json").exists()
    assert _build(corpus / "a.jsonl", out, "--quiet") == 0
    assert capsys.readouterr().err == ""  # --quiet: no phase lines or bars

    (tmp_path / "empty").mkdir()
    out = tmp_path / "empty-corpus"
    assert _build(tmp_path / "empty", out, "--quiet") == 2
    assert "no readable documents" in capsys.readouterr().err and not (out / "build.json").exists()
    assert _build(corpus / "a.jsonl", out, "--quiet") == 0

    # one that fails after it began: build.json stays, but with no finished shard a new command replaces it
    out = tmp_path / "factory"
    assert _build(corpus / "a.jsonl", out, "--factory", "IVF4096,Flat", "--quiet") == 2
    assert "needs at least 4096 training vectors" in capsys.readouterr().err
    assert (out / "build.json").is_file()
    assert _build(corpus / "a.jsonl", out) == 0
    assert "replacing an unfinished build there that had no finished shard" in capsys.readouterr().err
    assert Index.open(out, verify=True).num_docs == 8


# -- item 10: bookkeeping -----------------------------------------------------------------------------
def test_info_counts_the_index_only_not_what_a_killed_append_left(tmp_path, small):
    idx = tmp_path / "idx"
    shutil.copytree(small, idx)
    before = Index.open(idx).info()
    (idx / "shards" / ".000099.tmp").mkdir()  # a shard being written when the append was killed
    (idx / "shards" / ".000099.tmp" / "tokens.npy").write_bytes(b"x" * 500_000)
    shutil.copytree(idx / "shards" / "000000", idx / "shards" / "000098")  # finished, not yet listed
    (idx / ".index.json.tmp").write_text("{}")
    (idx / "build.json").write_text("{}")
    after = Index.open(idx).info()
    assert (after["bytes_on_disk"], after["bytes_per_token"]) == (
        before["bytes_on_disk"],
        before["bytes_per_token"],
    )


def test_verify_prints_a_verdict(tmp_path, small, capsys):
    shards = len(json.loads((small / "index.json").read_text())["shards"])
    assert main(["index", "info", str(small), "--verify"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"verified: {shards} shards, \d+ files, every sha256 matches: OK\n$", out)
    assert main(["index", "info", str(small), "--verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verified"]["shards"] == shards
    damaged = tmp_path / "idx"
    shutil.copytree(small, damaged)
    template = damaged / "faiss.template"
    raw = template.read_bytes()
    template.write_bytes(raw[:-1] + bytes([raw[-1] ^ 0xFF]))  # same size, one byte changed
    assert main(["index", "info", str(damaged), "--verify"]) == 2
    assert "faiss.template" in capsys.readouterr().err


def test_an_append_skips_documents_the_index_already_holds(tmp_path, small, corpus, docs, capsys):
    idx = tmp_path / "idx"
    shutil.copytree(small, idx)
    shards = len(Index.open(idx).manifest["shards"])
    append = ["index", "build", "--out", str(idx), "--append", "--quiet"]
    # the same corpus again: nothing added, every document reported; --vocab cannot change the tokenizer
    assert main([*append, str(corpus / "a.jsonl"), "--vocab", "5000"]) == 0
    assert "ignored: vocab_size=5000 (the index has 600)" in capsys.readouterr().err
    index = Index.open(idx, verify=True)
    assert (index.num_docs, len(index.manifest["shards"])) == (8, shards)
    assert index.info()["input_warnings"] == {DUPLICATE: 8}
    # old and new documents: only the new ones are added, and found where they are
    mixed = _write_jsonl(tmp_path / "mixed.jsonl", docs[:3] + docs[8:])
    assert main([*append, str(mixed)]) == 0
    index = Index.open(idx, verify=True)
    assert index.num_docs == 12
    ids, _ = index.search_bm25(docs[10]["text"][:300], k=1)
    assert index.provenance(ids)[0]["doc_id"] == docs[10]["id"]
    # asked to, it adds them again
    assert main([*append, str(corpus / "b.jsonl"), "--keep-duplicates"]) == 0
    assert Index.open(idx).num_docs == 16


def test_shards_from_before_document_digests_are_checked_by_their_decoded_text(tmp_path, small, corpus):
    idx = tmp_path / "idx"
    shutil.copytree(small, idx)
    for meta_path in (idx / "shards").glob("*/shard.json"):
        meta = json.loads(meta_path.read_text())
        del meta["files"]["doc_hash.npy"]
        meta_path.write_text(json.dumps(meta))
        (meta_path.parent / "doc_hash.npy").unlink()
    assert main(["index", "build", str(corpus / "a.jsonl"), "--out", str(idx), "--append", "--quiet"]) == 0
    assert Index.open(idx, verify=True).num_docs == 8
