"""Retrieve -> read -> cite, over bounded hops: the reader's place in the pipeline and its typed answer.

    from pipelines.answer import ask
    result = ask(cascade, reader, "Who supervises the courier who carries shipment KX-43527?", hops=2)
    result.answer.text          # "Jonas Mensah" (None when the reader abstained)
    result.answer.citations     # [Citation(rank=2, chunk=8812, char_start=40, char_end=52)]
    result.answer.hops          # each hop's query, what the reader answered and the evidence it read

The reader is any object with `answer(question, texts, mode=...)` returning the reader's output
(`text`, `abstained`, `citations` as [{"neighbour", "char_start", "char_end"}], `mode`,
`latency_ms`): `retro.reader.Reader` (the RETRO model, loaded by the CLI from a higher layer) is the
one the project ships. pipelines/ never imports retro/.

Multi-hop, one link per hop: hop 1 searches and reads the question; when the evidence answers it only
with a bridge (the person or variable the question needs next), hop h+1 reads the question followed
by the latest bridge (`hop_question`), "... shipment X? Mara Lindqvist", and the reader answers what
that bridge leads to. The reader was trained on exactly these hop questions (evals/reader_data.py).
The hop searches with the bridge and the question's words that the sentences cited so far do not hold
(`next_search`: "Mara Lindqvist Who supervises who carries"), so that the link already followed does
not fill the top k again. A chain never revisits a node, so each hop passes the bridges so far to the
reader as `exclude`: when its best answer is one of them it answers its next best, or abstains
(retro/reader.py `_next_best`; variable chains complete on the dev split: 14 -> 25 of 45). The loop
stops when the reader abstains (nothing follows the latest bridge: the last answer stands), repeats an
answer it gave (the chain has converged; a reader without `exclude` support) or after `hops` hops. Each hop
is logged with its query, answer and the ranks of the evidence it read.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pipelines.duplicates import words_of
from pipelines.query import bound_query, check_query_text
from pipelines.results import Answer, Citation, HopAnswer, SearchResult, latency_ms


@runtime_checkable
class Reader(Protocol):
    """Reads neighbour texts (best first) and answers the question from them, or abstains."""

    name: str  # identifies the checkpoint in outputs

    def answer(
        self, question: str, neighbours: Sequence[str], mode: str = ..., exclude: Sequence[str] = ...
    ) -> Any: ...  # exclude: answers ruled out (a chain's earlier bridges)

    def warm(self, k: int) -> None: ...  # compile / load lazily built parts for k neighbours


SENTENCE_ENDS = (". ", "! ", "? ", "\n")  # where a cited sentence starts and ends

READER_CLASS = (
    "retro.reader:Reader"  # the shipped RETRO reader, named so that pipelines/ never imports retro/
)


def load_reader(path: str | None = None, spec: str = READER_CLASS) -> Reader:
    """A reader by class spec (`module:Class` with a `load(path)`): path None = its shipped checkpoint."""
    if path is not None and not Path(path).is_dir():  # before the import: the reader's module loads jax
        raise ValueError(f"--reader {path}: no such checkpoint folder")
    module, _, name = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"reader {spec}: cannot load ({e})") from None
    return cls.load(path)


def hop_question(question: str, bridges: Sequence[str]) -> str:
    """What the next hop's reader reads: the question, then the latest bridge answer."""
    return " ".join([question.strip(), *bridges[-1:]])


def cited_sentences(out: Any, texts: Sequence[str]) -> list[str]:
    """The sentence around each span the reader cited (`texts`: the neighbour texts it read)."""
    found = []
    for c in getattr(out, "citations", None) or ():
        i, a, b = int(c["neighbour"]), int(c["char_start"]), int(c["char_end"])
        if 0 <= i < len(texts):
            text = texts[i]
            start = max(text.rfind(e, 0, a) for e in SENTENCE_ENDS)
            ends = [j for j in (text.find(e, b) for e in SENTENCE_ENDS) if j >= 0]
            found.append(text[start + 1 if start >= 0 else 0 : min(ends) + 1 if ends else len(text)])
    return found


def next_search(question: str, bridge: str, covered: set[str]) -> str:
    """What hop h+1 searches: the bridge, then the words of the question that the evidence read so far
    does not hold (`covered`: the words of the sentences the reader cited).

    Why: searching the question plus the bridge found the first link again. At 1M tokens (two-hop
    form 0, seed 0, BM25), "Who supervises the courier who carries shipment KX-43527? Hugo Fischer"
    ranked the cited "Shipment KX-43527 is carried by the courier Hugo Fischer." first and the next
    link 11th-44th among look-alike facts: of 90 questions whose first hop named the bridge, the
    next link was in the top 10 for 56; searching "Hugo Fischer Who supervises who carries" put it
    there for 90."""
    rest = [w for w in question.split() if not set(words_of(w)) <= covered]
    return " ".join([bridge, *rest])


