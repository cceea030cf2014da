"""MiniLM in numpy (index/minilm.py) against sentence-transformers: the same ids, vectors, token
embeddings and search results, deterministically; and the query path never imports torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from index.embedders import DEFAULT_DENSE, load_dense, resolve_dense_path
from index.minilm import NumpyBert, numpy_supported
from tests.conftest import build_small_index, stdlib_docs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """Real text of every length the project encodes: words, a question, sentences, whole chunks."""
    docs = [d["text"] for d in stdlib_docs(limit=8)]
    return [
        "tortoise",
        "open files",
        "What did the cabbie call the recently adopted dog?",
        *[d[:200] for d in docs],
        *[d[:1500] for d in docs[:4]],  # past the 256-token window: truncated the same way
        "",
    ]


@pytest.fixture(scope="module")
def numpy_model() -> NumpyBert:
    return load_dense(DEFAULT_DENSE)


def test_the_packaged_model_runs_in_numpy_and_others_fall_back(numpy_model, tmp_path):
    path = resolve_dense_path(DEFAULT_DENSE)
    assert numpy_supported(path) and isinstance(numpy_model, NumpyBert)
    assert load_dense(DEFAULT_DENSE) is numpy_model  # once per process
    other = tmp_path / "cls-pooled"  # the same files but CLS pooling: numpy would give other vectors
    other.mkdir()
    for name in ("config.json", "modules.json", "tokenizer.json", "model.safetensors"):
        (other / name).symlink_to(Path(path) / name)
    (other / "1_Pooling").mkdir()
    (other / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    assert not numpy_supported(other) and not numpy_supported(tmp_path / "missing")
    with pytest.raises(ValueError, match="numpy"):
        load_dense(str(other), backend="numpy")
    with pytest.raises(ValueError, match="backend"):
        load_dense(DEFAULT_DENSE, backend="onnx")


def test_numpy_minilm_is_deterministic_and_batch_independent(numpy_model, texts):
    a = numpy_model.encode(texts, batch_size=4, normalize_embeddings=True)
    b = numpy_model.encode(texts, batch_size=4, normalize_embeddings=True)
    assert a.dtype == np.float32 and a.shape == (len(texts), 384)
    assert np.array_equal(a, b)  # the same input, bit for bit the same output
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    alone = np.stack([numpy_model.encode(t, normalize_embeddings=True) for t in texts[:6]])
    np.testing.assert_allclose(alone, a[:6], atol=1e-5)  # padding in a batch changes nothing
    assert numpy_model.count_tokens(texts[-2]) > numpy_model.max_seq_length == 256
    ids, mask = numpy_model.tokenize(texts[-2:], 256)
    assert ids.shape == (2, 256) and mask[0].all() and mask[1].sum() == 2  # [CLS] [SEP] for ""
    assert ids[0, -1] == numpy_model.tokenizer.token_to_id("[SEP]")  # cut before [SEP], as HF does


@pytest.mark.slow
def test_numpy_minilm_equals_sentence_transformers(numpy_model, texts):
    import torch

    st = load_dense(DEFAULT_DENSE, backend="torch")
    assert type(st).__name__ == "SentenceTransformer"
    want = st.encode(texts, batch_size=8, convert_to_numpy=True, normalize_embeddings=True)
    got = numpy_model.encode(texts, batch_size=8, normalize_embeddings=True)
    assert np.abs(got - want).max() < 1e-5
    words = ["tortoise", "dinghy", "zookeeper", "puppy", "taxi"]
    assert np.abs(numpy_model.encode(words) - st.encode(words, normalize_embeddings=True)).max() < 1e-5
    # token-level states (the cascade's late interaction) and the WordPiece ids themselves
    batch = st.tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    ids, mask = numpy_model.tokenize(texts, 128)
    assert np.array_equal(ids, batch["input_ids"].numpy()) and np.array_equal(
        mask, batch["attention_mask"].numpy() > 0
    )
    with torch.inference_mode():
        ref = st[0].auto_model(**batch).last_hidden_state.numpy()
    assert np.abs(numpy_model.hidden(ids, mask) - ref)[mask].max() < 1e-4
    assert sorted(numpy_model.special_ids) == sorted(st.tokenizer.all_special_ids)


@pytest.mark.slow
def test_cascade_gives_the_same_results_with_either_backend(tmp_path):
    from index import Index
    from pipelines.cascade import Cascade
    from pipelines.cascade_config import CascadeConfig
    from pipelines.dense import DenseEncoder

    docs = [{"id": d["id"], "text": d["text"][:3000]} for d in stdlib_docs(limit=16)]
    idx = Index.open(build_small_index(docs, tmp_path, vocab_size=800))
    cfg = CascadeConfig()
    runs = {}
    for backend in ("numpy", "torch"):
        cascade = Cascade(
            idx, cfg, encoder=DenseEncoder(load_dense(DEFAULT_DENSE, backend=backend)), quiet=True
        )
        runs[backend] = [
            cascade.search(q, k=5)
            for q in ("compress data with a stream", "parse command line options", "the calendar of a year")
        ]
    for a, b in zip(runs["numpy"], runs["torch"], strict=True):
        assert [n.chunk for n in a.neighbours] == [n.chunk for n in b.neighbours]
        for na, nb in zip(a.neighbours, b.neighbours, strict=True):
            assert na.stages["expensive"].score == pytest.approx(nb.stages["expensive"].score, abs=1e-4)
        assert (
            a.hops[0].stages["cheap"].expansion.terms.keys()
            == b.hops[0].stages["cheap"].expansion.terms.keys()
        )


def test_search_cli_imports_neither_torch_nor_transformers(tmp_path):
    """The first query pays no torch / transformers import (10-40 s here): MiniLM runs in numpy."""
    docs = [{"id": d["id"], "text": d["text"][:2000]} for d in stdlib_docs(limit=6)]
    idx = build_small_index(docs, tmp_path, vocab_size=400)
    code = (
        "import sys, json; from pipelines.cli import main; "
        f"rc = main(['search', {str(idx)!r}, 'parse command line options', '--json', '-k', '2']); "
        "print(json.dumps({'rc': rc, 'heavy': sorted(m for m in ('torch', 'transformers', "
        "'sentence_transformers') if m in sys.modules)}))"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    result, summary = (json.loads(line) for line in out.stdout.strip().splitlines()[-2:])
    assert summary == {"rc": 0, "heavy": []}
    assert len(result["neighbours"]) == 2 and "expanded" in result["neighbours"][0]["stages"]
