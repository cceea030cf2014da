"""The ranker cascade over an Index: cheap -> medium -> expensive, multi-hop, neighbours with evidence.

    from index import Index
    from pipelines.cascade import Cascade
    cascade = Cascade(Index.open("IDX"))                 # CascadeConfig() defaults, budgets from the index size
    result = cascade.search("how do I list open files", k=10, hops=1)
    result.neighbours[0]   # Neighbour: rank, chunk, hop, text (chunk + continuation), doc_id, source,
                           #  token_start, char_start, char_end, stages {stage: Evidence(score, rank)}
    result.latency_ms      # {"cheap", "query_encode", "medium", "expensive", "total"} summed over hops
    result.to_dict()       # the `retro search --json` object (types: pipelines/results.py)

Each hop runs the three stages (`pipelines.stages`). Hop h+1 queries with the question plus the text
of the best neighbour hop h found that no earlier hop had (that chunk itself is excluded from later
hops, since it would only find itself), so a fact that names the next one leads to it. The loop stops
early when a hop's top k holds no chunk the earlier hops had not already returned.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from index.embedders import DEFAULT_DENSE
from pipelines.cascade_config import Budgets, CascadeConfig, resolve_budgets
from pipelines.dense import DenseEncoder, QueryEncoding
from pipelines.duplicates import collapse_stage
from pipelines.expansion import QueryExpander
from pipelines.query import bound_query, check_query_text
from pipelines.results import HopResult, SearchResult, Truncation, build_neighbours, latency_ms
from pipelines.stages import cheap_stage, expensive_stage, medium_mode, medium_stage
from util.progress import note


class Cascade:
    """The three-stage ranker over an opened Index (docs/INDEX_API.md); a `pipelines.retrievers.Retriever`
    as it stands (`search(query, k, hops) -> SearchResult`; k and hops None: the config's)."""

    def __init__(
        self,
        index,
        config: CascadeConfig | None = None,
        encoder: DenseEncoder | None = None,
        *,
        quiet: bool = False,
    ):
        """`quiet`: no progress on stderr (only an old index without an expansion table shows any)."""
        self.index = index
        self.quiet = quiet
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
        """The query expander (cfg.expand) over the encoder's model and the index's expansion table;
        None when expansion is off. An index built before the table embeds its words now (once,
        cached under $RETRO_CACHE) and says so on stderr."""
        if self.cfg.expand and self._expander is None:
            model_id = self.index.dense_model_id if getattr(self.index, "has_dense", False) else DEFAULT_DENSE
            get_table = getattr(self.index, "expansion_table", None)
            table = get_table() if get_table else None
            corpus_words = None
            if table is None:
                n = self.cfg.expand_corpus_words
                corpus_words = (
                    list(self.index.corpus_words(n)) if n and hasattr(self.index, "corpus_words") else []
                )
                note(
                    f"{getattr(self.index, 'path', 'this index')}: no expansion table (built before it was "
                    f"stored); building it now from the {model_id} vocabulary and {len(corpus_words):,} "
                    "corpus words, cached under $RETRO_CACHE for the next query (rebuild the index to store it)",
                    self.quiet,
                )
            self._expander = QueryExpander(
                self.encoder.model,
                model_id=model_id,
                top=self.cfg.expand_top,
                min_sim=self.cfg.expand_min_sim,
                corpus_words=corpus_words,
                table=table,
                corpus_limit=self.cfg.expand_corpus_words,
                quiet=self.quiet,
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
        medium = medium_stage(self.index, self._encoder, q, cheap, budgets, self.cfg, query, exclude)
        if self.cfg.collapse_duplicates:  # rank all N2, then keep k distinct texts (copies fold in)
            whole = dataclasses.replace(budgets, k=budgets.n2)
            ranked = expensive_stage(self.index, self._encoder, q, medium, cheap, whole, self.cfg)
            expensive = collapse_stage(self.index, ranked, budgets.k)
        else:
            expensive = expensive_stage(self.index, self._encoder, q, medium, cheap, budgets, self.cfg)
        return HopResult(
            query=query,
            stages={"cheap": cheap, "medium": medium, "expensive": expensive},
            final=expensive.ids.tolist(),
            step_ms={"query_encode": enc_ms},
            truncated=bool(q and q.truncated),
        )

    def search(self, query: str, k: int | None = None, hops: int | None = None) -> SearchResult:
        """Run the cascade for `query` over up to `hops` hops; neighbours carry per-stage scores and ranks.

        A query longer than `pipelines.query.MAX_QUERY_WORDS` words is cut there before any stage
        reads it; the result's `truncation` says so (and the `query` it keeps is the one asked).
        Raises ValueError for an empty query or one without a searchable word, k <= 0 or
        k > num_chunks, hops <= 0.
        """
        asked = check_query_text(query)
        query, cut = bound_query(asked)
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
            final = hop.final
            hop = dataclasses.replace(hop, new_ids=[i for i in final if i not in seen])
            results.append(hop)
            if not hop.new_ids:
                break  # this hop found nothing the earlier ones had not: more hops would repeat it
            copies = hop.stages["expensive"].duplicates
            for i in final:
                seen.setdefault(i, None)
                seen.update(dict.fromkeys(copies.get(i, ())))
            nxt = hop.new_ids[0]  # the best new find leads the next hop
            expanded.add(nxt)
            expanded.update(copies.get(nxt, ()))  # its copies would only find it again, too
            # with neighbour-text scoring chunk nxt-1 was scored with nxt as its continuation
            if self.cfg.score_text != "chunk" and nxt > 0:
                before, this = self.index.chunk_doc(np.array([nxt - 1, nxt]))
                if before == this:
                    expanded.add(nxt - 1)
            text = self.index.chunk_text([nxt])[0][: self.cfg.hop_query_chars]
            hop_query = f"{query} {text}"
        total = (time.perf_counter() - t_start) * 1e3
        truncation = cut
        if cut is None and any(h.truncated for h in results):
            enc = self._encoder
            truncation = Truncation("dense", enc.count_tokens(query), enc.max_query_tokens)
        return SearchResult(
            query=asked,
            k=budgets.k,
            budgets=budgets,
            neighbours=build_neighbours(self.index, results),
            latency_ms=latency_ms(results, total),
            hops=tuple(results),
            truncation=truncation,
            medium_mode=self.medium_mode,
        )
