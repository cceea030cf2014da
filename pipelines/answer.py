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

Multi-hop: the reader answers with the *furthest link it can reach* from the question through the
evidence it reads: the bridge (the person or variable the question needs next) while the chain is
incomplete, the answer once it is complete. Hop h+1 searches with the question followed by the latest
bridge (`hop_question`), so "who supervises the courier who carries shipment X" searches "... shipment
X? Mara Lindqvist" once fact 1 named the courier; the reader reads the question as asked over the
neighbours cited at earlier hops (the links followed so far, at most `CARRY` per hop) followed by hop
h+1's own. The loop stops when the reader abstains (the last answer stands), repeats an answer it gave
(the chain has converged) or after `hops` hops. Each hop is logged with its query, answer and the ranks
of the evidence it read.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pipelines.query import bound_query, check_query_text
from pipelines.results import Answer, Citation, HopAnswer, SearchResult, latency_ms


@runtime_checkable
class Reader(Protocol):
    """Reads neighbour texts (best first) and answers the question from them, or abstains."""

    name: str  # identifies the checkpoint in outputs

    def answer(self, question: str, neighbours: Sequence[str], mode: str = ...) -> Any: ...

    def warm(self, k: int) -> None: ...  # compile / load lazily built parts for k neighbours


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


CARRY = 3  # neighbours cited by one hop's answer that later hops read again (the links followed so far)


def hop_question(question: str, bridges: Sequence[str]) -> str:
    """What the next hop searches with: the question, then the latest bridge answer (earlier links are
    already in the carried evidence)."""
    return " ".join([question.strip(), *bridges[-1:]])


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
    final, final_cites, final_mode, reader_ms = None, (), mode or "", 0.0
    carried: list = []  # neighbours cited at earlier hops: the links followed so far
    limit = getattr(reader, "max_neighbours", None)  # the most the reader reads at once
    for h in range(1, hops + 1):
        query = hop_question(question, bridges)
        res = retriever.search(query, k, hops=1)
        results.append(res)
        for n in res.neighbours:
            if n.chunk not in rank_of:
                rank_of[n.chunk] = len(neighbours) + 1
                neighbours.append(dataclasses.replace(n, rank=rank_of[n.chunk], hop=h))
        seen = {n.chunk for n in carried}
        read = (carried + [n for n in res.neighbours if n.chunk not in seen])[:limit]
        out = reader.answer(question, [n.text for n in read], **kwargs)
        reader_ms += float(out.latency_ms)
        text = None if out.abstained else out.text
        log.append(
            HopAnswer(h, query, text, tuple(rank_of[n.chunk] for n in read), round(float(out.latency_ms), 3))
        )
        final_mode = out.mode
        cites = _cite(out, read, rank_of)
        if text is None or text in bridges:
            if text == final:  # converged: this hop's evidence cites the answer too
                final_cites = cites or final_cites
            break  # abstained or repeated itself: the last answer stands
        final, final_cites = text, cites
        bridges.append(text)
        new = [c.chunk for c in cites if c.chunk not in seen]
        by_chunk = {n.chunk: n for n in read}
        carried += [by_chunk[c] for c in dict.fromkeys(new)][:CARRY]
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
