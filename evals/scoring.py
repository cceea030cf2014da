"""Scoring: where each needle lives in the index, whether a retrieval found it, and cell summaries.

A needle counts as retrieved when one retrieved neighbour text (chunk + its continuation, as RETRO
reads it) holds, whitespace-normalised, its whole sentence or its *answer span* (`{key} is: {value}.`
for key/value needles, see `evals.needles.answer_span`): a needle cut by a chunk boundary before its
key leaves the span whole in the next chunk, and that neighbour answers the question on its own.
The strict test (whole sentence only) is kept beside it as `found_whole` / `retrieval_recall_whole`.
`NeedleLocator` finds, once per needle, the chunks of its document whose neighbour text passes (the
*gold* chunks); a retrieval finds the needle iff one of its chunk ids is gold, which is the same test
as reading every retrieved neighbour but costs a set lookup per stage.
Answers are scored with RULER's metric: the fraction of expected strings present in the answer,
case-insensitive; None when there is no answer.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np


def normalize_ws(text: str) -> str:
    """Collapse every whitespace run to one space and strip the ends."""
    return " ".join(text.split())


def needle_in_text(needle: str, text: str) -> bool:
    """True when the whole needle sentence, whitespace-normalised, lies inside `text`."""
    return normalize_ws(needle) in normalize_ws(text)


def _loose(text: str) -> str:
    return "".join(text.split()).casefold()


def answer_recall(answer: str | None, expected: Sequence[str]) -> float | None:
    """RULER's string-match metric: share of `expected` strings found in `answer` (case-insensitive)."""
    if answer is None or not expected:
        return None
    a = answer.lower()
    return sum(e.lower() in a for e in expected) / len(expected)


def first_rank(gold: set[int], ids: Iterable[int]) -> int | None:
    """1-based rank of the first gold chunk id in `ids` (as `retro ask` ranks neighbours), None when absent."""
    for r, i in enumerate(ids, start=1):
        if int(i) in gold:
            return r
    return None


class NeedleLocator:
    """Maps a needle (document ordinal in corpus.jsonl, doc id, offset, sentence) to its gold chunks."""

    def __init__(self, index):
        """Read the chunk -> document map of `index` once (num_chunks int64)."""
        self.index = index
        docs = np.asarray(index.chunk_doc(np.arange(index.num_chunks, dtype=np.int64)), dtype=np.int64)
        if len(docs) and np.any(np.diff(docs) < 0):
            order = np.argsort(docs, kind="stable")
        else:
            order = np.arange(len(docs))
        self._order = order
        self._docs_sorted = docs[order]
        self._by_id: dict[str, int] | None = None

    def doc_chunks(self, doc_index: int) -> np.ndarray:
        """Global chunk ids of document `doc_index`, in order."""
        lo, hi = np.searchsorted(self._docs_sorted, [doc_index, doc_index + 1])
        return self._order[lo:hi]

    def _doc_index(self, doc_index: int, doc_id: str) -> int | None:
        ids = self.doc_chunks(doc_index)
        if len(ids) and self.index.provenance(ids[:1])[0]["doc_id"] == doc_id:
            return doc_index
        if self._by_id is None:  # the index dropped or reordered documents: map ids once
            firsts = (
                self._order[np.r_[0, np.flatnonzero(np.diff(self._docs_sorted)) + 1]]
                if len(self._order)
                else []
            )
            prov = self.index.provenance(np.asarray(firsts, dtype=np.int64))
            self._by_id = {p["doc_id"]: int(p["doc_index"]) for p in prov}
        return self._by_id.get(doc_id)

    def locate(
        self, doc_index: int, doc_id: str, offset: int, sentence: str, span: str | None = None
    ) -> dict:
        """Gold chunk ids of one needle (neighbour text holds the sentence or the answer `span`),
        `whole_chunks` (it holds the whole sentence), the chunks its characters fall in, and whether
        it straddles a chunk boundary in the real tokenisation. `method` is 'exact' or 'loose' (case
        and whitespace ignored, used only when the exact test finds nothing) or 'missing'."""
        di = self._doc_index(doc_index, doc_id)
        if di is None:
            return {
                "gold_chunks": [],
                "whole_chunks": [],
                "method": "missing",
                "needle_chunks": [],
                "straddles": None,
            }
        ids = self.doc_chunks(di)
        texts = self.index.neighbour_text(ids)
        whole = [int(i) for i, t in zip(ids, texts, strict=True) if needle_in_text(sentence, t)]
        method = "exact"
        if not whole:
            ls = _loose(sentence)
            whole = [int(i) for i, t in zip(ids, texts, strict=True) if ls in _loose(t)]
            method = "loose" if whole else "missing"
        gold = list(whole)
        if span:
            test = needle_in_text if method != "loose" else (lambda s, t: _loose(s) in _loose(t))
            gold = sorted(set(whole) | {int(i) for i, t in zip(ids, texts, strict=True) if test(span, t)})
        prov = self.index.provenance(ids)
        end = offset + len(sentence)
        spans = [
            int(i) for i, p in zip(ids, prov, strict=True) if p["char_start"] < end and p["char_end"] > offset
        ]
        return {
            "gold_chunks": gold,
            "whole_chunks": whole,
            "method": method,
            "needle_chunks": spans,
            "straddles": len(spans) > 1 if spans else None,
        }


