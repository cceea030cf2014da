"""Sampling: incremental decoding with a KV cache, retrieval only at chunk boundaries.

The sequence is fed one attending chunk at a time (Listing 1's unit): positions 0..M-2, then
u*M + M-1 ... u*M + 2M-2 for u = 0, 1, ... When position u*M + M-1 (the last token of chunk u) is fed,
chunk u is complete: `retrieve(chunk u tokens [M]) -> neighbour tokens [K, R]` is called once, the
neighbours are encoded once (against the cached decoder states of chunk u) and their CCA keys/values
are cached for the next M positions. The prompt is fed in such segments too (prefill), then one
token at a time.

Any callable works as a retriever. `text_retriever` adapts anything that speaks the retriever protocol
(pipelines/retrievers.py: `search(query, k) -> SearchResult`): it decodes the chunk to text with the
index's tokenizer and searches with it. `cascade_retriever` (what `retro generate` uses by default) is
that adapter over the ranker cascade (pipelines/cascade.py: cheap -> medium -> expensive);
`index_retriever` searches an index (docs/INDEX_API.md) with BM25 or static embeddings over the chunk's
token ids (no text, so no protocol). All return each neighbour as the index's chunk + continuation cut
(or pad-filled) to R tokens.

Shapes: B batch (1 here), M chunk length, K neighbours, R retrieved length, V vocab, S cache length.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from retro.model import Retro

Retriever = Callable[[np.ndarray], np.ndarray]  # chunk tokens [M] -> neighbour tokens [K, R]


def index_retriever(
    index: Any,
    k: int,
    r: int,
    method: str = "bm25",
    exclude_docs: set[int] | None = None,
    log: list | None = None,
) -> Retriever:
    """A retriever over an index (path or open `index.Index`): top-k chunks for the chunk's tokens,
    as chunk + continuation [K, R] (pad where fewer were found). Found chunk ids are appended to `log`."""
    index = _open_index(index)
    search = {"bm25": index.search_bm25_tokens, "static": index.search_static_tokens}.get(method)
    if search is None:
        raise ValueError(f"retrieval method {method!r}: expected bm25 or static")
    extra = 8 if exclude_docs else 0

    def retrieve(chunk: np.ndarray) -> np.ndarray:
        ids, _ = search(np.asarray(chunk)[None], k + extra)
        ids = np.asarray(ids[0], np.int64)
        ids = ids[ids >= 0]
        if exclude_docs and len(ids):
            ids = ids[~np.isin(index.chunk_doc(ids), list(exclude_docs))]
        ids = ids[:k]
        if log is not None:
            log.append(ids.tolist())
        return neighbour_block(index, ids, k, r)

    return retrieve


def _open_index(index: Any) -> Any:
    """An open `index.Index` for a path (or the object itself)."""
    if isinstance(index, (str, os.PathLike)):
        from index import Index

        return Index.open(index)
    return index


def neighbour_block(index: Any, ids: np.ndarray, k: int, r: int) -> np.ndarray:
    """Chunk ids [n <= K] -> neighbour tokens [K, R] int32: chunk + continuation, pad where fewer."""
    out = np.full((k, r), int(index.tokenizer.pad_id), np.int32)
    if len(ids):
        toks = np.asarray(index.neighbour_tokens(np.asarray(ids, np.int64)))[:, :r]
        out[: len(ids), : toks.shape[1]] = toks
    return out


def cascade_retriever(
    index: Any,
    k: int,
    r: int,
    config: Any = None,
    exclude_docs: set[int] | None = None,
    log: list | None = None,
    encoder: Any = None,
) -> Retriever:
    """A retriever through the ranker cascade: chunk tokens [M] -> top-k neighbours [K, R].

    `config`: a CascadeConfig (None = defaults; its `k` is replaced by this `k`). The cascade, its
    BM25/FAISS tiers and MiniLM are loaded once, here, and reused by every call (`text_retriever` does
    the rest). `encoder` (a pipelines.dense.DenseEncoder) shares a loaded model. With medium=ondemand
    the cascade returns at most `medium_ondemand_max`, so fewer than k may remain after `exclude_docs`.
    Raises ValueError for k <= 0, k larger than the index or r <= 0.
    """
    from pipelines.cascade import Cascade

    index = _open_index(index)
    if r <= 0:
        raise ValueError(f"cascade retriever: r must be > 0, got {r}")
    cascade = Cascade(index, config, encoder=encoder)
    cascade.budgets(k)  # one-line ValueError for k <= 0 or k > num_chunks, before any model loads
    cascade.warm()
    retrieve = text_retriever(cascade, index, k, r, exclude_docs=exclude_docs, log=log)
    retrieve.cascade = cascade  # type: ignore[attr-defined]  # for callers that report its config
    return retrieve


def text_retriever(
    retriever: Any,
    index: Any,
    k: int,
    r: int,
    exclude_docs: set[int] | None = None,
    log: list | None = None,
) -> Retriever:
    """Adapt a protocol retriever (`search(query, k, hops=1) -> SearchResult`) to the sampler:
    chunk tokens [M] -> neighbour tokens [K, R].

    The chunk is decoded to text with the index's tokenizer (pad and out-of-vocabulary ids dropped) and
    searched (the retriever's own hops: one, or the cascade config's). `exclude_docs` (global document indexes) are filtered out of a deeper list
    (k + 8, doubled while they leave fewer than k and the retriever still returns more). Each call
    appends {"query", "chunks", "latency_ms" (per stage, summed over the deeper searches), "stages"
    (per kept chunk: each stage's score and rank)} to `log`. A chunk that decodes to blank text
    retrieves nothing (all pad).
    """
    index = _open_index(index)
    tok = index.tokenizer
    n_chunks = int(index.num_chunks)
    deep = min(k + (8 if exclude_docs else 0), n_chunks)
    excluded = {int(d) for d in exclude_docs or ()}

    def retrieve(chunk: np.ndarray) -> np.ndarray:
        ids = np.asarray(chunk, np.int64).reshape(-1)
        query = tok.decode(ids[(ids >= 0) & (ids < tok.vocab_size)])
        entry: dict = {"query": query, "chunks": [], "latency_ms": {}, "stages": []}
        if query.strip():
            depth, got, latency = deep, -1, {}
            while True:  # excluded documents may fill the list: search deeper until k remain
                res = retriever.search(query, depth)
                for name, ms in res.latency_ms.items():
                    latency[name] = round(latency.get(name, 0.0) + ms, 3)
                found = [n for n in res.neighbours if n.doc_index not in excluded][:k]
                n_got = len(res.neighbours)
                if not excluded or len(found) == k or depth >= n_chunks or n_got <= got:
                    break
                depth, got = min(2 * depth, n_chunks), n_got
            entry.update(
                chunks=[n.chunk for n in found],
                latency_ms=latency,
                stages=[{s: ev.to_dict() for s, ev in n.stages.items()} for n in found],
            )
        if log is not None:
            log.append(entry)
        return neighbour_block(index, entry["chunks"], k, r)

    return retrieve


class Sampler:
    """Incremental decoder for one sequence: `Sampler(model, retriever, k).generate(prompt, n)`."""

    def __init__(self, model: Retro, retriever: Retriever | None = None, k: int = 2):
        """retriever None (or a model without CCA) decodes RETRO[OFF]."""
        self.model = model
        self.cfg = model.cfg
        self.retriever = retriever if model.encoder is not None else None
        self.k = k
        graphdef, state = nnx.split(model)

        def run(state, tokens, start, cache, neighbours):
            return nnx.merge(graphdef, state).decode(tokens, start, cache, neighbours)

        self._state = state
        self._run = jax.jit(run, donate_argnums=(3,))
        self.calls = {"retrieve": 0, "encode": 0}

    def segment_end(self, p: int) -> int:
        """Exclusive end of the attending-chunk segment holding position p."""
        m = self.cfg.chunk_len
        if p < m - 1:
            return m - 1
        return p + (m - (p - (m - 1)) % m)

    def feed(self, tokens: list[int], p: int, q: int, cache: dict) -> tuple[np.ndarray, dict]:
        """Feed tokens[p:q] (one segment) -> (logits [q-p, V], cache); retrieves when p starts a segment."""
        m = self.cfg.chunk_len
        nb = None
        if self.retriever is not None and p >= m - 1 and (p - (m - 1)) % m == 0:
            chunk = np.asarray(tokens[p - m + 1 : p + 1], np.int32)
            nb = jnp.asarray(self.retriever(chunk), jnp.int32)[None]  # [1, K, R]
            self.calls["retrieve"] += 1
            self.calls["encode"] += 1
        x = jnp.asarray(tokens[p:q], jnp.int32)[None]
        logits, cache = self._run(self._state, x, jnp.int32(p), cache, nb)
        return np.asarray(logits[0]), cache

    def generate(
        self,
        prompt: list[int],
        max_new_tokens: int,
        temperature: float = 0.0,
        top_k: int = 0,
        seed: int = 0,
        stop_id: int | None = None,
    ) -> dict:
        """Continue `prompt` (token ids) -> {"tokens": new ids, "logprobs": per new token,
        "prompt_logits": [len(prompt), V] (for tests)}. temperature 0 = greedy."""
        if not prompt:
            raise ValueError("generate: the prompt must have at least one token")
        tokens = list(prompt)
        cache = self.model.init_cache(1, len(prompt) + max_new_tokens, max(self.k, 1))
        rng = np.random.default_rng(seed)
        p, outs = 0, []
        while p < len(prompt):
            q = min(len(prompt), self.segment_end(p))
            logits, cache = self.feed(tokens, p, q, cache)
            outs.append(logits)
            p = q
        last = outs[-1][-1]
        new, logprobs = [], []
        for _ in range(max_new_tokens):
            logp = jax.nn.log_softmax(jnp.asarray(last)).__array__()
            if temperature <= 0:
                tok = int(np.argmax(logp))
            else:
                z = logp / temperature
                if top_k:
                    z = np.where(z >= np.sort(z)[-top_k], z, -np.inf)
                z = np.exp(z - z.max())
                tok = int(rng.choice(len(z), p=z / z.sum()))
            new.append(tok)
            logprobs.append(float(logp[tok]))
            tokens.append(tok)
            if stop_id is not None and tok == stop_id or len(new) == max_new_tokens:
                break
            logits, cache = self.feed(tokens, p, p + 1, cache)
            last = logits[-1]
            p += 1
        return {"tokens": new, "logprobs": logprobs, "prompt_logits": np.concatenate(outs, 0)}
