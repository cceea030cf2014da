"""The ranker cascade over an Index: cheap -> medium -> expensive, multi-hop, neighbours with evidence.

    from index import Index
    from pipelines.cascade import Cascade
    cascade = Cascade(Index.open("IDX"))                 # CascadeConfig() defaults, budgets from the index size
    result = cascade.search("how do I list open files", k=10, hops=1)
    result.neighbours[0]   # {"rank", "chunk", "hop", "text" (chunk + continuation), "doc_id", "source",
                           #  "token_start", "char_start", "char_end", "stages": {stage: {"score", "rank"}}}
    result.latency_ms      # {"cheap", "query_encode", "medium", "expensive", "total"} summed over hops

Each hop runs the three stages (`pipelines.stages`). Hop h+1 queries with the question plus the text
of the best neighbour hop h found that no earlier hop had (that chunk itself is excluded from later
hops, since it would only find itself), so a fact that names the next one leads to it. The loop stops
early when a hop's top k holds no chunk the earlier hops had not already returned.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from index.embedders import DEFAULT_DENSE
from pipelines.cascade_config import Budgets, CascadeConfig, resolve_budgets
from pipelines.dense import DenseEncoder, QueryEncoding
from pipelines.expansion import QueryExpander
from pipelines.fusion import ranks_of
from pipelines.stages import StageResult, cheap_stage, expensive_stage, medium_mode, medium_stage

STAGE_NAMES = ("bm25", "static", "expanded", "cheap", "medium", "expensive")


@dataclass
class HopResult:
    """One hop: the query it ran, each stage's result and the query encoding."""

    query: str  # the text this hop searched with
    stages: dict[str, StageResult]  # "cheap" | "medium" | "expensive" -> StageResult
    query_encode_ms: float  # dense-model query encoding time (0 when no dense stage ran)
    truncated: bool  # the dense model dropped the query's tail (longer than max_query_tokens)
    new_ids: list[int] = field(default_factory=list)  # final ids no earlier hop had returned


@dataclass
class SearchResult:
    """What `Cascade.search` returns: neighbours with evidence, per-stage latency and each hop."""

    query: str
    k: int
    budgets: Budgets
    neighbours: list[dict]  # ranked, deduplicated over hops (hop 1 first), see module docstring
    latency_ms: dict[str, float]  # per stage, summed over hops, plus "total"
    hops: list[HopResult]
    truncation: dict | None  # {"model", "query_tokens", "max_tokens"} when the query was truncated
    medium_mode: str  # "stored" | "ondemand" | "off"


