"""The typed results of retrieval: what a stage, a hop and a whole search return, and their JSON.

One `SearchResult` flows from the cascade (or any retriever, pipelines/retrievers.py) to the CLI's
`--json`, the evals' samples.jsonl, bench and the reader, so every consumer prints the same object
and nobody reads an untyped dict of stage details.

`STAGES` is the one ordered list of what a hop ranks and times. The latency dict, each neighbour's
per-stage evidence and the printed table (pipelines/search_cli.py) all derive from it: adding a
stage means writing its function, calling it in `Cascade.run_hop` and adding one `StageSpec` here.

Legend: n candidates.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipelines.cascade_config import Budgets
from pipelines.expansion import Expansion
from pipelines.fusion import ranks_of


@dataclass(frozen=True)
class StageSpec:
    """One entry of the ordered stage list."""

    name: str  # key in latency_ms / neighbour evidence / table header
    part_of: str | None = None  # a raw list inside this stage's result (its time is inside that stage's)
    ranks: bool = True  # it ranks chunks (has evidence); False for a timed step such as query encoding
    column: bool = True  # shown as a column of the printed table


STAGES: tuple[StageSpec, ...] = (
    StageSpec("bm25", part_of="cheap"),
    StageSpec("static", part_of="cheap"),
    StageSpec("expanded", part_of="cheap", column=False),
    StageSpec("cheap"),
    StageSpec("query_encode", ranks=False, column=False),
    StageSpec("pages", part_of="medium", column=False),
    StageSpec("medium"),
    StageSpec("expensive"),
)


@dataclass(frozen=True, eq=False)
class Ranked:
    """One ranked list of chunk ids with its scores and the time it took."""

    ids: np.ndarray  # [n] int64 global chunk ids, best first
    scores: np.ndarray  # [n] float32 scores of this list
    time_ms: float = 0.0  # wall time spent producing it


@dataclass(frozen=True, eq=False)
class StageResult:
    """One stage's output: candidates best first, their scores, its time, and what it decided on the way."""

    name: str  # "cheap" | "medium" | "expensive" (or a retriever's own list name, e.g. "bm25", "dense")
    ids: np.ndarray  # [n] int64 global chunk ids, best first
    scores: np.ndarray  # [n] float32 this stage's scores
    time_ms: float  # wall time of the stage
    mode: str = (
        ""  # how it ran: cheap the fusion; medium stored|ondemand|off; expensive late_interaction|dense|off
    )
    lists: Mapping[str, Ranked] = field(
        default_factory=dict
    )  # raw lists it fused (cheap: bm25, static, expanded)
    expansion: Expansion | None = None  # cheap: the expanded query terms (None when expansion is off)
    literalness: float = 1.0  # cheap: how literally the corpus answers the query, in [0, 1]
    focus: float = 0.0  # medium: how much the cheap order dwells on its top document, in [0, 1] (pages.py)
    score_text: str = ""  # cheap: what the dense stages encode (chunk | neighbour | sentences)
    fusion_ms: float = 0.0  # cheap: time of fusion, interleaving and exclusion
    dense: Mapping[int, float] = field(default_factory=dict)  # chunk id -> dense cosine (medium, expensive)
    maxsim: Mapping[int, float] = field(default_factory=dict)  # chunk id -> MaxSim score (expensive)
    scored: int = 0  # medium: candidates actually scored (on demand stops at its time budget)
    duplicates: Mapping[int, tuple[int, ...]] = field(
        default_factory=dict
    )  # expensive: kept id -> near-identical candidates folded into it (pipelines/duplicates.py)

    def ranked(self) -> Ranked:
        """This stage's own list as a `Ranked`."""
        return Ranked(self.ids, self.scores, self.time_ms)


