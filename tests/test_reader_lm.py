"""The reader as a RETRO LM (retro/reader_lm.py): LM samples from a real index, their layout, bpb.

Real components: a real index of real text (stdlib docstrings), BM25 neighbours, the shipped reader's
tokenizer and network."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import build_small_index, stdlib_docs

ASSETS = Path(__file__).resolve().parent.parent / "retro" / "assets" / "reader"


@pytest.fixture(scope="module")
def lm_data(tmp_path_factory):
    """An index of 30 stdlib documents plus a copy of one under another id, and LM samples made from
    it with the shipped reader's tokenizer."""
    from retro.reader_lm import LMDataConfig, make

    folder = tmp_path_factory.mktemp("lm")
    docs = stdlib_docs(limit=30)
    docs.append({"id": "copy-of-" + docs[0]["id"], "text": "A copy. " + docs[0]["text"]})
    idx = build_small_index(docs, folder, vocab_size=2000)
    cfg = LMDataConfig(
        corpus=str(folder / "corpus.jsonl"), index=str(idx), train=24, heldout=8, heldout_pct=20, exclude=""
    )
    tok_bytes = (ASSETS / "tokenizer.model").read_bytes()
    counts = make(cfg, tok_bytes, folder, m=32)
    return folder, docs, idx, tok_bytes, counts


def test_samples_are_windows_of_one_document_with_neighbours_from_others(lm_data):
    from index.store import Index
    from retro.reader_lm import LEAK, shingles, split_of

    folder, docs, idx, _, counts = lm_data
    assert counts == {"train": 24, "heldout": 8}
    text_of = {d["id"]: d["text"] for d in docs}
    index = Index.open(idx)
    own_texts = set(index.neighbour_text(list(range(index.num_chunks))))
    for split in ("train", "heldout"):
        rows = [json.loads(x) for x in open(folder / f"lm-{split}.jsonl")]
        assert len(rows) == counts[split]
        for r in rows:
            assert split_of(r["doc"], 20) == split  # documents never cross the split
            assert len(r["ids"]) == 4 * 32 and len(r["neighbours"]) == 3  # the last chunk's are unused
            own = shingles(text_of[r["doc"]])
            for chunk in r["neighbours"]:
                for t in chunk:
                    assert t in own_texts  # index text: chunk + continuation
                    sh = shingles(t)
                    assert len(sh & own) <= LEAK * len(sh)  # not the document, nor a copy of it
    assert any(t for r in rows for c in r["neighbours"] for t in c)


def test_layout_chunk_c_neighbours_condition_chunk_c_plus_one(lm_data):
    from retro.reader_layout import PAD, ReaderConfig, ReaderTokenizer
    from retro.reader_lm import LMSamples

    folder, _, _, tok_bytes, _ = lm_data
    tok = ReaderTokenizer(tok_bytes)
    rcfg = ReaderConfig.from_dict(json.loads((ASSETS / "config.json").read_text()))
    s = LMSamples(folder / "lm-train.jsonl", tok, tok_bytes, rcfg, k=3, seed=0)
    tk, tg, w, nb = s.example(0)
    ids, nbs = s.items[0]
    assert tk.shape == (127,) and (tk == ids[:-1]).all() and (tg == ids[1:]).all() and w.sum() == 127
    assert nb.shape == (3, 3, rcfg.retrieved_len)  # C = L // M = 3 chunks, each with its own neighbours
    v = rcfg.vocab_size
    for c in range(3):
        for j, n in enumerate(nbs[c][:3]):
            assert (nb[c, j, : len(n)] % v == n).all()
            marked = nb[c, j, : len(n)] >= v  # exact-match flags: tokens of the chunk that retrieved them
            assert (np.isin(np.asarray(n)[marked], ids[c * 32 : (c + 1) * 32])).all()
    assert (s.example(0, off=True)[3] == PAD).all()
    with pytest.raises(ValueError, match="another reader tokenizer"):
        LMSamples(folder / "lm-train.jsonl", tok, b"not the tokenizer", rcfg, k=3, seed=0)


@pytest.mark.slow
def test_bpb_reads_the_neighbours(lm_data):
    """The shipped reader's bpb is finite and changes when its neighbours change (retrieval is read),
    but not when neighbours are switched off twice (deterministic)."""
    from retro.reader import Reader
    from retro.reader_lm import LMSamples, bpb

    folder, _, _, tok_bytes, _ = lm_data
    reader = Reader.load()
    s = LMSamples(folder / "lm-heldout.jsonl", reader.tok, tok_bytes, reader.cfg, k=3, seed=0)
    a = bpb(reader.net, s, reader.tok, batch=4)
    b = bpb(reader.net, s, reader.tok, modes=("off",), batch=4)
    assert all(np.isfinite(v) and v > 0 for v in a.values())
    assert a["off"] == b["off"] and a["on"] != a["off"]
