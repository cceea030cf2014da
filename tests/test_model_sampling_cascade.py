"""Sampling with retrieval through the ranker cascade, on a real tiny index (sentencepiece, BM25, FAISS,
MiniLM): what the retriever returns, when it is called, KV-cache parity, and `retro generate`.

Legend: M chunk length, K neighbours, R retrieved length (chunk + continuation), P prompt length.
"""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from index import Index
from pipelines.cascade import Cascade
from pipelines.cascade_config import CascadeConfig
from pipelines.cli import main
from retro.sampling import Sampler, cascade_retriever
from tests.conftest import build_small_index, stdlib_docs

# Small stage sizes keep each on-demand MiniLM pass short; every stage still runs.
CFG = CascadeConfig(n2=8, medium_ondemand_max=8)
SETS = ["--set", "n2=8", "--set", "medium_ondemand_max=8"]


@pytest.fixture(scope="module")
def index_path(tmp_path_factory):
    docs = [{"id": d["id"], "text": d["text"][:2500]} for d in stdlib_docs(limit=12)]
    return build_small_index(docs, tmp_path_factory.mktemp("sampling-cascade"), vocab_size=800)


@pytest.fixture(scope="module")
def idx(index_path):
    return Index.open(index_path)


@pytest.fixture(scope="module")
def model(idx):
    from retro.model import Retro
    from retro.model_config import model_config

    tok = idx.tokenizer
    cfg = model_config(
        "tiny",
        {
            "vocab_size": tok.vocab_size,
            "pad_id": tok.pad_id,
            "chunk_len": idx.chunk_len,
            "retrieved_len": 2 * idx.chunk_len,
            "cca_out_init": "normal",  # a non-zero CCA, so retrieval changes the logits compared
        },
    )
    return Retro(cfg, rngs=nnx.Rngs(0))


def _full_chunk(idx) -> int:
    """A chunk whose continuation is in the same document (no padding in its 2M tokens)."""
    for c in range(5, idx.num_chunks):
        if not np.any(idx.neighbour_tokens(np.array([c]))[0] == idx.tokenizer.pad_id):
            return c
    raise AssertionError("no chunk with a full continuation")


def _cascade_ids(cascade: Cascade, idx, chunk: np.ndarray, k: int) -> list[int]:
    """The cascade run directly on the chunk's decoded text: its top-k chunk ids."""
    res = cascade.search(idx.tokenizer.decode(chunk), k=k)
    return res.final_ids()[:k]


def test_cascade_retriever_returns_the_cascades_top_chunks(idx):
    log: list = []
    retrieve = cascade_retriever(idx, k=3, r=128, config=CFG, log=log)
    direct = Cascade(idx, CFG, encoder=retrieve.cascade.encoder)  # the same MiniLM, a separate cascade
    c = _full_chunk(idx)
    chunk = idx.chunk_tokens(np.array([c]))[0]
    out = retrieve(chunk)
    ids = _cascade_ids(direct, idx, chunk, 3)
    assert out.shape == (3, 128) and out.dtype == np.int32
    np.testing.assert_array_equal(out, idx.neighbour_tokens(np.array(ids)))
    assert log[0]["chunks"] == ids and ids[0] == c  # a chunk of the index finds itself first
    assert log[0]["query"] == idx.tokenizer.decode(chunk)
    lat = log[0]["latency_ms"]
    assert {"cheap", "medium", "expensive", "total"} <= set(lat) and all(v >= 0 for v in lat.values())
    assert len(log[0]["stages"]) == 3 and log[0]["stages"][0]["expensive"]["rank"] == 1
    # the same cascade object serves every call (models loaded once)
    cascade = retrieve.cascade
    retrieve(chunk)
    assert retrieve.cascade is cascade and log[1]["chunks"] == ids

    # R longer than chunk + continuation is pad-filled; shorter is cut
    pad = idx.tokenizer.pad_id
    long = cascade_retriever(idx, k=3, r=160, config=CFG, encoder=cascade.encoder)(chunk)
    np.testing.assert_array_equal(long[:, :128], out)
    assert np.all(long[:, 128:] == pad)

    # excluded documents never come back, and K are still returned
    doc = int(idx.chunk_doc(np.array([c]))[0])
    log2: list = []
    wide = CascadeConfig(n2=8, medium_ondemand_max=32)  # on demand, medium scores at most 32
    ex = cascade_retriever(
        idx, k=3, r=128, config=wide, exclude_docs={doc}, log=log2, encoder=cascade.encoder
    )
    ex(chunk)
    assert len(log2[0]["chunks"]) == 3
    assert doc not in idx.chunk_doc(np.array(log2[0]["chunks"])).tolist()

    # a chunk that decodes to nothing retrieves nothing
    blank = retrieve(np.full(idx.chunk_len, pad, np.int32))
    assert np.all(blank == pad) and log[-1]["chunks"] == []

    for bad_k in (0, idx.num_chunks + 1):
        with pytest.raises(ValueError, match="k"):
            cascade_retriever(idx, k=bad_k, r=128, config=CFG, encoder=cascade.encoder)


