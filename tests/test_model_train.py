"""Training loop, checkpoints (orbax round trip, resume), RETROfit freezing and the neighbour store."""

import dataclasses
import json

import jax
import numpy as np
import pytest
from flax import nnx

from retro import checkpoint as ckpt
from retro.data import NeighbourStore, filter_neighbours, heldout_docs, write_store
from retro.evaluate import leakage_per_chunk, paired_bpb_difference, read_per_chunk
from retro.train import TrainConfig, train

M, V = 4, 61


def make_store(path, n_docs=64, chunks_per_doc=8, seed=0):
    """Sister documents (2i, 2i+1) share their text; each chunk's neighbour is the sister's chunk,
    so retrieval is useful. Token 0 is padding."""
    rng = np.random.default_rng(seed)
    chunks, doc, nbr = [], [], []
    for d in range(0, n_docs, 2):
        text = rng.integers(1, V, (chunks_per_doc, M))
        for dd in (d, d + 1):
            for c in range(chunks_per_doc):
                chunks.append(text[c])
                doc.append(dd)
    chunks, doc = np.array(chunks), np.array(doc)
    for i in range(len(chunks)):
        sister = i + chunks_per_doc if doc[i] % 2 == 0 else i - chunks_per_doc
        nbr.append([sister, rng.integers(0, len(chunks))])
    meta = {"pad_id": 0, "vocab_size": V, "num_docs": n_docs, "heldout_frac": 0.1}
    return write_store(path, chunks, doc, np.array(nbr), np.full(len(chunks), 3 * M), meta)


def cfg_for(tmp_path, name, store, **kw):
    base = dict(
        data=str(store),
        out=str(tmp_path / name),
        preset="tiny",
        seq_len=16,
        batch_size=8,
        steps=40,
        lr=3e-3,
        warmup_steps=5,
        log_every=5,
        ckpt_every=20,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("store"))


def test_store_and_loader(store):
    s = NeighbourStore(store)
    tok, nb = next(s.batches("train", 4, 16, 2, 8))
    assert tok.shape == (4, 16) and nb.shape == (4, 4, 2, 8) and tok.dtype == np.int32
    # neighbour = chunk + the next chunk of the same document; pad after a document's last chunk
    last = 7  # chunk 7 is the last of document 0
    got = s.neighbour_tokens(np.array([[0, last, -1]]), 8)[0]
    np.testing.assert_array_equal(got[0], np.concatenate([s.chunks[0], s.chunks[1]]))
    np.testing.assert_array_equal(got[1], np.concatenate([s.chunks[last], np.zeros(M)]))
    np.testing.assert_array_equal(got[2], 0)
    assert set(s.split_ids("train")).isdisjoint(s.split_ids("heldout"))


def test_filter_neighbours_drops_same_document_and_heldout():
    doc = np.array([0, 0, 1, 1, 2, 2])
    banned = np.array([False, True, False])  # document 1 is held out
    cand = np.array([[1, 2, 4, 5, -1], [0, 1, -1, -1, -1]])
    out = filter_neighbours(cand, np.array([0, 0]), doc, banned, 2)
    np.testing.assert_array_equal(out, [[4, 5], [-1, -1]])
    assert heldout_docs(1000, 0.1).mean() == pytest.approx(0.1, abs=0.03)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, store):
    tmp_path = tmp_path_factory.mktemp("trained")
    return tmp_path, train(cfg_for(tmp_path, "run", store, steps=40), quiet=True)


@pytest.mark.slow
def test_training_loss_falls_and_resume(trained, store):
    tmp_path, res = trained
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["loss"] < lines[0]["loss"] - 0.3
    assert res["tokens_per_s"] > 0 and 0 < res["mfu"] < 2
    assert (tmp_path / "run" / "config.yaml").is_file() and (tmp_path / "run" / "results.json").is_file()
    res2 = train(cfg_for(tmp_path, "run", store, steps=45), quiet=True)
    assert res2["start_step"] == 40 and res2["step"] == 45