def _cite(out: Any, read: Sequence, rank_of: dict[int, int]) -> tuple[Citation, ...]:
    """The reader's citations (positions in the neighbours it `read`) as ranks in the merged result."""
    cites = []
    for c in getattr(out, "citations", None) or ():
        i = int(c["neighbour"])
        if 0 <= i < len(read):
            chunk = read[i].chunk
            cites.append(Citation(rank_of[chunk], chunk, int(c["char_start"]), int(c["char_end"])))
    return tuple(cites)


def ask(
    retriever,
    reader: Reader,
    question: str,
    k: int | None = None,
    hops: int = 1,
    mode: str | None = None,
) -> SearchResult:
    """Search, read and cite over at most `hops` hops; the result carries the typed `Answer`.

    `retriever` follows the retriever protocol (pipelines/retrievers.py); each hop is one search.
    A question longer than `pipelines.query.MAX_QUERY_WORDS` words is cut there before the retriever
    and the reader read it (the result's `truncation` says so).
    Raises ValueError for an empty question or one without a searchable word, hops <= 0 (and whatever
    the retriever raises for k).
    """
    asked = check_query_text(question, "question")
    question, cut = bound_query(asked)
    if hops <= 0:
        raise ValueError(f"hops must be > 0, got {hops}")
    kwargs = {} if mode is None else {"mode": mode}
    t0 = time.perf_counter()
    results: list[SearchResult] = []
    log: list[HopAnswer] = []
    neighbours: list = []  # merged over hops, earlier hop first
    rank_of: dict[int, int] = {}  # chunk id -> rank in the merged list
    bridges: list[str] = []
    covered: set[str] = set()  # words of the sentences cited so far
    final, final_cites, final_mode, reader_ms = None, (), mode or "", 0.0
    for h in range(1, hops + 1):
        query = hop_question(question, bridges)
        search = next_search(question, bridges[-1], covered) if bridges else query
        res = retriever.search(search, k, hops=1)
        results.append(res)
        for n in res.neighbours:
            if n.chunk not in rank_of:
                rank_of[n.chunk] = len(neighbours) + 1
                neighbours.append(dataclasses.replace(n, rank=rank_of[n.chunk], hop=h))
        hop_ranks = tuple(rank_of[n.chunk] for n in res.neighbours)
        # a chain never revisits a node: the bridges so far are ruled out as this hop's answer
        hop_kwargs = {**kwargs, "exclude": tuple(bridges)} if bridges else kwargs
        texts = [n.text for n in res.neighbours]
        out = reader.answer(query, texts, **hop_kwargs)
        reader_ms += float(out.latency_ms)
        text = None if out.abstained else out.text
        log.append(
            HopAnswer(h, query, text, hop_ranks, round(float(out.latency_ms), 3), search if h > 1 else "")
        )
        final_mode = out.mode
        if text is None or text in bridges:
            if text == final:  # converged: this hop's evidence cites the answer too
                final_cites = _cite(out, res.neighbours, rank_of) or final_cites
            break  # abstained or repeated itself: the last answer stands
        final = text
        final_cites = _cite(out, res.neighbours, rank_of)
        bridges.append(text)
        for sentence in cited_sentences(out, texts):
            covered.update(words_of(sentence))
    total = (time.perf_counter() - t0) * 1e3
    answer = Answer(
        text=final,
        abstained=final is None,
        citations=final_cites,
        mode=final_mode,
        reader=getattr(reader, "name", type(reader).__name__),
        latency_ms=round(reader_ms, 3),
        hops=tuple(log),
    )
    hop_results = tuple(hop for r in results for hop in r.hops)
    first = results[0]
    lat = latency_ms(hop_results, total)
    lat = {
        **{n: v for n, v in lat.items() if n != "total"},
        "reader": round(reader_ms, 3),
        "total": lat["total"],
    }
    return dataclasses.replace(
        first,
        query=asked,
        neighbours=tuple(neighbours),
        latency_ms=lat,
        hops=hop_results,
        truncation=cut or next((r.truncation for r in results if r.truncation), None),
        answer=answer,
    )
