"""The parts every shard of an index shares, made once from a bounded sample of the corpus.

    tokenizer.model   sentencepiece, trained on the sample (or a given model, copied)
    static/           the static embedder: a pooled per-token table (or model2vec) and static.json
    faiss.template    the trained, empty FAISS index every shard copies: one coarse quantizer for all
                      shards, so their scores are comparable and a top-k merge is exact

Each phase is named on stderr while it runs (util/progress.py), since on a large corpus the
tokenizer, the static table and the quantizer take minutes with nothing else to show. `make_shared`
calls `begin` once the sample has been read: a corpus with nothing to read is refused before the
build writes anything (build.json included).
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from index.corpus import CorpusReader, corpus_bytes
from index.tokenizer import Tokenizer, train_tokenizer, vocab_warning
from util.progress import kill_point, phase
from util.runinfo import atomic_path, atomic_write_json

if TYPE_CHECKING:  # build.py imports this module
    from index.build import BuildConfig


def make_shared(corpus: Path, out: Path, cfg: BuildConfig, *, quiet: bool, begin: Callable[[], None]):
    """Make the shared parts in `out` from a sample of `corpus` with BuildConfig `cfg`.

    Returns (tokenizer, static embedder, decisions): the decisions (tokenizer sha256, estimated
    chunks, FAISS factory, dense tier on or off, warnings, timings) go into the build's plan, so a
    resumed build keeps them."""
    tok_path = out / "tokenizer.model"
    t0 = time.time()
    with phase(f"reading a sample of {corpus.name} (up to {cfg.sample_chars:,} characters)", quiet):
        sample = _sample_docs(corpus, cfg.sample_chars, cfg.max_doc_chars)
    if not sample:
        raise ValueError(f"{corpus}: no readable documents")
    begin()
    timings = {"sample_s": time.time() - t0}
    t0 = time.time()
    if cfg.tokenizer:
        with atomic_path(tok_path) as tmp:
            shutil.copyfile(cfg.tokenizer, tmp)
    else:
        chars = sum(len(t) for t in sample)
        desc = f"training the tokenizer (vocab_size {cfg.vocab_size:,}, {chars:,} characters)"
        with phase(desc, quiet, point="tokenizer"):
            train_tokenizer(sample, tok_path, vocab_size=cfg.vocab_size, threads=cfg.threads)
    tokenizer = Tokenizer(tok_path)
    timings["tokenizer_s"] = time.time() - t0
    warning = None if cfg.tokenizer else vocab_warning(tokenizer.vocab_size, cfg.vocab_size)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    with phase("tokenizing the sample", quiet):
        ids = tokenizer.encode_batch(sample, threads=cfg.threads)
    counts = np.bincount(
        np.concatenate([np.asarray(i, np.int64) for i in ids]), minlength=tokenizer.vocab_size
    )
    sample_tokens, sample_bytes = int(counts.sum()), sum(len(t.encode("utf-8")) for t in sample)
    est_chunks = int(corpus_bytes(corpus) / max(1e-9, sample_bytes / max(1, sample_tokens)) / cfg.chunk_len)
    t0 = time.time()
    static = _make_static(out / "static", cfg, tokenizer, counts, quiet)
    timings["static_s"] = time.time() - t0
    t0 = time.time()
    train = _train_tokens(ids, cfg.chunk_len, cfg.faiss_train_size, tokenizer.pad_id)
    factory = cfg.faiss_factory if cfg.faiss_factory != "auto" else _auto_factory(est_chunks, len(train), cfg)
    with phase(f"FAISS template: {factory} from {len(train):,} sample chunks", quiet, point="quantizer"):
        _make_template(out / "faiss.template", factory, static.dim, train, static.embed_tokens)
    timings["faiss_template_s"] = time.time() - t0
    dense = cfg.dense == "on" or (cfg.dense == "auto" and est_chunks <= cfg.dense_auto_max_chunks)
    decisions = {
        "tokenizer_sha256": tokenizer.sha256,
        "est_chunks": est_chunks,
        "faiss_factory": factory,
        "dense": dense,
        "warnings": [warning] if warning else [],
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    return tokenizer, static, decisions


def _sample_docs(corpus: str | os.PathLike, sample_chars: int, max_doc_chars: int) -> list[str]:
    """The texts of the first documents of the corpus, `sample_chars` characters in all."""
    texts, total = [], 0
    for doc in CorpusReader(corpus, max_doc_chars=max_doc_chars):
        texts.append(doc.text[: max(1000, sample_chars - total)])
        total += len(texts[-1])
        if total >= sample_chars:
            break
    return texts


def _auto_factory(est_chunks: int, train_n: int, cfg: BuildConfig) -> str:
    """Flat for small indexes, IVF + 8-bit scalar codes (4x smaller, ~0.93 recall@10 of Flat) up to
    sq8_max_chunks, IVF + 4-bit PQ fast-scan (32 bytes a vector) beyond: measured in BENCHMARKS.md."""
    if est_chunks <= cfg.flat_max_chunks:
        return "Flat"
    nlist = 2 ** round(math.log2(4 * math.sqrt(est_chunks)))
    nlist = max(64, min(nlist, 65536, 2 ** int(math.log2(max(64, train_n // 39)))))
    if est_chunks <= cfg.sq8_max_chunks:
        return f"IVF{nlist},SQ8"
    return f"IVF{nlist},PQ{cfg.static_dim // 8}x4fs"


def _min_train(factory: str) -> int:
    """Training vectors a factory needs at the least (IVF lists; PQ codebooks)."""
    need = 1
    for part in factory.replace("_", ",").split(","):
        if part.startswith("IVF"):
            need = max(need, int("".join(ch for ch in part[3:] if ch.isdigit()) or 1))
        if part.startswith("PQ"):
            bits = 4 if part.endswith("fs") or "x4" in part else 8
            need = max(need, 2**bits)
    return need


def _make_template(path: Path, factory: str, dim: int, train_tokens: np.ndarray, embed) -> None:
    """Create (and train on embed(train_tokens), when it needs training) the empty FAISS index shards copy."""
    import faiss

    try:
        ann = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise ValueError(
            f"faiss_factory={factory!r}: FAISS cannot build it ({str(e).strip().splitlines()[-1]})"
        ) from None
    if not ann.is_trained:
        need = _min_train(factory)
        if len(train_tokens) < need:
            raise ValueError(
                f"faiss_factory={factory!r} needs at least {need} training vectors, the corpus sample gave "
                f"{len(train_tokens)}; use faiss_factory=Flat or a smaller IVF"
            )
        ann.train(embed(train_tokens))
    with atomic_path(path) as tmp:
        faiss.write_index(ann, str(tmp))


def _make_static(folder: Path, cfg: BuildConfig, tokenizer, counts: np.ndarray, quiet: bool):
    """The static embedder (cfg.static), saved with its identity in `folder`."""
    from index.embedders import (
        Model2VecStatic,
        PooledStatic,
        build_pooled_table,
        dense_model_sha,
        distill_model2vec,
    )

    kill_point("static")
    folder.mkdir(exist_ok=True)
    if cfg.static == "pooled":
        table = build_pooled_table(tokenizer, cfg.dense_model, counts, dim=cfg.static_dim, quiet=quiet)
        static = PooledStatic(table, tokenizer)
    else:
        with phase(f"static: model2vec from {cfg.dense_model} (minutes the first time, then cached)", quiet):
            static = Model2VecStatic(distill_model2vec(cfg.dense_model, dim=cfg.static_dim), tokenizer)
    meta = static.save(folder)
    meta.update(
        dense_model=cfg.dense_model,
        dense_sha256=dense_model_sha(cfg.dense_model),
        tokenizer_sha256=tokenizer.sha256,
    )
    atomic_write_json(folder / "static.json", meta)
    return static


def _train_tokens(sample_ids: list[list[int]], m: int, cap: int, pad_id: int) -> np.ndarray:
    """int64 [n, M]: up to `cap` chunks of the sample, to train the coarse quantizer on."""
    chunks = [np.asarray(ids[i : i + m]) for ids in sample_ids for i in range(0, len(ids), m)]
    if len(chunks) > cap:
        pick = np.random.default_rng(0).choice(len(chunks), cap, replace=False)
        chunks = [chunks[i] for i in np.sort(pick)]
    block = np.full((len(chunks), m), pad_id, dtype=np.int64)
    for row, c in zip(block, chunks, strict=True):
        row[: len(c)] = c
    return block