class Cascade:
    """The three-stage ranker over an opened Index (docs/INDEX_API.md)."""

    def __init__(self, index, config: CascadeConfig | None = None, encoder: DenseEncoder | None = None):
        self.index = index
        self.cfg = config or CascadeConfig()
        self._encoder = encoder
        self._expander: QueryExpander | None = None
        self.medium_mode = medium_mode(index, self.cfg)

    @property
    def needs_dense_model(self) -> bool:
        """Whether any stage runs the dense model at query time."""
        return self.medium_mode != "off" or self.cfg.expensive != "off" or self.cfg.expand

    @property
    def encoder(self) -> DenseEncoder:
        """The query-time dense encoder: the index's own model when it stores vectors, else MiniLM."""
        if self._encoder is None:
            model = None
            if getattr(self.index, "has_dense", False):
                model = self.index.dense_encoder()  # the vectors' model, or ValueError if it changed
            c = self.cfg
            self._encoder = DenseEncoder(
                model,
                max_query_tokens=c.max_query_tokens,
                max_chunk_tokens=c.max_chunk_tokens * (1 if c.score_text == "chunk" else 2),
                batch_size=c.encode_batch,
                cache_chunks=c.cache_chunks,
                torch_threads=c.torch_threads,
            )
            self._encoder.encode_query("warm up")  # first pass allocates; keep it out of query latency
        return self._encoder

    @property
    def expander(self) -> QueryExpander | None:
        """The query expander (cfg.expand) over the encoder's model; None when expansion is off."""
        if self.cfg.expand and self._expander is None:
            model_id = self.index.dense_model_id if getattr(self.index, "has_dense", False) else DEFAULT_DENSE
            self._expander = QueryExpander(
                self.encoder.model,
                model_id=model_id,
                top=self.cfg.expand_top,
                min_sim=self.cfg.expand_min_sim,
                corpus_words=list(self.index.corpus_words(self.cfg.expand_corpus_words))
                if self.cfg.expand_corpus_words and hasattr(self.index, "corpus_words")
                else None,
            )
        return self._expander

    def warm(self) -> None:
        """Load what the index and the dense model load lazily, so that later latencies are steady-state."""
        self.index.search_bm25("warm up", k=1)
        self.index.search_static("warm up", k=1)
        if self.needs_dense_model:
            _ = self.encoder
        _ = self.expander

    def budgets(self, k: int | None = None) -> Budgets:
        """Stage sizes for this index (ValueError for k <= 0 or k > num_chunks)."""
        return resolve_budgets(self.cfg, int(self.index.num_chunks), k)

    def run_hop(self, query: str, budgets: Budgets, exclude: set[int] | None = None) -> HopResult:
        """One pass of cheap -> medium -> expensive for `query`, never returning ids in `exclude`."""
        cheap = cheap_stage(self.index, query, budgets, self.cfg, exclude=exclude, expander=self.expander)
        q: QueryEncoding | None = None
        enc_ms = 0.0
        if self.needs_dense_model:
            encoder = self.encoder  # loads the model on first use, outside the timed region
            t0 = time.perf_counter()
            q = encoder.encode_query(query)
            enc_ms = (time.perf_counter() - t0) * 1e3
        medium = medium_stage(self.index, self._encoder, q, cheap, budgets, self.cfg)
        expensive = expensive_stage(self.index, self._encoder, q, medium, cheap, budgets, self.cfg)
        return HopResult(
            query=query,
            stages={"cheap": cheap, "medium": medium, "expensive": expensive},
            query_encode_ms=enc_ms,
            truncated=bool(q and q.truncated),
        )

    def search(self, query: str, k: int | None = None, hops: int | None = None) -> SearchResult:
        """Run the cascade for `query` over up to `hops` hops; neighbours carry per-stage scores and ranks.

        Raises ValueError for an empty query, k <= 0 or k > num_chunks, hops <= 0.
        """
        if not isinstance(query, str) or not query.strip():
            raise ValueError("query is empty")
        hops = self.cfg.hops if hops is None else hops
        if hops <= 0:
            raise ValueError(f"hops must be > 0, got {hops}")
        budgets = self.budgets(k)
        if self.needs_dense_model:
            _ = self.encoder  # a first search loads the model here, not inside the measured latency
        _ = self.expander  # and the expansion word table (cached on disk after the first time)
        t_start = time.perf_counter()
        seen: dict[int, None] = {}
        expanded: set[int] = set()
        results: list[HopResult] = []
        hop_query = query
        for _ in range(hops):
            hop = self.run_hop(hop_query, budgets, exclude=expanded)
            final = hop.stages["expensive"].ids.tolist()
            hop.new_ids = [i for i in final if i not in seen]
            results.append(hop)
            if not hop.new_ids:
                break  # this hop found nothing the earlier ones had not: more hops would repeat it
            for i in final:
                seen.setdefault(i, None)
            nxt = hop.new_ids[0]  # the best new find leads the next hop
            expanded.add(nxt)
            # with neighbour-text scoring chunk nxt-1 was scored with nxt as its continuation
            if self.cfg.score_text != "chunk" and nxt > 0:
                before, this = self.index.chunk_doc(np.array([nxt - 1, nxt]))
                if before == this:
                    expanded.add(nxt - 1)
            text = self.index.chunk_text([nxt])[0][: self.cfg.hop_query_chars]
            hop_query = f"{query} {text}"
        total = (time.perf_counter() - t_start) * 1e3
        latency = {"cheap": 0.0, "query_encode": 0.0, "medium": 0.0, "expensive": 0.0}
        for hop in results:
            latency["cheap"] += hop.stages["cheap"].time_ms
            latency["query_encode"] += hop.query_encode_ms
            latency["medium"] += hop.stages["medium"].time_ms
            latency["expensive"] += hop.stages["expensive"].time_ms
        latency["total"] = total
        latency = {name: round(v, 3) for name, v in latency.items()}
        truncation = None
        if any(h.truncated for h in results):
            enc = self._encoder
            n_tok = len(enc.tokenizer(query, truncation=False)["input_ids"])
            truncation = {"model": "dense", "query_tokens": n_tok, "max_tokens": enc.max_query_tokens}
        return SearchResult(
            query=query,
            k=budgets.k,
            budgets=budgets,
            neighbours=self._neighbours(results),
            latency_ms=latency,
            hops=results,
            truncation=truncation,
            medium_mode=self.medium_mode,
        )

    def _neighbours(self, hops: list[HopResult]) -> list[dict]:
        """Final ids of every hop, deduplicated (earlier hop first), with text, provenance and stage evidence."""
        order: list[tuple[int, int]] = []  # (chunk id, hop index)
        seen: set[int] = set()
        for h, hop in enumerate(hops):
            for i in hop.stages["expensive"].ids.tolist():
                if i not in seen:
                    seen.add(i)
                    order.append((i, h))
        if not order:
            return []
        ids = np.array([i for i, _ in order], np.int64)
        texts = self.index.neighbour_text(ids)
        prov = self.index.provenance(ids)
        out = []
        for r, ((cid, h), text, p) in enumerate(zip(order, texts, prov, strict=True), start=1):
            out.append(
                {
                    "rank": r,
                    "chunk": cid,
                    "hop": h + 1,
                    "text": text,
                    "doc_id": p["doc_id"],
                    "doc_index": p["doc_index"],
                    "source": p["source"],
                    "line": p["line"],
                    "token_start": p["token_start"],
                    "char_start": p["char_start"],
                    "char_end": p["char_end"],
                    "stages": stage_evidence(hops[h], cid),
                }
            )
        return out


def stage_evidence(hop: HopResult, cid: int) -> dict:
    """Score and 1-based rank of chunk `cid` in each list of one hop (None where it was not ranked)."""
    st = hop.stages
    lists = {
        "bm25": st["cheap"].info.get("bm25"),
        "static": st["cheap"].info.get("static"),
        "expanded": st["cheap"].info.get("expanded"),
        "cheap": (st["cheap"].ids, st["cheap"].scores),
        "medium": (st["medium"].ids, st["medium"].scores),
        "expensive": (st["expensive"].ids, st["expensive"].scores),
    }
    out: dict[str, dict] = {}
    for name in STAGE_NAMES:
        pair = lists.get(name)
        if pair is None or len(pair[0]) == 0:
            out[name] = {"score": None, "rank": None}
            continue
        ids, scores = np.asarray(pair[0]), np.asarray(pair[1])
        r = int(ranks_of(np.array([cid]), ids)[0])
        out[name] = {"score": round(float(scores[r - 1]), 6) if r else None, "rank": r or None}
    li = st["expensive"].info.get("maxsim", {})
    dense = st["expensive"].info.get("dense") or st["medium"].info.get("dense", {})
    if cid in li:
        out["expensive"]["maxsim"] = round(float(li[cid]), 6)
    if cid in dense:
        out["medium"]["cosine"] = round(float(dense[cid]), 6)
    return out