@pytest.mark.slow
def test_checkpoint_round_trip(trained, store):
    tmp_path, _ = trained
    model, step = ckpt.load_model(tmp_path / "run")
    assert step >= 40
    _, params = ckpt.restore_params(tmp_path / "run")
    saved = jax.tree.leaves(params)
    loaded = jax.tree.leaves(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    assert len(saved) == len(loaded)
    for a, b in zip(saved, loaded, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    again, _ = ckpt.load_model(tmp_path / "run")
    tok, nb = next(NeighbourStore(store).batches("heldout", 2, 16, 2, 8))
    np.testing.assert_array_equal(np.asarray(model(tok, nb)), np.asarray(again(tok, nb)))


@pytest.mark.slow
def test_retrofit_trains_only_encoder_and_cca(tmp_path, store):
    train(cfg_for(tmp_path, "base", store, steps=4, retrieval=False, model={"cca_layers": []}), quiet=True)
    _, base = ckpt.restore_params(tmp_path / "base")
    res = train(cfg_for(tmp_path, "fit", store, steps=4, retrofit_from=str(tmp_path / "base")), quiet=True)
    assert res["trainable_params"] < res["params"]
    _, fit = ckpt.restore_params(tmp_path / "fit")
    np.testing.assert_array_equal(
        np.asarray(fit["embed"]["embedding"]), np.asarray(base["embed"]["embedding"])
    )
    np.testing.assert_array_equal(
        np.asarray(fit["blocks"]["0"]["attn"]["wq"]["kernel"]),
        np.asarray(base["blocks"]["0"]["attn"]["wq"]["kernel"]),
    )
    assert "encoder" in fit and "cca" in fit["blocks"]["1"]


@pytest.mark.parametrize("cca_out_init", [pytest.param("zero", marks=pytest.mark.slow), "normal"])
def test_retrieval_lr_mult_scales_only_encoder_and_cca_updates(store, tmp_path, cca_out_init):
    """With retrieval_lr_mult=3 the encoder / CCA parameters move exactly 3x as far as with 1.0 from the
    same init on the same batch, and every decoder parameter moves identically."""
    from retro.model import Retro
    from retro.train import is_retrieval_path, make_optimizer, make_train_step, resolve_model_config

    moved = {}
    for mult in (1.0, 3.0):
        cfg = cfg_for(tmp_path, "m", store, warmup_steps=1, retrieval_lr_mult=mult)
        cfg = dataclasses.replace(cfg, model={"cca_out_init": cca_out_init})
        mcfg = resolve_model_config(cfg, NeighbourStore(store))
        graphdef, tp, fp = nnx.split(Retro(mcfg, rngs=nnx.Rngs(0)), nnx.Param, ...)
        p0, frozen = nnx.to_pure_dict(tp), nnx.to_pure_dict(fp)
        keep = jax.tree.map(np.array, p0)
        tx = make_optimizer(cfg)
        step = make_train_step(graphdef, tx, mcfg.pad_id, True)
        tok, nb = next(NeighbourStore(store).batches("train", 4, 16, 2, mcfg.retrieved_len))
        params, state = p0, tx.init(p0)
        for _ in range(2):  # the warmup's first step has lr 0; the second has the peak lr
            params, state, _, _ = step(params, state, frozen, tok, nb)
        moved[mult] = jax.tree.map(lambda a, b: np.asarray(a) - b, params, keep)
    flat1 = jax.tree_util.tree_flatten_with_path(moved[1.0])[0]
    flat3 = jax.tree.leaves(moved[3.0])
    n_ret = 0
    for (path, d1), d3 in zip(flat1, flat3, strict=True):
        if is_retrieval_path(path):
            n_ret += 1
            np.testing.assert_allclose(d3, 3.0 * d1, rtol=1e-3, atol=1e-6)  # float32 rounding of p + u
        else:
            np.testing.assert_array_equal(d3, d1)
    assert n_ret > 0
    assert max(np.abs(d).max() for (p, d) in flat1 if is_retrieval_path(p)) > 1e-4  # they did move
    with pytest.raises(ValueError, match="retrieval_lr_mult"):
        cfg_for(tmp_path, "bad", store, retrieval_lr_mult=0.0)


@pytest.mark.slow
def test_eval_lm_cli_writes_results(trained, store, tmp_path):
    from pipelines.cli import build_parser, main

    run_dir, _ = trained
    out = tmp_path / "eval"
    rc = main(
        [
            "eval",
            "lm",
            str(run_dir / "run"),
            "--data",
            str(store),
            "--seq-len",
            "16",
            "--batch-size",
            "4",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    modes = {r["retrieval"]: r for r in res["rows"]}
    assert set(modes) == {"on", "off"} and res["run_info"]["git_hash"]
    assert all(np.isfinite(r["bpb"]) and np.isfinite(r["bpb_filtered"]) for r in res["rows"])
    # sister documents make neighbours leak the whole next chunk: the filter keeps few chunks
    assert res["chunks_filtered"] < res["chunks_scored"]
    # `eval lm` and `eval niah` share one group
    parser = build_parser()
    assert parser.parse_args(["eval", "lm", "r", "--data", "d"]).func.__name__ == "cmd_eval_lm"
    assert (
        "niah" in parser._subparsers._group_actions[0].choices["eval"]._subparsers._group_actions[0].choices
    )
    assert main(["train", "steps=abc", "data=x"]) == 2  # bad input: one-line error, exit 2
    # the paired comparison reads per_chunk.jsonl back and reproduces results.json's bpb
    nats, nbytes, leak = read_per_chunk(out)
    on, off = (next(v for k, v in nats.items() if k.endswith(m)) for m in (":on", ":off"))
    d = paired_bpb_difference(on, off, nbytes, resamples=200)
    assert d["a"] == pytest.approx(modes["on"]["bpb"]) and d["b"] == pytest.approx(modes["off"]["bpb"])
    assert d["lo"] <= d["diff"] <= d["hi"] and d["diff"] == pytest.approx(d["a"] - d["b"])
    keep = leak <= res["alpha"]
    if keep.any():
        assert paired_bpb_difference(on, off, nbytes, keep, 50)["a"] == pytest.approx(
            modes["on"]["bpb_filtered"]
        )
    same = paired_bpb_difference(on, on, nbytes, resamples=50)
    assert same["diff"] == same["lo"] == same["hi"] == 0.0
    with pytest.raises(ValueError, match="shapes"):
        paired_bpb_difference(on, off[:1], nbytes)
    with pytest.raises(ValueError, match="per_chunk.jsonl"):
        read_per_chunk(tmp_path)


def test_fused_readout_xent_matches_softmax_cross_entropy():
    """readout_xent (blocked, gradient computed in the forward pass) equals the plain readout + optax
    cross-entropy in value and in both gradients, padding rows (weight 0) included, for any block size."""
    import jax.numpy as jnp
    import optax

    from retro.layers import readout_xent

    rng = np.random.default_rng(0)
    n, d, v = 37, 8, 29
    x = jnp.asarray(rng.normal(size=(n, d)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(d, v)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, v, n), jnp.int32)
    weights = jnp.asarray((rng.random(n) > 0.2) / 30.0, jnp.float32)

    def ref(x, w):
        return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(x @ w, targets) * weights)

    want, (gx, gw) = jax.value_and_grad(ref, argnums=(0, 1))(x, w)
    for block in (1, 8, 16, 64):
        f = jax.jit(
            jax.value_and_grad(lambda x, w, b=block: 3.0 * readout_xent(x, w, targets, weights, b), (0, 1))
        )
        got, (hx, hw) = f(x, w)
        np.testing.assert_allclose(float(got), 3.0 * float(want), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(hx), 3.0 * np.asarray(gx), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(np.asarray(hw), 3.0 * np.asarray(gw), rtol=1e-4, atol=1e-6)


def test_leakage_filter_read_and_paper(tmp_path):
    """`eval lm --leakage`: "read" measures chunk u against the neighbours of chunk u-1 (what the model
    reads while predicting it), "paper" against chunk u's own nearest neighbours (section 2.6).
    One-chunk documents whose first neighbour is the identical sister chunk: the paper's leakage is 1 for
    every chunk; the read neighbour is chunk u-1's copy (its continuation is another document: padding)."""
    store = NeighbourStore(make_store(tmp_path / "s", n_docs=400, chunks_per_doc=1, seed=3))
    seqs = store.sequences("heldout", 4 * M)
    assert len(seqs) >= 2
    paper, kp = leakage_per_chunk(store, seqs, "paper", k=1, leakage_k=1)
    read, kr = leakage_per_chunk(store, seqs, "read", k=1)
    assert (kp, kr) == (1, 1) and paper.shape == read.shape == (len(seqs), 3)
    assert (paper == 1.0).all()
    chunks = np.asarray(store.chunks)
    for s, seq in enumerate(seqs):
        for u in range(1, 4):  # the longest common run of chunk u and the copy of chunk u-1
            prev, cur = chunks[seq[u - 1]], chunks[seq[u]]
            run = max(
                (
                    n
                    for i in range(M)
                    for j in range(M)
                    for n in range(1, M + 1)
                    if i + n <= M and j + n <= M and (cur[i : i + n] == prev[j : j + n]).all()
                ),
                default=0,
            )
            assert read[s, u - 1] == run / M
    assert (read < 1.0).all()
    with pytest.raises(ValueError, match="holds 2 per chunk"):
        leakage_per_chunk(store, seqs, "paper", leakage_k=10)
    with pytest.raises(ValueError, match="expected one of read, paper"):
        leakage_per_chunk(store, seqs, "nearest")
