"""Configuration of the ranker cascade: one frozen dataclass, budgets that scale with the corpus.

The cascade narrows `num_chunks` candidates in three stages (DESIGN.md, "Data flow"):

    cheap      BM25 top-`depth` ∪ static-ANN top-`depth`, fused          -> N1 candidates
    medium     dense bi-encoder cosine (stored vectors, or on demand)    -> N2 candidates
    expensive  late interaction (MaxSim over MiniLM token embeddings)    -> top k

`resolve_budgets(cfg, num_chunks)` turns the zeros ("scale with the corpus") into numbers, so the
same config serves a 100-chunk test index and a billion-chunk one. Load it with
`util.configs.resolve_config(CascadeConfig, path, ["n2=48", "fusion=rrf"])`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

FUSIONS = ("rrf", "weighted_rrf", "zscore", "quota", "bm25", "static")
MEDIUM_MODES = ("auto", "stored", "ondemand", "off")
EXPENSIVE_MODES = ("late_interaction", "dense", "off")
SCORE_TEXTS = ("auto", "chunk", "neighbour", "sentences")


@dataclass(frozen=True)
class CascadeConfig:
    """Every knob of the cascade; 0 in a budget field means "scale with the corpus"."""

    k: int = 10  # neighbours returned per hop (the expensive stage's output size)
    n1: int = 0  # cheap-stage survivors after fusion; 0 = clamp(n1_per_sqrt_chunk * sqrt(num_chunks))
    n1_per_sqrt_chunk: float = 2.0  # N1 scale: ~870 at 190k chunks (12M tokens), 30k cap near 1T tokens
    n1_min: int = 100  # smallest automatic N1 (small corpora)
    n1_max: int = 30000  # largest automatic N1 (the Jeff Dean "~30,000" first cut)
    depth: int = 0  # candidates asked of BM25 and of static ANN each; 0 = N1
    n2: int = 32  # medium-stage survivors scored by the expensive stage (~25-32 fit 1 s on 2 cores)
    fusion: str = "quota"  # cheap fusion: rrf | weighted_rrf | zscore | quota | bm25 | static
    rrf_k: float = 60.0  # RRF constant: score = sum_i w_i / (rrf_k + rank_i)
    w_bm25: float = 1.0  # BM25 weight in weighted_rrf / zscore fusion
    w_static: float = 0.5  # static-ANN weight in weighted_rrf / zscore fusion
    bm25_share: float = (
        0.5  # quota fusion: fraction of N1 taken from BM25's list before static fills the rest
    )
    expand: bool = True  # cheap stage: add a BM25 list of the question expanded through dense word neighbours
    expand_top: int = 100  # expansion: nearest vocabulary words kept per query word / word pair
    expand_grouped: bool = True  # a query unit's expansions are synonyms: a chunk scores its best one only
    expand_min_sim: float = 0.4  # expansion: cosine a vocabulary word needs (weight = cosine)
    # the expanded list at scale (issue 12; BENCHMARKS.md "The expanded list at scale"): its cost is
    # the postings of its hundreds of expansion terms in every shard
    expand_max_df: float = (
        0.0  # drop expansion terms (not the question's own) in more than this share of chunks (0 = keep)
    )
    # 0.01 cuts the postings ~6x; through the whole cascade it kept recall@10 on literal (1M, 10M) and
    # paraphrased questions (88 -> 88, 88 -> 90) but multi-hop lost later chain links found by chance
    # (one search: 1 and 3 of 500 needles; with the reader's hops 1 of 125, answers the same), so it
    # is off (BENCHMARKS.md "Whole cascade, the 1% cap")
    expand_max_df_chunks: int = 100  # the cap never drops a term in at most this many chunks: on a small
    # index a share is a handful of chunks (1% of 60 is 0.6, which drops every expansion term); the cap
    # is for the postings' cost at scale, which terms this rare do not have (0 = the share alone)
    expand_max_terms: int = 0  # keep the N expansion terms with the largest weight x idf (0 = all)
    expand_late_df: float = 0.0  # expansion terms above this share of chunks are scored only over the
    # cheap candidates (fused, BM25, static lists) + expand_pool chunks per shard, not every chunk (0 = all)
    expand_pool: int = (
        1000  # with expand_late_df: per shard, the best chunks by the other terms that get the late terms too
    )
    expand_skip_literal: float = (
        0.0  # no expanded list when the question's literalness >= this (0 = always run it)
    )
    expand_corpus_words: int = 50_000  # the index's most frequent plain words that join the expansion
    # vocabulary (embedded once per index and cached; 0 = the dense model's WordPiece words only)
    # literal_coverage: the best plain-BM25 hit's query coverage (score / idf mass) is mapped to a
    # literalness of 0..1 between these bounds. 100 literal needles at 1M cover 0.18 (p10), the best hit
    # for 100 paraphrased questions 0.06 (p90 0.09). Literal questions weight BM25, paraphrases the
    # expanded list.
    literal_coverage: tuple[float, float] = (0.10, 0.16)
    w_expand: float = (
        2.0  # interleave weight of the expanded list in the cheap order (the fused list has 1), times
    )
    # (1 - literalness): a paraphrase's semantic hits lead the order the on-demand medium stage encodes
    w_expand_min: float = 1.0  # ... but never less than this: a question judged literal by mistake
    # (a paraphrase whose common words BM25 matches) still gets its expanded hits encoded
    medium: str = (
        "auto"  # auto (stored if the index has dense vectors, else ondemand) | stored | ondemand | off
    )
    medium_ondemand_max: int = 32  # on-demand mode: chunks encoded per query (top of the cheap order)
    ondemand_batch: int = 8  # on-demand mode: chunks per forward pass (the budget is checked between passes)
    ondemand_budget_ms: float = (
        0.0  # on-demand mode: stop encoding when the next pass would exceed this (0 = no limit)
    )
    w_medium_cheap: float = (
        0.5  # medium = cosine + w * minmax(cheap score); dev R@N2 0.94 (w=0) -> 1.00 (0.5)
    )
    # page-aware candidates (pipelines/pages.py): the chunks of the documents the cheap order points
    # at, ranked within their document, join the medium stage's candidates
    page_docs: int = 3  # documents whose chunks are ranked within the document (0 = off)
    page_scan: int = 100  # cheap-order prefix that ranks documents (reciprocal-rank sum)
    # focus: the top document's share of that sum, mapped to 0..1 between these bounds. Man-page
    # questions (dev): median 0.14, p10 0.066; 100 literal needles at 1M: p90 0.046. At focus 0 there
    # are no page candidates and the final BM25 weight is whole; at 1 it is 0 (man-page dev R@10
    # 0.09 -> 0.19: the question's words name the page, not the option)
    page_focus: tuple[float, float] = (0.06, 0.12)
    page_chunks: int = 8  # best chunks of each such document the medium stage scores besides the cheap ones
    page_max_chunks: int = 1024  # chunks of a document read at most (those nearest its best candidate)
    page_common: float = 0.3  # a question word in this share of a document's chunks marks the document
    # (its subject): left out of the in-document static query
    w_medium_page: float = 0.0  # medium score of a page candidate: cosine + w * minmax(in-document score)
    expensive: str = "late_interaction"  # late_interaction | dense | off
    w_final_li: float = 1.0  # final score weight of the MaxSim score (mean over query tokens, in [-1, 1])
    w_final_dense: float = 0.0  # final weight of the dense cosine (adding it lowered dev R@10 0.94 -> 0.90)
    w_final_bm25: float = 0.3  # final weight of min-max BM25 over the N2, times the literalness; man-page questions R@1 0.660 (1.0) -> 0.686 (0.3)
    w_final_expand: float = 0.25  # final weight of min-max expanded match of each candidate's best
    # sentence (pipelines.expansion.best_sentence_match), times (1 - literalness)
    # what the medium (on demand) and expensive stages encode: chunk (64 tokens) | neighbour (+ its
    # continuation) | sentences (the neighbour text's sentences, a chunk scored by its best) | auto
    # (sentences for a paraphrase, literalness < 0.5, else neighbour). 100 paraphrased needles at 1M,
    # seeds 0/1: neighbour 90%/89%, sentences 92%/90%; man-page questions R@1 0.692 vs 0.667.
    score_text: str = "auto"
    max_query_tokens: int = 256  # dense-model query limit (MiniLM's max_seq_length); longer is truncated
    max_chunk_tokens: int = 128  # dense-model limit for a 64-token chunk re-tokenised by WordPiece
    encode_batch: int = 32  # chunks per forward pass when encoding on demand
    cache_chunks: int = 4096  # LRU cache of encoded chunks (token embeddings), shared across queries and hops
    collapse_duplicates: bool = True  # fold near-identical neighbours into the best-ranked (duplicates.py)
    hops: int = 1  # retrieval hops; hop h+1 queries with the question + hop h's best new neighbour
    hop_query_chars: int = 400  # characters of the found neighbour appended to the next hop's query
    torch_threads: int = 1  # dense-model threads (torch intra-op, or BLAS for numpy MiniLM); 1: on a busy 2-core box 2 threads took 760 ms/query vs 19 (0 = torch default)

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"CascadeConfig.fusion: {self.fusion!r} is not one of {', '.join(FUSIONS)}")
        if self.medium not in MEDIUM_MODES:
            raise ValueError(f"CascadeConfig.medium: {self.medium!r} is not one of {', '.join(MEDIUM_MODES)}")
        if self.expensive not in EXPENSIVE_MODES:
            raise ValueError(
                f"CascadeConfig.expensive: {self.expensive!r} is not one of {', '.join(EXPENSIVE_MODES)}"
            )
        for name in (
            "k",
            "n2",
            "n1_min",
            "n1_max",
            "medium_ondemand_max",
            "ondemand_batch",
            "encode_batch",
            "hops",
            "max_query_tokens",
            "page_scan",
            "page_chunks",
            "page_max_chunks",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"CascadeConfig.{name}: must be > 0, got {getattr(self, name)}")
        if self.n1 < 0 or self.depth < 0:
            raise ValueError("CascadeConfig.n1 / depth: must be >= 0 (0 = scale with the corpus)")
        if self.score_text not in SCORE_TEXTS:
            raise ValueError(
                f"CascadeConfig.score_text: {self.score_text!r} is not one of {', '.join(SCORE_TEXTS)}"
            )
        bounds = tuple(self.literal_coverage)
        if (
            len(bounds) != 2
            or not all(isinstance(b, (int, float)) for b in bounds)
            or not 0 <= bounds[0] < bounds[1]
        ):
            raise ValueError(
                f"CascadeConfig.literal_coverage: expected [lo, hi] with 0 <= lo < hi, got {self.literal_coverage}"
            )
        if self.expand_top <= 0:
            raise ValueError(f"CascadeConfig.expand_top: must be > 0, got {self.expand_top}")
        for name in ("expand_max_df", "expand_late_df", "expand_skip_literal"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(
                    f"CascadeConfig.{name}: must be in [0, 1] (0 = off), got {getattr(self, name)}"
                )
        if self.expand_max_terms < 0 or self.expand_pool < 0 or self.expand_max_df_chunks < 0:
            raise ValueError(
                "CascadeConfig.expand_max_terms / expand_pool / expand_max_df_chunks: must be >= 0"
            )
        if self.expand_corpus_words < 0:
            raise ValueError(
                f"CascadeConfig.expand_corpus_words: must be >= 0, got {self.expand_corpus_words}"
            )
        if self.w_expand < 0 or self.w_expand_min < 0 or max(self.w_expand, self.w_expand_min) == 0:
            raise ValueError("CascadeConfig.w_expand / w_expand_min: must be >= 0 and not both 0")
        pf = tuple(self.page_focus)
        if len(pf) != 2 or not all(isinstance(b, (int, float)) for b in pf) or not 0 <= pf[0] < pf[1]:
            raise ValueError(
                f"CascadeConfig.page_focus: expected [lo, hi] with 0 <= lo < hi, got {self.page_focus}"
            )
        if self.page_docs < 0:
            raise ValueError(f"CascadeConfig.page_docs: must be >= 0 (0 = off), got {self.page_docs}")
        if not 0.0 < self.page_common <= 1.0:
            raise ValueError(f"CascadeConfig.page_common: must be in (0, 1], got {self.page_common}")
        if not 0.0 <= self.bm25_share <= 1.0:
            raise ValueError(f"CascadeConfig.bm25_share: must be in [0, 1], got {self.bm25_share}")


@dataclass(frozen=True)
class Budgets:
    """The concrete stage sizes for one corpus (what `resolve_budgets` returns)."""

    k: int  # final neighbours per hop
    n1: int  # cheap survivors
    depth: int  # per-list depth asked of BM25 and static ANN
    n2: int  # medium survivors


def auto_n1(cfg: CascadeConfig, num_chunks: int) -> int:
    """N1 = clamp(n1_per_sqrt_chunk * sqrt(num_chunks), n1_min, n1_max), never above num_chunks."""
    n1 = round(cfg.n1_per_sqrt_chunk * math.sqrt(max(num_chunks, 1)))
    return int(min(max(n1, cfg.n1_min), cfg.n1_max, num_chunks))


def resolve_budgets(cfg: CascadeConfig, num_chunks: int, k: int | None = None) -> Budgets:
    """Concrete budgets for an index of `num_chunks` chunks; `k` overrides cfg.k.

    Raises ValueError when k <= 0 or k > num_chunks (the user asked for more than exists).
    Order is kept: k <= N2 <= N1 <= depth-union, each clamped to num_chunks.
    """
    k = cfg.k if k is None else k
    if k <= 0:
        raise ValueError(f"k must be > 0, got {k}")
    if k > num_chunks:
        raise ValueError(f"k={k} is larger than the index ({num_chunks} chunks)")
    n1 = min(cfg.n1, num_chunks) if cfg.n1 else auto_n1(cfg, num_chunks)
    n1 = max(n1, k)
    n2 = min(max(cfg.n2, k), n1)
    depth = min(cfg.depth or n1, num_chunks)
    return Budgets(k=k, n1=n1, depth=max(depth, k), n2=n2)


def cascade_config(
    path: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    k: int | None = None,
    hops: int | None = None,
) -> CascadeConfig:
    """CascadeConfig from defaults, a YAML file (`--config`) and key=value overrides (`--set`), then the
    `-k` / `--hops` flags. Each value has one home, the config field: a flag that contradicts a `k=` or
    `hops=` given in the overrides or the file is a one-line ValueError, not silently one or the other."""
    from util.configs import resolve_config

    overrides = list(overrides)
    cfg = resolve_config(CascadeConfig, path, overrides)
    given = explicit_fields(path, overrides)
    for flag, name, value in (("-k", "k", k), ("--hops", "hops", hops)):
        if value is None:
            continue
        if value <= 0:
            raise ValueError(f"{flag} must be > 0, got {value}")
        if name in given and getattr(cfg, name) != value:
            raise ValueError(
                f"{flag} {value} contradicts {name}={getattr(cfg, name)} from --set/--config: give it once"
            )
        cfg = dataclasses.replace(cfg, **{name: value})
    return cfg


def explicit_fields(path: str | None, overrides: list[str] | tuple[str, ...]) -> set[str]:
    """CascadeConfig fields a YAML file or key=value overrides set (not left at their defaults)."""
    import yaml

    from util.configs import parse_overrides

    given = set(parse_overrides(list(overrides), CascadeConfig))
    if path:
        with open(path, encoding="utf-8") as f:
            loaded = yaml.safe_load(f) or {}
        given |= set(loaded) if isinstance(loaded, dict) else set()
    return given