@pytest.mark.slow
def test_sampler_with_cascade_retriever_matches_full_forward(idx, model):
    """(a) one retrieval per completed chunk, (b) the cascade's top chunks, (c) KV cache == full forward."""
    m, k, r = idx.chunk_len, 2, model.cfg.retrieved_len
    log: list = []
    inner = cascade_retriever(idx, k=k, r=r, config=CFG, log=log)
    calls: list[tuple[np.ndarray, np.ndarray]] = []

    def retrieve(chunk):  # records what the sampler asked and got; the cascade itself runs for real
        nb = inner(chunk)
        calls.append((np.array(chunk), nb))
        return nb

    prompt = idx.neighbour_tokens(np.array([_full_chunk(idx)]))[0][:120].tolist()  # P = 120: ~2 chunks
    sampler = Sampler(model, retrieve, k=k)
    out = sampler.generate(prompt, max_new_tokens=20)
    seq = prompt + out["tokens"]
    fed = len(seq) - 1  # the last generated token is never fed
    completed = fed // m  # chunks whose last token was fed: 139 // 64 = 2
    assert completed == 2 and len(calls) == completed == sampler.calls["retrieve"] == len(log)
    direct = Cascade(idx, CFG, encoder=inner.cascade.encoder)
    for u, (chunk, nb) in enumerate(calls):
        np.testing.assert_array_equal(chunk, seq[u * m : (u + 1) * m])  # chunk u, in order
        ids = _cascade_ids(direct, idx, chunk, k)
        assert log[u]["chunks"] == ids
        np.testing.assert_array_equal(nb, idx.neighbour_tokens(np.array(ids))[:, :r])

    # the full forward over the whole sequence, given the neighbours the sampler retrieved
    c = -(-len(seq) // m)
    nb_full = np.full((1, c, k, r), model.cfg.pad_id, np.int32)
    for u, (_, nb) in enumerate(calls):
        nb_full[0, u] = nb
    full = np.asarray(nnx.jit(lambda mdl, t, n: mdl(t, n))(model, jnp.asarray([seq]), jnp.asarray(nb_full)))[
        0
    ]
    np.testing.assert_allclose(out["prompt_logits"], full[: len(prompt)], atol=2e-5)
    assert out["tokens"] == np.argmax(full[len(prompt) - 1 : -1], axis=-1).tolist()


@pytest.mark.slow
def test_generate_cli_with_cascade_end_to_end(index_path, idx, tmp_path, capsys):
    from retro.data import precompute_neighbours

    precompute_neighbours(index_path, tmp_path / "nb", k=2, quiet=True)
    run = tmp_path / "run"
    args = [f"data={tmp_path / 'nb'}", f"out={run}", "preset=tiny", "seq_len=128", "batch_size=2"]
    assert main(["train", *args, "steps=2", "warmup_steps=1", "--quiet"]) == 0
    prompt = idx.chunk_text(np.array([_full_chunk(idx)]))[0]
    base = ["generate", str(run), "--prompt", prompt, "--index", str(index_path)]
    capsys.readouterr()
    rc = main(
        [*base, "--retriever", "cascade", *SETS, "--max-new-tokens", "72", "--out", str(tmp_path / "g")]
    )
    assert rc == 0
    stdout = capsys.readouterr().out
    gen = json.loads((tmp_path / "g" / "generation.json").read_text())
    assert stdout.strip() == gen["completion"].strip()
    assert gen["retriever"] == "cascade" and gen["k"] == 2 and len(gen["tokens"]) == 72
    assert gen["cascade_config"]["n2"] == 8 and gen["cascade_config"]["medium_ondemand_max"] == 8
    n_prompt = len(idx.tokenizer.encode(prompt))
    boundaries = (n_prompt + 72 - 1) // idx.chunk_len
    assert len(gen["retrieved"]) == len(gen["evidence"]) == len(gen["retrieval"]) == boundaries >= 2
    assert all(len(ids) == 2 for ids in gen["retrieved"])
    assert [e["chunk"] for e in gen["evidence"][0]] == gen["retrieved"][0]
    first = gen["retrieval"][0]
    assert first["chunks"] == gen["retrieved"][0] and first["latency_ms"]["total"] > 0
    assert first["query"] == idx.tokenizer.decode(idx.tokenizer.encode(prompt)[: idx.chunk_len])

    # cascade is the default; k is one value: -k, or --set k=N (default 2)
    from retro.cli import _retriever_choice

    parser_args = _parse([*base])
    assert _retriever_choice(parser_args, idx)[0] == "cascade" and _retriever_choice(parser_args, idx)[2] == 2
    assert _retriever_choice(_parse([*base, "--retriever", "static"]), idx) == ("static", None, 2)
    assert _retriever_choice(_parse([*base, "--set", "k=3"]), idx)[2] == 3
    assert _retriever_choice(_parse([*base, "-k", "3"]), idx)[1].k == 3

    # bad values: exit 2, one line naming the flag or key
    for extra, needle in [
        (["--retriever", "dense"], "--retriever 'dense'"),
        (["--retriever", "bm25", "--set", "n2=8"], "--set"),
        (["--set", "nosuch=1"], "nosuch"),
        (["--set", "n2=zero"], "n2"),
        (["-k", "0"], "-k"),
        (["-k", "3", "--set", "k=4"], "contradicts"),
    ]:
        capsys.readouterr()
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, (extra, err)


def _parse(argv: list[str]):
    from pipelines.cli import build_parser

    return build_parser().parse_args(argv)