@dataclass(frozen=True, eq=False)
class HopResult:
    """One hop: the query it ran, each stage's result, its timed steps and the ids it returned."""

    query: str  # the text this hop searched with
    stages: Mapping[str, StageResult]  # stage name -> result, in run order
    final: list[int]  # ids this hop returns, best first (the cascade: the expensive stage's)
    step_ms: Mapping[str, float] = field(default_factory=dict)  # timed steps that rank nothing (query_encode)
    truncated: bool = False  # the dense model dropped the query's tail (longer than max_query_tokens)
    new_ids: list[int] = field(default_factory=list)  # final ids no earlier hop had returned

    def ranked(self, name: str) -> Ranked | None:
        """The list called `name`: a stage's own, or a raw list inside a stage; None when absent."""
        if name in self.stages:
            return self.stages[name].ranked()
        for st in self.stages.values():
            if name in st.lists:
                return st.lists[name]
        return None

    def list_names(self, stages: Sequence[StageSpec] = STAGES) -> list[str]:
        """Names of the ranked lists this hop has: in `stages` order, then any others (a retriever's own)."""
        known = [s.name for s in stages if s.ranks and self.ranked(s.name) is not None]
        return known + [n for n in self.stages if n not in known]

    def timed(self, stages: Sequence[StageSpec] = STAGES) -> dict[str, float]:
        """Top-level times of this hop (stages and steps, not the lists inside a stage), `stages` order first."""
        out = {s.name: self._time(s.name) for s in stages if s.name in self.stages or s.name in self.step_ms}
        out.update({n: st.time_ms for n, st in self.stages.items() if n not in out})
        return {n: v for n, v in out.items() if v is not None}

    def _time(self, name: str) -> float | None:
        if name in self.stages:
            return self.stages[name].time_ms
        return self.step_ms.get(name)


@dataclass(frozen=True)
class Evidence:
    """One neighbour's standing in one ranked list."""

    score: float | None  # its score in that list (None when the list did not rank it)
    rank: int | None  # 1-based rank in that list (None when absent)
    cosine: float | None = None  # medium: dense cosine of query and neighbour, when scored
    maxsim: float | None = None  # expensive: MaxSim late-interaction score, when scored

    def to_dict(self) -> dict:
        out = {"score": self.score, "rank": self.rank}
        out.update({k: v for k, v in (("maxsim", self.maxsim), ("cosine", self.cosine)) if v is not None})
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> Evidence:
        return cls(d.get("score"), d.get("rank"), d.get("cosine"), d.get("maxsim"))


@dataclass(frozen=True)
class Duplicate:
    """A chunk whose text is (near-)identical to a neighbour's, folded into it: only where it lives."""

    chunk: int  # global chunk id
    doc_id: str  # the document's id
    doc_index: int  # global document index
    source: str  # file the document came from
    line: int | None  # line of a jsonl source (None for a plain file)
    char_start: int  # first character of the chunk within its document's text
    char_end: int  # end character (exclusive)


@dataclass(frozen=True)
class Neighbour:
    """One retrieved chunk with its text, where it comes from and its evidence in every list."""

    rank: int  # 1-based rank over all hops (hop 1 first)
    chunk: int  # global chunk id
    hop: int  # 1-based hop that found it
    text: str  # chunk + continuation, as the reader sees it
    doc_id: str  # the document's id
    doc_index: int  # global document index
    source: str  # file the document came from
    line: int | None  # line of a jsonl source (None for a plain file)
    token_start: int  # first token of the chunk within its document
    char_start: int  # first character of the chunk within its document's text
    char_end: int  # end character (exclusive)
    stages: Mapping[str, Evidence] = field(default_factory=dict)  # list name -> evidence, STAGES order
    duplicates: tuple[Duplicate, ...] = ()  # other chunks with the same text, collapsed into this one

    def to_dict(self) -> dict:
        nested = ("stages", "duplicates")
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in nested}
        d["stages"] = {name: ev.to_dict() for name, ev in self.stages.items()}
        d["duplicates"] = [dataclasses.asdict(x) for x in self.duplicates]
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> Neighbour:
        names = [f.name for f in dataclasses.fields(cls) if f.name not in ("stages", "duplicates")]
        return cls(
            **{n: d[n] for n in names},
            stages={s: Evidence.from_dict(e) for s, e in d["stages"].items()},
            duplicates=tuple(Duplicate(**x) for x in d.get("duplicates", ())),
        )


@dataclass(frozen=True)
class Truncation:
    """The query was longer than a tier takes: what was kept.

    "query": the bound every tier reads (pipelines/query.py, MAX_QUERY_WORDS words), applied first;
    "dense": the dense model's window (max_query_tokens WordPiece tokens) cut a query within that bound.
    """

    model: str  # what cut it: "query" (every tier) | "dense" (the medium and expensive stages only)
    query_tokens: int  # the query's length, in `unit`
    max_tokens: int  # how many of them were kept
    unit: str = "tokens"  # "words" (the query bound) | "tokens" (the dense model's WordPiece tokens)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Citation:
    """Where the answer occurs in one neighbour the reader drew from."""

    rank: int  # 1-based rank of the neighbour in the result's neighbour list
    chunk: int  # its global chunk id
    char_start: int  # start of the answer within that neighbour's text
    char_end: int  # end (exclusive)


