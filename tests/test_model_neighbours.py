"""Neighbour precompute through a real (tiny) index, and the index retriever used for sampling."""

import numpy as np
import pytest

from retro.data import NeighbourStore, precompute_neighbours


@pytest.fixture(scope="module")
def built(real_corpus, tmp_path_factory):
    from index.build import BuildConfig, build_index

    out = tmp_path_factory.mktemp("model-idx") / "idx"
    build_index(real_corpus, out, BuildConfig(vocab_size=1000, dense="off"), quiet=True)
    return out


def test_precompute_excludes_same_document_and_heldout(built, tmp_path):
    from index import Index

    meta = precompute_neighbours(built, tmp_path / "nb", k=2, heldout_frac=0.2, quiet=True)
    store = NeighbourStore(tmp_path / "nb")
    idx = Index.open(built)
    n = idx.num_chunks
    assert meta["num_chunks"] == n and store.neighbours.shape == (n, 2)
    np.testing.assert_array_equal(store.chunks[:5], idx.chunk_tokens(np.arange(5)))
    nbr = np.asarray(store.neighbours)
    found = nbr >= 0
    assert found.mean() > 0.5
    own = np.repeat(np.asarray(store.doc)[:, None], 2, axis=1)
    assert not np.any((np.asarray(store.doc)[np.maximum(nbr, 0)] == own) & found)
    assert not np.any(store.heldout[np.asarray(store.doc)[np.maximum(nbr, 0)]] & found)
    # neighbour tokens = the index's chunk + continuation
    ids = nbr[found][:4]
    np.testing.assert_array_equal(
        store.neighbour_tokens(ids[:, None], 2 * idx.chunk_len)[:, 0], idx.neighbour_tokens(ids)
    )
    tok, nb = next(store.batches("train", 2, 4 * idx.chunk_len, 2, 2 * idx.chunk_len))
    assert tok.shape == (2, 256) and nb.shape == (2, 4, 2, 128)


def test_index_retriever_shapes(built):
    from index import Index
    from retro.sampling import index_retriever

    idx = Index.open(built)
    log = []
    retrieve = index_retriever(idx, k=3, r=128, log=log)
    out = retrieve(idx.chunk_tokens(np.array([5]))[0])
    assert out.shape == (3, 128) and out.dtype == np.int32
    assert log and log[0][0] == 5  # a chunk finds itself first (no exclusion asked)
    retrieve = index_retriever(idx, k=3, r=128, exclude_docs={int(idx.chunk_doc(np.array([5]))[0])}, log=log)
    retrieve(idx.chunk_tokens(np.array([5]))[0])
    assert 5 not in log[-1]


@pytest.mark.slow
def test_generate_cli_end_to_end(built, tmp_path):
    """precompute -> train 2 steps -> `retro generate` retrieving from the index at chunk boundaries."""
    import json

    from pipelines.cli import main

    precompute_neighbours(built, tmp_path / "nb", k=2, quiet=True)
    rc = main(
        [
            "train",
            f"data={tmp_path / 'nb'}",
            f"out={tmp_path / 'run'}",
            "preset=tiny",
            "seq_len=128",
            "batch_size=2",
            "steps=2",
            "warmup_steps=1",
            "--quiet",
        ]
    )
    assert rc == 0
    rc = main(
        [
            "generate",
            str(tmp_path / "run"),
            "--prompt",
            "The module provides functions " * 4,
            "--index",
            str(built),
            "--max-new-tokens",
            "72",
            "--out",
            str(tmp_path / "gen"),
        ]
    )
    assert rc == 0
    gen = json.loads((tmp_path / "gen" / "generation.json").read_text())
    assert len(gen["tokens"]) == 72
    assert len(gen["retrieved"]) >= 1 and len(gen["evidence"]) == len(gen["retrieved"])
