"""The cascade over real tiny indexes (real sentencepiece, BM25, FAISS, MiniLM): stages, hops, CLI, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from index import Index
from index.build import BuildConfig, build_index
from pipelines.cascade import Cascade
from pipelines.cascade_config import CascadeConfig
from pipelines.cli import main
from pipelines.dense import DenseEncoder, load_default_model
from pipelines.query import MAX_QUERY_WORDS
from pipelines.results import Truncation
from tests.conftest import stdlib_docs

FACT_A = "The Blue Falcon project is led by Marta Velasquez, a structural engineer from the coast."
FACT_B = "Marta Velasquez was born in Orrington, a fishing village known for its granite lighthouse."
QUESTION = "What is the birthplace of the Blue Falcon project's leader?"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """~14 real stdlib-docstring documents with two planted facts that chain (A names B's subject)."""
    docs = [{"id": d["id"], "text": d["text"][:2500]} for d in stdlib_docs(limit=12)]
    docs.insert(3, {"id": "falcon", "text": docs[3]["text"][:900] + "\n\n" + FACT_A})
    docs.insert(8, {"id": "velasquez", "text": FACT_B + "\n\n" + docs[8]["text"][:900]})
    path = tmp_path_factory.mktemp("cascade") / "corpus.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


@pytest.fixture(scope="module")
def dense_index(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("idx") / "dense"
    build_index(corpus, out, BuildConfig(vocab_size=800, dense="on"), quiet=True)
    return Index.open(out)


@pytest.fixture(scope="module")
def plain_index(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("idx") / "plain"
    build_index(corpus, out, BuildConfig(vocab_size=800, dense="off"), quiet=True)
    return Index.open(out)


@pytest.fixture(scope="module")
def encoder():
    """One MiniLM for every cascade in this module."""
    return DenseEncoder(load_default_model())


def _doc(idx, ids):
    return [p["doc_id"] for p in idx.provenance(np.asarray(ids))]


def test_every_stage_reports_candidates_scores_and_time(dense_index, encoder):
    cascade = Cascade(dense_index, CascadeConfig(), encoder=encoder)
    res = cascade.search("Who leads the Blue Falcon project?", k=3)
    hop = res.hops[0]
    b = res.budgets
    assert len(hop.stages["cheap"].ids) <= b.n1 and len(hop.stages["medium"].ids) <= b.n2
    assert len(hop.stages["expensive"].ids) == 3 == b.k
    for st in hop.stages.values():
        assert st.ids.dtype == np.int64 and len(st.ids) == len(st.scores) and st.time_ms >= 0
        assert np.all(np.diff(st.scores) <= 1e-6)  # best first
    assert res.medium_mode == "stored"
    assert set(res.latency_ms) == {"cheap", "query_encode", "medium", "expensive", "total"}
    top = res.neighbours[0]
    assert top.doc_id == "falcon" and FACT_A[:40] in " ".join(top.text.split())
    assert top.stages["expensive"].rank == 1 and top.stages["expensive"].maxsim is not None
    assert top.stages["bm25"].rank is not None and top.stages["medium"].cosine is not None
    # the neighbour is chunk + continuation, as RETRO reads it, and its offsets trace back
    assert top.text == dense_index.neighbour_text([top.chunk])[0]
    assert top.char_end > top.char_start >= 0


def test_stored_and_on_demand_medium_agree(dense_index, plain_index, encoder):
    q = "granite lighthouse fishing village"
    stored = Cascade(dense_index, CascadeConfig(medium="stored"), encoder=encoder).search(q, k=2)
    ondemand = Cascade(plain_index, CascadeConfig(), encoder=encoder).search(q, k=2)
    assert ondemand.medium_mode == "ondemand"
    assert stored.neighbours[0].doc_id == ondemand.neighbours[0].doc_id == "velasquez"
    # the stored vector and the query-time encoding of the same chunk are the same model's output
    cid = stored.neighbours[0].chunk
    on_vec = encoder.encode_chunks(np.array([cid]), dense_index.chunk_text([cid]))[0][1]
    assert float(on_vec @ dense_index.dense_vectors([cid])[0]) > 0.99
    with pytest.raises(ValueError, match="no stored dense"):
        Cascade(plain_index, CascadeConfig(medium="stored"), encoder=encoder)


def test_fusion_and_stage_switches(plain_index, encoder):
    for cfg in (
        CascadeConfig(fusion="rrf", expensive="dense"),
        CascadeConfig(fusion="bm25", medium="off"),
        CascadeConfig(fusion="zscore", expensive="off", w_final_bm25=0.5),
    ):
        res = Cascade(plain_index, cfg, encoder=encoder).search("Marta Velasquez born", k=2)
        assert res.neighbours and res.neighbours[0].doc_id == "velasquez"


def test_on_demand_medium_respects_its_time_budget(plain_index, encoder):
    cfg = CascadeConfig(ondemand_budget_ms=1e-3, ondemand_batch=4)
    res = Cascade(plain_index, cfg, encoder=encoder).search("granite lighthouse fishing village", k=6)
    med = res.hops[0].stages["medium"]
    assert med.mode == "ondemand" and med.scored == 8  # never below k: 2 passes of 4
    assert len(res.neighbours) == 6
    free = Cascade(plain_index, CascadeConfig(), encoder=encoder).search("granite lighthouse", k=6)
    pages = free.hops[0].ranked("pages").ids  # page candidates (pipelines/pages.py) come on top
    assert free.hops[0].stages["medium"].scored == 32 + len(pages)


@pytest.mark.slow
def test_multi_hop_follows_the_chain_and_stops_early(dense_index, encoder):
    cascade = Cascade(dense_index, CascadeConfig(), encoder=encoder)
    one = cascade.search(QUESTION, k=1, hops=1)
    assert [n.doc_id for n in one.neighbours] == ["falcon"]  # the leader's fact; birthplace needs a hop
    two = cascade.search(QUESTION, k=1, hops=4)
    docs = [n.doc_id for n in two.neighbours]
    assert docs[:2] == ["falcon", "velasquez"] and two.neighbours[1].hop == 2
    assert "Marta Velasquez" in two.hops[1].query
    # a hop that finds nothing new ends the loop: with k = every chunk, hop 2 can only repeat hop 1
    n = dense_index.num_chunks
    every = cascade.search(QUESTION, k=n, hops=3)
    assert len(every.hops) == 2 and every.hops[1].new_ids == []
    # every chunk comes back once: as a row, or listed under the row whose text it copies (falcon and
    # velasquez repeat the start of two other documents; pipelines/duplicates.py)
    back = [c for x in every.neighbours for c in (x.chunk, *(d.chunk for d in x.duplicates))]
    assert sorted(back) == list(range(n)) and len(every.neighbours) < n


def test_bad_input(plain_index, encoder, capfd):
    cascade = Cascade(plain_index, CascadeConfig(), encoder=encoder)
    for q in ("", "   \n"):
        with pytest.raises(ValueError, match="empty"):
            cascade.search(q)
    for q in ("🙂🙂", "?! -- ..."):
        with pytest.raises(ValueError, match="no searchable words"):
            cascade.search(q)
    assert cascade.search("the of and", k=2).neighbours  # stop words only: no BM25 terms, still searched
    for k in (0, -1, plain_index.num_chunks + 1):
        with pytest.raises(ValueError, match="k"):
            cascade.search("lighthouse", k=k)
    long_q = "lighthouse granite village " * 200  # 600 words: every stage reads the first 200
    res = cascade.search(long_q, k=2)
    assert res.truncation == Truncation("query", 600, MAX_QUERY_WORDS, unit="words")
    # within the word bound but past the dense model's window: the dense stages read its first 256 tokens
    from transformers.utils import logging as hf_logging

    wordy = "antidisestablishmentarianism " * 150
    hf_logging.set_verbosity_warning()  # load_dense silences transformers; its warnings must not need that
    try:
        res = cascade.search(wordy, k=2)
    finally:
        hf_logging.set_verbosity_error()
    t = res.truncation
    assert (t.model, t.max_tokens, t.unit) == ("dense", 256, "tokens") and t.query_tokens > 512
    assert "indexing errors" not in capfd.readouterr().err  # counting a long query is not running it
    assert cascade.search("lighthouse", k=2).truncation is None
    assert cascade.search("lighthouse", k=plain_index.num_chunks).k == plain_index.num_chunks


@pytest.mark.slow
def test_cli_search_and_ask(dense_index, tmp_path, capsys):
    idx = str(dense_index.path)
    assert main(["search", idx, "Blue Falcon project leader", "-k", "2", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["neighbours"][0]["doc_id"] == "falcon" and len(rec["neighbours"]) == 2
    assert set(rec["neighbours"][0]["stages"]) == {
        "bm25",
        "static",
        "expanded",
        "cheap",
        "pages",
        "medium",
        "expensive",
    }
    assert main(["search", idx, "Blue Falcon project leader", "-k", "2", "--set", "n2=8"]) == 0
    out = capsys.readouterr().out
    assert "| 1 |" in out and "latency ms" in out
    assert main(["ask", idx, QUESTION, "--json", "--hops", "2", "-k", "1", "--no-reader"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["answer"] is None and rec["hops"] == 2 and rec["latency_ms"]["total"] > 0

    q = tmp_path / "q.jsonl"
    q.write_text(
        '{"id": 1, "question": "Who leads the Blue Falcon project?"}\nnot json\n\n'
        '{"id": 2}\n{"question": "no id"}\n["list"]\n{"id": "b", "question": "granite lighthouse"}\n'
    )
    out_path = tmp_path / "a.jsonl"
    args = ["ask", idx, "--questions", str(q), "--out", str(out_path), "--quiet", "-k", "3", "--no-reader"]
    assert main(args) == 0
    err = capsys.readouterr().err
    for line in (2, 4, 5, 6):
        assert f"{q}:{line}:" in err
    lines = [json.loads(x) for x in out_path.read_text().splitlines()]
    assert [x["id"] for x in lines] == [1, "b"]
    for x in lines:
        assert x["answer"] is None and len(x["neighbours"]) == 3
        n = x["neighbours"][0]
        assert {"text", "doc_id", "char_start", "char_end", "token_start", "stages"} <= set(n)
        assert set(x["latency_ms"]) >= {"cheap", "medium", "expensive", "total"}
    meta = json.loads((tmp_path / "a.jsonl.meta.json").read_text())
    assert meta["answered"] == 2 and meta["skipped"] == 4

    assert main(["search", idx, "  "]) == 2
    assert main(["search", idx, "x", "-k", "0"]) == 2
    assert main(["ask", idx, "--questions", str(q)]) == 2  # no --out
    assert main(["ask", idx, "--questions", str(tmp_path / "missing.jsonl"), "--out", str(out_path)]) == 2
    assert "error" in capsys.readouterr().err


def test_k_has_one_home(dense_index, capsys):
    """`--set k=5`, `k=5` after the query and `-k 5` all return 5 neighbours; a conflict is an error."""
    idx, q = str(dense_index.path), "granite lighthouse fishing village"
    for argv in (["--set", "k=5"], ["-k", "5"]):
        assert main(["search", idx, q, "--json", *argv]) == 0
        rec = json.loads(capsys.readouterr().out)
        assert len(rec["neighbours"]) == 5 and rec["budgets"]["k"] == 5
    assert main(["search", idx, q, "k=5", "--json", "--set", "medium=off", "--set", "expensive=off"]) == 0
    assert len(json.loads(capsys.readouterr().out)["neighbours"]) == 5
    assert main(["search", idx, q, "-k", "3", "--set", "k=5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "-k 3 contradicts k=5" in err and "\n" not in err


def test_ask_json_round_trips_from_the_typed_result(dense_index, encoder):
    from pipelines.results import Neighbour, SearchResult
    from pipelines.retrievers import Retriever

    cascade = Cascade(dense_index, CascadeConfig(), encoder=encoder)
    assert isinstance(cascade, Retriever)  # the one protocol
    res = cascade.search(QUESTION, k=2, hops=2)
    assert isinstance(res, SearchResult)
    rec = json.loads(res.to_json("q1", ask=True))
    assert rec == res.ask_dict("q1")
    assert list(rec) == [
        "id", "question", "answer", "neighbours", "latency_ms", "truncated", "hops", "budgets", "medium_mode",
    ]  # fmt: skip
    assert rec["id"] == "q1" and rec["question"] == QUESTION and rec["answer"] is None
    assert rec["hops"] == len(res.hops) and rec["budgets"]["k"] == 2
    assert [Neighbour.from_dict(n) for n in rec["neighbours"]] == list(res.neighbours)
    search = json.loads(res.to_json())
    assert search["query"] == QUESTION and "id" not in search and "answer" not in search
    from pipelines.results import Answer, Citation, HopAnswer

    hop = HopAnswer(1, QUESTION, "Lisbon", (1,), 12.5)
    answer = Answer("Lisbon", False, (Citation(1, 7, 30, 36),), "constrained", "test", 12.5, (hop,))
    answered = res.with_answer(answer)
    rec = json.loads(answered.to_json(None, ask=True))["answer"]
    assert rec["text"] == "Lisbon" and rec["citations"] == [
        {"rank": 1, "chunk": 7, "char_start": 30, "char_end": 36}
    ]
    assert rec["hops"][0]["evidence"] == [1] and rec["abstained"] is False
    assert res.answer is None  # the original is unchanged


def test_table_latency_and_evidence_derive_from_the_one_stage_list(dense_index, encoder, capsys):
    """Adding a stage is one StageSpec: the latency keys, each neighbour's evidence and the table's
    columns all follow STAGES (and a changed list changes all three)."""
    import io

    from pipelines.results import STAGES, StageSpec, build_neighbours, latency_ms
    from pipelines.search_cli import print_table

    res = Cascade(dense_index, CascadeConfig(), encoder=encoder).search("Blue Falcon project leader", k=2)
    top_level = [s.name for s in STAGES if s.part_of is None]
    assert list(res.latency_ms) == [*top_level, "total"]
    assert list(res.neighbours[0].stages) == [s.name for s in STAGES if s.ranks]
    out = io.StringIO()
    print_table(res, out)
    header = out.getvalue().splitlines()[0]
    assert (
        header
        == "| # | hop | doc | tokens | chars | "
        + " | ".join(s.name for s in STAGES if s.column and s.ranks)
        + " | text |"
    )

    # a stage list with the expanded list shown and query encoding dropped from the latency
    changed = tuple(
        StageSpec(s.name, s.part_of, s.ranks, column=True) for s in STAGES if s.name != "query_encode"
    )
    out = io.StringIO()
    print_table(res, out, changed)
    assert "| expanded |" in out.getvalue().splitlines()[0]
    assert list(latency_ms(res.hops, 1.0, changed)) == ["cheap", "medium", "expensive", "total"]
    again = build_neighbours(dense_index, res.hops, changed)
    assert [n.chunk for n in again] == [n.chunk for n in res.neighbours]
    assert list(again[0].stages) == [s.name for s in changed if s.ranks]
