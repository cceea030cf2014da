"""The one retriever protocol: `search(query, k, hops=1) -> SearchResult`.

Everything that retrieves speaks it, so the CLI, the evals, bench, the sampler (retro/sampling.py)
and the reader can take any retriever and read the same typed result (pipelines/results.py):

    Cascade          pipelines/cascade.py: the ranker cascade (it is a Retriever as it stands)
    list retrievers  evals/retrievers.py: BM25 / static / dense lists without stages, built with
                     `lists_result` so they fill the stages they have and nothing more

A retriever that cannot follow hops says so with a one-line ValueError for hops > 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from pipelines.query import check_query_text
from pipelines.results import HopResult, SearchResult, StageResult, build_neighbours, latency_ms


@runtime_checkable
class Retriever(Protocol):
    """Anything with `search(query, k, hops=1) -> SearchResult` (neighbours best first, at most k per hop)."""

    def search(self, query: str, k: int, hops: int = 1) -> SearchResult: ...


def check_query(query: str, k: int, hops: int, max_hops: int | None = None) -> None:
    """One-line ValueError for an empty query or one without a searchable word (`pipelines.query`),
    k <= 0, hops <= 0 or more hops than the retriever follows."""
    check_query_text(query)
    if k <= 0:
        raise ValueError(f"k must be > 0, got {k}")
    if hops <= 0:
        raise ValueError(f"hops must be > 0, got {hops}")
    if max_hops is not None and hops > max_hops:
        raise ValueError(f"this retriever follows at most {max_hops} hop(s), got hops={hops}")


def ranked_stage(name: str, ids, scores, time_ms: float) -> StageResult:
    """A list retriever's stage: ids (negative ones, FAISS's "none", dropped) with their scores."""
    ids, scores = np.asarray(ids, np.int64).reshape(-1), np.asarray(scores, np.float32).reshape(-1)
    keep = ids >= 0
    return StageResult(name, ids[keep], scores[keep], time_ms)


def lists_result(
    index,
    query: str,
    k: int,
    stages: Mapping[str, StageResult],
    final: list[int],
    total_ms: float | None = None,
) -> SearchResult:
    """A one-hop SearchResult for a retriever of plain ranked lists: `final` (at most k ids, best first)
    become the neighbours, with provenance from `index` and their rank in each list as evidence.
    total_ms None: the sum of the lists' times."""
    final = [int(i) for i in final][:k]
    hop = HopResult(query=query, stages=dict(stages), final=final)
    total = sum(st.time_ms for st in stages.values()) if total_ms is None else total_ms
    return SearchResult(
        query=query,
        k=k,
        budgets=None,
        neighbours=build_neighbours(index, [hop]),
        latency_ms=latency_ms([hop], total),
        hops=(hop,),
    )
