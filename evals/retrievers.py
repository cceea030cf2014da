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
    cascade      pipelines.cascade (the ranker cascade); `cascade,KEY=VALUE,...` sets CascadeConfig fields,
                 e.g. `cascade,expensive=off` (the cheap + medium tiers only)
    MOD:FUNC     any factory `FUNC(index, depth) -> Retriever`, e.g. `mypkg.ret:make`
"""

from __future__ import annotations

import importlib
import time
from typing import Protocol, runtime_checkable


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
        from retro.configs import resolve_config

        self.cascade = Cascade(index, resolve_config(CascadeConfig, overrides=list(overrides)))

    def retrieve(self, question: str, k: int) -> dict:
        """One cascade search (one hop); every stage's kept ids, best first."""
        res = self.cascade.search(question, k=k, hops=1)
        hop = res.hops[0]
        cheap = hop.stages["cheap"]
        stages = {
            "bm25": _ids(cheap.info.get("bm25", ([], []))[0]),
            "static": _ids(cheap.info.get("static", ([], []))[0]),
            "cheap": _ids(cheap.ids),
            "medium": _ids(hop.stages["medium"].ids),
            "expensive": _ids(hop.stages["expensive"].ids),
        }
        lat = dict(res.latency_ms)
        lat["bm25"], lat["static"] = cheap.info.get("bm25_ms", 0.0), cheap.info.get("static_ms", 0.0)
        return {
            "final": [int(n["chunk"]) for n in res.neighbours][:k],
            "stages": stages,
            "latency_ms": lat,
            "answer": None,
        }


def make_retriever(spec: str, index, depth: int = 100) -> Retriever:
    """A retriever by name (cheap | bm25 | static | cascade | MODULE:FACTORY) over `index`."""
    if spec in ("cheap", "bm25", "static"):
        return IndexRetriever(index, depth, spec)
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
        f"unknown retriever {spec!r} (known: cheap, bm25, static, cascade[,KEY=VALUE...], MODULE:FACTORY)"
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