@dataclass(frozen=True)
class HopAnswer:
    """One hop of reading: what was searched, what the reader said, which neighbours it read."""

    hop: int  # 1-based
    query: str  # what the reader read: the question, then the latest bridge from hop 2 on
    answer: str | None  # the reader's answer at this hop (None: abstained)
    evidence: tuple[int, ...]  # ranks (in the result's neighbour list) of the neighbours it read
    latency_ms: float  # reader time of this hop
    search: str = ""  # what this hop searched with, when not `query` (pipelines.answer.next_search)


@dataclass(frozen=True)
class Answer:
    """The reader's answer to a question, with the spans it drew from; never a string it did not generate."""

    text: str | None  # the answer; None when the evidence does not hold it
    abstained: bool  # the reader said the evidence lacks the answer
    citations: tuple[Citation, ...]  # every neighbour span where the answer (or a part of it) occurs
    mode: str  # decoding mode: "constrained" (copy from the neighbours only) | "free"
    reader: str  # which reader checkpoint answered
    latency_ms: float  # reader time summed over hops
    hops: tuple[HopAnswer, ...]  # the reading log, one entry per hop

    def to_dict(self) -> dict:
        """The `answer` object of the ask JSON."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, eq=False)
class SearchResult:
    """What every retriever returns: ranked neighbours with evidence, per-stage latency and each hop.

    `answer` is the reader's slot: None until a reader fills it (`with_answer`); nothing invents one.
    """

    query: str  # the question as asked
    k: int  # neighbours per hop
    budgets: Budgets | None  # cascade stage sizes (None for a retriever without stages)
    neighbours: tuple[Neighbour, ...]  # ranked, deduplicated over hops (hop 1 first)
    latency_ms: Mapping[str, float]  # top-level stage/step times summed over hops, plus "total"
    hops: tuple[HopResult, ...]  # each hop's query, stage results and ids
    truncation: Truncation | None = None  # set when the query bound or a model cut the query
    medium_mode: str | None = None  # "stored" | "ondemand" | "off" (None without a medium stage)
    answer: Answer | None = None  # the reader's answer (pipelines/answer.py); None without a reader

    def with_answer(self, answer: Answer | None) -> SearchResult:
        """The same result with the reader's answer attached."""
        return dataclasses.replace(self, answer=answer)

    def final_ids(self) -> list[int]:
        """Neighbour chunk ids, best first."""
        return [n.chunk for n in self.neighbours]

    def stage_ids(self, stages: Sequence[StageSpec] = STAGES) -> dict[str, list[int]]:
        """Ids each ranked list kept, best first, merged over hops (earlier hop first, no repeats)."""
        out: dict[str, list[int]] = {}
        for hop in self.hops:
            for name in hop.list_names(stages):
                seen = out.setdefault(name, [])
                have = set(seen)
                seen.extend(
                    i for i in (int(x) for x in hop.ranked(name).ids.tolist()) if i >= 0 and i not in have
                )
        return out

    def list_latency_ms(self) -> dict[str, float]:
        """Times of the raw lists inside stages (bm25, static, expanded), summed over hops."""
        out: dict[str, float] = {}
        for hop in self.hops:
            for st in hop.stages.values():
                for name, r in st.lists.items():
                    out[name] = out.get(name, 0.0) + r.time_ms
        return out

    def to_dict(self) -> dict:
        """The `retro search --json` object (README.md): query, neighbours, latency, hops, budgets."""
        b = self.budgets
        return {
            "query": self.query,
            "neighbours": [n.to_dict() for n in self.neighbours],
            "latency_ms": dict(self.latency_ms),
            "truncated": None if self.truncation is None else self.truncation.to_dict(),
            "hops": len(self.hops),
            "budgets": None if b is None else {"k": b.k, "n1": b.n1, "n2": b.n2, "depth": b.depth},
            "medium_mode": self.medium_mode,
        }

    def ask_dict(self, qid=None) -> dict:
        """The `retro ask` object (one line of `ask --out`): id, question, answer, then as `to_dict`."""
        d = self.to_dict()
        answer = None if self.answer is None else self.answer.to_dict()
        return {"id": qid, "question": d.pop("query"), "answer": answer, **d}

    def to_json(self, qid=None, ask: bool = False) -> str:
        """`to_dict` (or `ask_dict` with `ask`) as one line of JSON."""
        return json.dumps(self.ask_dict(qid) if ask else self.to_dict(), ensure_ascii=False)