def _p50(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 3) if xs else None


def summarize(samples: list[dict], stages_order: Sequence[str] | None = None) -> list[dict]:
    """Rows, one per (haystack, task, tokens, needles) cell, from samples.jsonl records."""
    cells: dict[tuple, list[dict]] = defaultdict(list)
    order: dict[str, int] = {}  # retrievers in the order they first appear (the order asked)
    for s in samples:
        c = s["cell"]
        ret = c.get("retriever") or ""
        order.setdefault(ret, len(order))
        cells[(c["haystack"], c["task"], c["tokens"], c["needles"], ret)].append(s)
    rows = []
    for (hay, task, tokens, n, ret), ss in sorted(
        cells.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][3], order[kv[0][4]])
    ):
        needles = [nd for s in ss for nd in s["needles"]]
        stages = list(stages_order or [])
        for nd in needles:
            for st in nd["found_by_stage"]:
                if st not in stages:
                    stages.append(st)
        by_trial: dict[int, list[bool]] = defaultdict(list)
        for s in ss:
            by_trial[s["cell"]["trial"]].extend(nd["found"] for nd in s["needles"])
        by_depth: dict[int, list[bool]] = defaultdict(list)
        for nd in needles:
            by_depth[nd["depth_bucket"]].append(nd["found"])
        answers = [s["answer_recall"] for s in ss if s.get("answer_recall") is not None]
        answer_by_depth: dict[int, list[float]] = defaultdict(list)
        for s in ss:  # a sample's answer counts in the depth bucket of each needle it needs
            if s.get("answer_recall") is not None:
                for nd in s["needles"]:
                    answer_by_depth[nd["depth_bucket"]].append(s["answer_recall"])
        abstained = [s["abstained"] for s in ss if s.get("abstained") is not None]
        lat = [s["latency_ms"]["total"] for s in ss]
        stage_lat = {st: _p50([s["latency_ms"][st] for s in ss if st in s["latency_ms"]]) for st in stages}
        tot = max(len(needles), 1)
        found = sum(nd["found"] for nd in needles) / tot
        rows.append(
            {
                "haystack": hay,
                "task": task,
                "retriever": ret or None,
                "tokens": tokens,
                "needles": n,
                "context_tokens": int(statistics.mean(s["context_tokens"] for s in ss)),
                "trials": len(by_trial),
                "samples": len(ss),
                "needles_total": len(needles),
                "k": ss[0].get("k"),
                "retrieval_recall": round(found, 6),
                "retrieval_recall_whole": round(
                    sum(nd.get("found_whole", nd["found"]) for nd in needles) / tot, 6
                ),
                "recall_by_stage": {
                    st: round(sum(bool(nd["found_by_stage"].get(st)) for nd in needles) / tot, 6)
                    for st in stages
                },
                "all_found_rate": round(sum(all(v) for v in by_trial.values()) / len(by_trial), 6),
                "sample_all_found_rate": round(sum(s["found"] for s in ss) / len(ss), 6),
                "recall_by_depth": {str(b): round(sum(v) / len(v), 6) for b, v in sorted(by_depth.items())},
                "straddling_needles": sum(bool(nd.get("straddles")) for nd in needles),
                "straddling_recall": _ratio([nd["found"] for nd in needles if nd.get("straddles")]),
                "unfindable_needles": sum(not nd["gold_chunks"] for nd in needles),
                "answer_recall": round(statistics.mean(answers), 6) if answers else None,
                "answer_by_depth": {
                    str(b): round(statistics.mean(v), 6) for b, v in sorted(answer_by_depth.items())
                },
                "abstain_rate": _ratio(abstained),
                "answer_vs_retrieval": round(statistics.mean(answers) / max(found, 1e-9), 6)
                if answers
                else None,
                "latency_ms_p50": _p50(lat),
                "latency_ms_p50_by_stage": stage_lat,
                "warnings": sorted({w for s in ss for w in s.get("warnings", [])}),
            }
        )
    return rows


def _ratio(xs: list[bool]) -> float | None:
    return round(sum(xs) / len(xs), 6) if xs else None
