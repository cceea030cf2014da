"""Retrieve -> read -> cite: the shipped RETRO reader answering through `pipelines.answer.ask` over a
real BM25 index, and `retro ask` printing its answer, citations and evidence."""

from __future__ import annotations

import json
import random
import re

import pytest

from evals.entities import distractor_facts, make_facts
from evals.filler import words_docs
from evals.retrievers import IndexRetriever
from index import Index
from pipelines.answer import ask, cited_sentences, hop_question, load_reader, next_search
from pipelines.cli import main
from pipelines.query import MAX_QUERY_WORDS
from pipelines.results import Truncation
from tests.conftest import build_small_index

VALUE = "4829175"
SINGLE = f"One of the special magic numbers for lemon-parrot is: {VALUE}."
QUESTION = "What is the special magic number for lemon-parrot mentioned in the provided text?"


@pytest.fixture(scope="module")
def facts():
    return make_facts(random.Random(7), 0, set())


@pytest.fixture(scope="module")
def index_path(tmp_path_factory, facts):
    """~20 filler documents with a key/value needle and the two facts of a two-hop question."""
    filler = words_docs(seed=3, doc_chars=1500)
    docs = [{"id": doc_id, "text": text} for doc_id, text in (next(filler) for _ in range(20))]
    docs[4]["text"] += " " + SINGLE
    docs[9]["text"] = facts.fact1 + " " + docs[9]["text"]
    docs[15]["text"] += " " + facts.fact2
    # look-alike facts of the same relations, so the question alone does not reach fact 2
    look_alike = distractor_facts(random.Random(11), 0, frozenset({facts.bridge, facts.answer}))
    for i in range(20):
        docs[i]["text"] += " " + " ".join(next(look_alike) for _ in range(3))
    return build_small_index(docs, tmp_path_factory.mktemp("answer"), vocab_size=600)


@pytest.fixture(scope="module")
def reader():
    return load_reader()


def test_answer_cites_spans_present_in_the_evidence(index_path, reader):
    retriever = IndexRetriever(Index.open(index_path), depth=50, mode="bm25")
    res = ask(retriever, reader, QUESTION, k=5)
    a = res.answer
    assert a.abstained == (a.text is None) and len(a.hops) == 1
    assert res.latency_ms["reader"] == pytest.approx(a.latency_ms, abs=1e-3) and a.latency_ms > 0
    texts = {n.rank: n.text for n in res.neighbours}
    assert set(a.hops[0].evidence) <= set(texts)
    for c in a.citations:  # every citation is a real span of a neighbour that holds the answer
        span = texts[c.rank][c.char_start : c.char_end]
        assert span and (span in a.text or a.text in span)
        assert c.chunk == next(n.chunk for n in res.neighbours if n.rank == c.rank)
    assert a.text in (VALUE, None)  # the one number in the evidence, or nothing: never an invented string
    assert bool(a.citations) == (a.text is not None)


def test_hops_carry_the_bridge(index_path, reader, facts):
    retriever = IndexRetriever(Index.open(index_path), depth=50, mode="bm25")
    res = ask(retriever, reader, facts.question, k=10, hops=3)  # fact 2 is 6th-10th for hop 2
    log = res.answer.hops
    assert log[0].query == facts.question and 1 <= len(log) <= 3
    for h in range(1, len(log)):  # each hop read the question and the latest bridge
        assert log[h].query == hop_question(facts.question, [x.answer for x in log[:h]])
        assert log[h].query == f"{facts.question} {log[h - 1].answer}"
        # ... and searched the bridge and the question's words the cited link does not hold
        bridge = log[h - 1].answer
        assert log[h].search.startswith(bridge + " ")
        rest = log[h].search[len(bridge) + 1 :].split()
        assert rest == [w for w in facts.question.split() if w in rest]
        assert len(rest) < len(facts.question.split())
    assert log[0].search == ""  # hop 1 searched what it read
    assert [n.hop for n in res.neighbours] == sorted(n.hop for n in res.neighbours)
    answers = [h.answer for h in log]
    # the shipped reader follows this chain: hop 1 names the bridge, hop 2 (question + bridge) the answer
    assert answers[:2] == [facts.bridge, facts.answer] and res.answer.text == facts.answer
    given = [x for x in answers if x is not None]
    assert len(set(given)) == len(given)  # a chain never revisits a node: earlier bridges are excluded
    if len(log) < 3:  # stopped early: the reader abstained (it cannot repeat itself)
        assert answers[-1] is None
    assert res.answer.text == next((x for x in reversed(answers) if x is not None), None)


def test_ask_cli_prints_the_answer_and_evidence(index_path, capsys):
    args = ["ask", str(index_path), QUESTION, "-k", "3", "--set", "medium=off", "--set", "expensive=off"]
    assert main([*args, "--set", "expand=false", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["answer"]["text"] in (VALUE, None) and rec["answer"]["abstained"] == (
        rec["answer"]["text"] is None
    )
    assert rec["answer"]["mode"] in ("constrained", "free") and rec["latency_ms"]["reader"] > 0
    assert main([*args, "--set", "expand=false"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("answer: ") and "| 1 |" in out
    assert main([*args, "--set", "expand=false", "--no-reader", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] is None
    assert main([*args, "--reader", str(index_path / "nope")]) == 2
    assert "no such checkpoint folder" in capsys.readouterr().err


def test_a_long_question_is_cut_before_search_and_reader(index_path, reader):
    retriever = IndexRetriever(Index.open(index_path), depth=50, mode="bm25")
    long_q = QUESTION + " " + " ".join(f"word{i}" for i in range(300))
    res = ask(retriever, reader, long_q, k=3)
    assert res.query == long_q  # the question as asked; what was searched and read is its first words
    assert res.truncation == Truncation("query", len(long_q.split()), MAX_QUERY_WORDS, unit="words")
    searched = res.answer.hops[0].query
    assert len(searched.split()) == MAX_QUERY_WORDS and long_q.startswith(searched)
    with pytest.raises(ValueError, match="no searchable words"):
        ask(retriever, reader, "🙂🙂", k=3)


def test_next_search_keeps_the_bridge_and_what_the_cited_sentence_lacks():
    texts = [
        "The soft oasis pulls the fiddle.",
        "The glad bagel sells the thistle. Shipment KX-43527 is carried by the courier Hugo Fischer. The end",
    ]
    a = texts[1].index("Hugo")

    class Out:  # the reader's output as `ask` reads it: citations into the texts it read
        citations = [{"neighbour": 1, "char_start": a, "char_end": a + len("Hugo Fischer")}]

    sentences = cited_sentences(Out, texts)
    assert [s.strip() for s in sentences] == ["Shipment KX-43527 is carried by the courier Hugo Fischer."]
    covered = set().union(*(set(re.findall(r"\w+", s.lower())) for s in sentences))
    q = "Who supervises the courier who carries shipment KX-43527?"
    assert next_search(q, "Hugo Fischer", covered) == "Hugo Fischer Who supervises who carries"
    assert next_search(q, "Hugo Fischer", set()) == f"Hugo Fischer {q}"
