"""The retrievers the evals ask questions through, each behind the one protocol of
pipelines/retrievers.py: `search(question, k, hops=1) -> SearchResult`.

The evals read, from the typed result: the final ids (its neighbours), the ids every list kept
(`SearchResult.stage_ids`), its latency and its answer (None until a reader fills it).

`make_retriever(spec, index)` builds one by name:
    cheap        BM25 + static-embedding ANN over the index, no reranking;
                 final = BM25 order, filled up from the static list (rank fusion hurt here, see DESIGN)
    bm25         BM25 alone;  static: static ANN alone
    dense        exhaustive dense MiniLM over every chunk's text (no cascade): an oracle for what the
                 dense model can find, affordable on small haystacks only (~20 chunks/s on 2 cores)
    cascade      pipelines.cascade (the ranker cascade); `cascade,KEY=VALUE,...` sets CascadeConfig fields,
                 e.g. `cascade,expensive=off` (the cheap + medium tiers only)
    MOD:FUNC     any factory `FUNC(index, depth) -> Retriever`, e.g. `mypkg.ret:make`
"""

from __future__ import annotations

import importlib
import time

import numpy as np

from pipelines.cascade import Cascade
from pipelines.cascade_config import CascadeConfig
from pipelines.results import SearchResult
from pipelines.retrievers import Retriever, check_query, lists_result, ranked_stage
from util.configs import resolve_config


class IndexRetriever:
    """BM25 and/or static ANN straight from an `index.Index` (no reranking, no reader)."""

    def __init__(self, index, depth: int = 100, mode: str = "cheap"):
        """`depth`: candidates each list keeps; `mode`: cheap | bm25 | static."""
        if mode not in ("cheap", "bm25", "static"):
            raise ValueError(f"unknown index retriever mode {mode!r}")
        self.index, self.depth, self.mode = index, depth, mode

    def search(self, query: str, k: int, hops: int = 1) -> SearchResult:
        """Search the index; the final ids are the first k of BM25 then static candidates, deduplicated."""
        check_query(query, k, hops, max_hops=1)
        stages = {}
        depth = max(self.depth, k)
        for name, search in (("bm25", self.index.search_bm25), ("static", self.index.search_static)):
            if self.mode in ("cheap", name):
                t = time.perf_counter()
                ids, scores = search(query, k=depth)
                stages[name] = ranked_stage(name, ids, scores, (time.perf_counter() - t) * 1000)
        final: list[int] = []
        seen: set[int] = set()
        for st in stages.values():
            for i in st.ids.tolist():
                if len(final) >= k:
                    break
                if i not in seen:
                    seen.add(i)
                    final.append(i)
        return lists_result(self.index, query, k, stages, final)


class DenseRetriever:
    """Exhaustive dense search: every chunk's text encoded once (all-MiniLM-L6-v2 by default),
    cosine against the query; list `dense` keeps the top `depth`."""

    def __init__(self, index, depth: int = 100, model=None, batch_size: int = 64):
        """`model`: a sentence-transformers model (or anything with its `encode`); default MiniLM."""
        if model is None:
            from index.embedders import load_dense

            model = load_dense()
        self.index, self.model, self.depth = index, model, depth
        n = int(index.num_chunks)
        parts = []
        for lo in range(0, n, 4096):
            texts = index.chunk_text(list(range(lo, min(n, lo + 4096))))
            parts.append(self._encode(texts, batch_size))
        self.vectors = np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)

    def _encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        v = self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True)
        return np.asarray(v, dtype=np.float32).reshape(len(texts), -1)

    def search(self, query: str, k: int, hops: int = 1) -> SearchResult:
        """Cosine of the query against every chunk; the final ids are the top k."""
        check_query(query, k, hops, max_hops=1)
        t = time.perf_counter()
        scores = self.vectors @ self._encode([query])[0]
        depth = min(max(self.depth, k), len(scores))
        top = np.argpartition(-scores, depth - 1)[:depth] if depth else np.zeros(0, np.int64)
        top = top[np.argsort(-scores[top], kind="stable")]
        dense = ranked_stage("dense", top, scores[top], (time.perf_counter() - t) * 1000)
        return lists_result(self.index, query, k, {"dense": dense}, dense.ids.tolist())


class CascadeRetriever:
    """`pipelines.cascade.Cascade` with CascadeConfig overrides from the spec; one hop unless asked."""

    def __init__(self, index, depth: int = 0, overrides: tuple[str, ...] = ()):
        """`overrides`: CascadeConfig key=value strings (e.g. 'expensive=off', 'medium=off')."""
        self.cascade = Cascade(index, resolve_config(CascadeConfig, overrides=list(overrides)))

    def search(self, query: str, k: int, hops: int = 1) -> SearchResult:
        return self.cascade.search(query, k=k, hops=hops)


LIST_RETRIEVERS = ("cheap", "bm25", "static", "dense")


def check_spec(spec: str) -> str:
    """`spec` if `make_retriever` can build it, else a one-line ValueError, without an index or a model
    (so a typo fails before haystacks are written and indexed): a known name, `cascade` with valid
    CascadeConfig overrides, or MODULE:FACTORY (imported only when built)."""
    if spec in LIST_RETRIEVERS:
        return spec
    if spec == "cascade" or spec.startswith("cascade,"):
        resolve_config(CascadeConfig, overrides=[x for x in spec.split(",")[1:] if x])
        return spec
    mod_name, _, func = spec.partition(":")
    if mod_name and func:
        return spec
    raise ValueError(
        f"unknown retriever {spec!r} (known: {', '.join(LIST_RETRIEVERS)}, cascade[,KEY=VALUE...], MODULE:FACTORY)"
    )


def make_retriever(spec: str, index, depth: int = 100) -> Retriever:
    """A retriever by name (cheap | bm25 | static | dense | cascade | MODULE:FACTORY) over `index`."""
    check_spec(spec)
    if spec in ("cheap", "bm25", "static"):
        return IndexRetriever(index, depth, spec)
    if spec == "dense":
        return DenseRetriever(index, depth)
    if spec == "cascade" or spec.startswith("cascade,"):
        return CascadeRetriever(index, depth, tuple(x for x in spec.split(",")[1:] if x))
    mod_name, func = spec.split(":", 1)
    try:
        factory = getattr(importlib.import_module(mod_name), func)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"--retriever {spec}: cannot load ({e})") from None
    ret = factory(index, depth)
    if not isinstance(ret, Retriever):
        raise ValueError(
            f"--retriever {spec}: factory returned {type(ret).__name__}, which has no search(query, k, hops)"
        )
    return ret


def check_result(res, k: int) -> dict:
    """A retriever's SearchResult as the flat view the scorer reads: {"final" (at most k ids), "stages"
    ({list: ids}), "latency_ms" (stages, their raw lists and "total"), "answer"}; ValueError if it is
    not a SearchResult."""
    if not isinstance(res, SearchResult):
        raise ValueError(f"retriever returned {type(res).__name__}, not a SearchResult with final neighbours")
    latency = {str(s): float(v) for s, v in res.latency_ms.items()}
    latency.update(res.list_latency_ms())
    return {
        "final": res.final_ids()[:k],
        "stages": res.stage_ids(),
        "latency_ms": latency,
        "answer": res.answer,
    }