def stage_evidence(hop: HopResult, cid: int, stages: Sequence[StageSpec] = STAGES) -> dict[str, Evidence]:
    """Score and 1-based rank of chunk `cid` in each list of one hop (None where it was not ranked),
    with the dense cosine on "medium" and the MaxSim on "expensive" when they scored it."""
    out: dict[str, Evidence] = {}
    for name in hop.list_names(stages):
        r = hop.ranked(name)
        if r is None or len(r.ids) == 0:
            out[name] = Evidence(None, None)
            continue
        rank = int(ranks_of(np.array([cid]), np.asarray(r.ids))[0])
        out[name] = Evidence(round(float(np.asarray(r.scores)[rank - 1]), 6) if rank else None, rank or None)
    exp, med = hop.stages.get("expensive"), hop.stages.get("medium")
    dense = (exp.dense if exp else {}) or (med.dense if med else {})
    if exp is not None and cid in exp.maxsim:
        out["expensive"] = dataclasses.replace(out["expensive"], maxsim=round(float(exp.maxsim[cid]), 6))
    if "medium" in out and cid in dense:
        out["medium"] = dataclasses.replace(out["medium"], cosine=round(float(dense[cid]), 6))
    return out


def latency_ms(
    hops: Sequence[HopResult], total_ms: float, stages: Sequence[StageSpec] = STAGES
) -> dict[str, float]:
    """Top-level times per stage and step summed over hops (in `stages` order), plus "total"; rounded to µs."""
    out: dict[str, float] = {}
    for hop in hops:
        for name, ms in hop.timed(stages).items():
            out[name] = out.get(name, 0.0) + ms
    out["total"] = total_ms
    return {name: round(v, 3) for name, v in out.items()}


def build_neighbours(
    index, hops: Sequence[HopResult], stages: Sequence[StageSpec] = STAGES
) -> tuple[Neighbour, ...]:
    """Every hop's final ids, deduplicated (earlier hop first), with text, provenance and stage evidence.

    A chunk an earlier row already lists as its duplicate (the "expensive" stage's `duplicates`) gets
    no row of its own."""
    order: list[tuple[int, int]] = []  # (chunk id, hop index)
    dups: dict[int, tuple[int, ...]] = {}  # kept chunk id -> ids folded into it
    seen: set[int] = set()
    for h, hop in enumerate(hops):
        folded = hop.stages["expensive"].duplicates if "expensive" in hop.stages else {}
        for i in hop.final:
            if i not in seen:
                seen.add(i)
                order.append((int(i), h))
                dups[int(i)] = tuple(int(d) for d in folded.get(i, ()) if d not in seen)
                seen.update(dups[int(i)])
    if not order:
        return ()
    ids = np.array([i for i, _ in order], np.int64)
    texts = index.neighbour_text(ids)
    prov = index.provenance(ids)
    dup_ids = np.array([d for i, _ in order for d in dups[i]], np.int64)
    dup_prov = dict(zip(dup_ids.tolist(), index.provenance(dup_ids) if dup_ids.size else [], strict=True))
    return tuple(
        Neighbour(
            rank=r,
            chunk=cid,
            hop=h + 1,
            text=text,
            doc_id=p["doc_id"],
            doc_index=p["doc_index"],
            source=p["source"],
            line=p["line"],
            token_start=p["token_start"],
            char_start=p["char_start"],
            char_end=p["char_end"],
            stages=stage_evidence(hops[h], cid, stages),
            duplicates=tuple(_duplicate(d, dup_prov[d]) for d in dups[cid]),
        )
        for r, ((cid, h), text, p) in enumerate(zip(order, texts, prov, strict=True), start=1)
    )


def _duplicate(cid: int, p: Mapping) -> Duplicate:
    """A folded chunk's `Duplicate` from its provenance dict."""
    keys = ("doc_id", "doc_index", "source", "line", "char_start", "char_end")
    return Duplicate(chunk=cid, **{key: p[key] for key in keys})
