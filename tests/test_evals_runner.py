"""Scoring, reports, the runner (with an in-memory index, then the real one) and CLI errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from evals import report, scoring
from evals.niah import NiahConfig, parse_size, run_niah
from evals.retrievers import IndexRetriever, check_result, make_retriever
from pipelines.cli import main as cli_main
from pipelines.retrievers import Retriever

PNG = b"\x89PNG\r\n\x1a\n"


class FakeIndex:
    """Chunks of `m` characters per document; BM25 = count of query words in the neighbour text."""

    def __init__(self, docs: list[tuple[str, str]], m: int = 200):
        self.docs, self.m = docs, m
        self.chunks = [(d, s) for d, (_, t) in enumerate(docs) for s in range(0, len(t), m)]
        self.num_chunks, self.num_docs = len(self.chunks), len(docs)
        self.num_tokens = sum(len(t) for _, t in docs) // 4
        self.has_dense = False

    def chunk_doc(self, ids):
        return np.array([self.chunks[i][0] for i in ids], dtype=np.int64)

    def chunk_text(self, ids):
        return [self.docs[self.chunks[i][0]][1][self.chunks[i][1] : self.chunks[i][1] + self.m] for i in ids]

    def neighbour_text(self, ids):
        return [
            self.docs[self.chunks[i][0]][1][self.chunks[i][1] : self.chunks[i][1] + 2 * self.m] for i in ids
        ]

    def provenance(self, ids):
        out = []
        for i in ids:
            d, s = self.chunks[int(i)]
            out.append(
                {
                    "doc_id": self.docs[d][0],
                    "doc_index": d,
                    "source": "haystack.jsonl",
                    "line": d + 1,
                    "token_start": s // 4,
                    "char_start": s,
                    "char_end": min(s + self.m, len(self.docs[d][1])),
                }
            )
        return out

    def search_bm25(self, query, k=100):
        words = set(re.findall(r"[\w-]+", query.lower())) - {"the", "what", "is", "of", "for", "in"}
        texts = self.neighbour_text(range(self.num_chunks))
        scores = np.array([sum(w in t.lower() for w in words) for t in texts], dtype=np.float32)
        order = np.argsort(-scores, kind="stable")[:k]
        return order.astype(np.int64), scores[order]

    def search_static(self, query, k=100):
        ids = np.arange(min(k, self.num_chunks), dtype=np.int64)
        return ids, np.zeros(len(ids), np.float32)


class FakeBackend:
    def build(self, corpus, out, overrides, tokenizer, quiet):
        Path(out).mkdir(parents=True)
        (Path(out) / "index.json").write_text(json.dumps({"corpus": str(corpus)}))

    def open(self, path):
        corpus = json.loads((Path(path) / "index.json").read_text())["corpus"]
        return FakeIndex(
            [(r["id"], r["text"]) for r in map(json.loads, Path(corpus).read_text().splitlines())]
        )


def test_scoring_on_constructed_cases():
    needle = "One of the special magic numbers for calm-otter is: 1234567."
    docs = [("a", "x " * 150 + needle + " y" * 300), ("b", "z " * 400)]
    idx = FakeIndex(docs, m=100)
    loc = scoring.NeedleLocator(idx).locate(0, "a", 300, needle)
    assert loc["method"] == "exact" and loc["gold_chunks"] == [
        2,
        3,
    ]  # chunk 3 holds it; chunk 2 + continuation too
    assert not loc["straddles"]
    across = scoring.NeedleLocator(idx).locate(0, "a", 270, "x " * 15 + needle)
    assert across["straddles"] and across["gold_chunks"] == [2]
    # cut before its key: the next chunk's neighbour holds the answer span `calm-otter is: 1234567.`
    for pad, gold in ((290, [2, 3]), (262, [2])):  # key after / across the boundary at 300
        at = FakeIndex([("a", "x" * pad + needle + " y" * 300)], m=100)
        loc = scoring.NeedleLocator(at).locate(0, "a", pad, needle, "calm-otter is: 1234567.")
        assert loc["straddles"] and loc["whole_chunks"] == [2] and loc["gold_chunks"] == gold
    assert scoring.needle_in_text("a  b\nc", "xx a b c yy")
    assert not scoring.needle_in_text("a b c d", "a b c")
    assert scoring.answer_recall(None, ["x"]) is None
    assert scoring.answer_recall("The Values are 12 and ABC", ["abc", "12", "99"]) == pytest.approx(2 / 3)
    assert scoring.first_rank({5}, [3, 5, 5]) == 2 and scoring.first_rank({7}, [1]) is None  # 1-based
    # the locator maps documents by id when the index dropped one
    idx2 = FakeIndex(docs[1:] + docs[:1], m=100)
    assert scoring.NeedleLocator(idx2).locate(0, "a", 300, needle)["gold_chunks"] == [10, 11]


def _sample(trial, found, stages, bucket=0, tokens=1000, n=2):
    nds = [
        {"found": f, "found_by_stage": s, "depth_bucket": bucket, "gold_chunks": [1], "straddles": False}
        for f, s in zip(found, stages, strict=True)
    ]
    return {
        "cell": {"haystack": "h", "task": "single", "tokens": tokens, "needles": n, "trial": trial},
        "needles": nds,
        "found": all(found),
        "context_tokens": tokens,
        "k": 10,
        "answer_recall": None,
        "latency_ms": {"bm25": 1.0, "total": 2.0},
    }


def test_summarize_rows_and_reports(tmp_path):
    samples = [
        _sample(0, [True], [{"bm25": True}]),
        _sample(0, [True], [{"bm25": False}], bucket=1),
        _sample(1, [False], [{"bm25": True}]),
        _sample(1, [True], [{"bm25": True}], bucket=1),
    ]
    (row,) = scoring.summarize(samples)
    assert row["retrieval_recall"] == 0.75 and row["recall_by_stage"] == {"bm25": 0.75}
    assert row["all_found_rate"] == 0.5 and row["sample_all_found_rate"] == 0.75
    assert row["recall_by_depth"] == {"0": 0.5, "1": 1.0}
    assert row["answer_recall"] is None and row["latency_ms_p50"] == 2.0
    table = report.markdown_table([row])
    assert "| h | single | 1K |" in table and "75.0%" in table
    paths = report.heatmaps([row], tmp_path, depths=2) + [report.recall_vs_tokens([row], tmp_path)]
    for p in paths:
        assert p.read_bytes()[:8] == PNG
    assert report.fmt_tokens(128_000) == "128K" and report.fmt_tokens(1_500_000) == "1.5M"


def test_parse_size():
    assert parse_size("128K") == 128_000 and parse_size("1M") == 1_000_000 and parse_size("1.5m") == 1_500_000
    assert parse_size("2e6") == 2_000_000 and parse_size("1B") == 10**9
    with pytest.raises(ValueError, match="bad size"):
        parse_size("12Q")


def _no_latency(rows):
    return [{k: v for k, v in r.items() if not k.startswith("latency")} for r in rows]


@pytest.mark.slow
def test_runner_writes_everything_and_resumes(tmp_path, capsys):
    cfg = NiahConfig(
        reader="none",
        haystacks=("needles", "noise"),
        tokens=(20_000, 40_000),
        needles=(4,),
        tasks=("single", "multihop"),
        depths=4,
        trials=1,
        chars_per_token=4.0,
        k=5,
    )
    out = tmp_path / "run"
    res = run_niah(cfg, out, quiet=True, backend=FakeBackend())
    assert {"config", "run", "rows", "cells"} <= set(res)
    assert res["run"]["git_hash"] and res["run"]["versions"]["numpy"]
    assert len(res["rows"]) == 8
    row = res["rows"][0]
    for key in ("retrieval_recall", "recall_by_stage", "all_found_rate", "answer_recall", "latency_ms_p50"):
        assert key in row
    assert row["answer_recall"] is None
    noise_single = [r for r in res["rows"] if r["haystack"] == "noise" and r["task"] == "single"]
    assert all(r["retrieval_recall"] == 1.0 for r in noise_single)  # unique keys in pure noise: trivial
    hop = [r for r in res["rows"] if r["haystack"] == "noise" and r["task"] == "multihop"]
    assert all(r["sample_all_found_rate"] < 1.0 for r in hop)  # without a reader nothing names the next link
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 * 2 * (4 + 4)
    s = samples[0]
    assert s["context_tokens"] > 0 and s["retrieved"] and "stage_ranks" in s["retrieved"][0]
    # each sample carries the typed result, as `retro ask --json` prints it
    typed = s["search"]
    assert typed["question"] == s["question"] and len(typed["neighbours"]) == 5 and typed["answer"] is None
    assert [n["chunk"] for n in typed["neighbours"]] == [r["id"] for r in s["retrieved"]]
    n0 = typed["neighbours"][0]
    assert {"rank", "chunk", "hop", "text", "doc_id", "doc_index", "char_start", "stages"} <= set(n0)
    assert set(n0["stages"]) == {"bm25", "static"} and set(typed["latency_ms"]) == {"bm25", "static", "total"}
    hop_sample = next(x for x in samples if x["task"] == "multihop")
    assert hop_sample["hop_queries"] == [hop_sample["question"]] and hop_sample["search"]["hops"] == 1
    assert {"depth", "found", "gold_chunks", "stage_ranks", "text"} <= set(s["needles"][0])
    assert (out / "config.yaml").exists() and (out / "recall_vs_tokens.png").read_bytes()[:8] == PNG
    assert (out / "heatmap_needles_single_n4.png").read_bytes()[:8] == PNG
    assert "| needles | single | 20K |" in capsys.readouterr().out

    # --resume: nothing left to ask, nothing rebuilt, same rows
    class NoBuild(FakeBackend):
        def build(self, *a):
            raise AssertionError("resume must not rebuild")

    with open(out / "samples.jsonl", "a") as f:
        f.write('{"key": "cut sho')  # an interrupted last line is dropped, not fatal
    res2 = run_niah(cfg, out, resume=True, quiet=True, backend=NoBuild())
    assert res2["rows"] == res["rows"]
    # resume after losing some samples asks only those again
    lines = (out / "samples.jsonl").read_text().splitlines()
    (out / "samples.jsonl").write_text("\n".join(lines[:-3]) + "\n")
    res3 = run_niah(cfg, out, resume=True, quiet=True, backend=FakeBackend())
    assert len((out / "samples.jsonl").read_text().splitlines()) == len(samples)
    assert _no_latency(res3["rows"]) == _no_latency(res["rows"])
    with pytest.raises(ValueError, match="differs in k"):
        run_niah(NiahConfig(**{**cfg.__dict__, "k": 3}), out, resume=True, quiet=True, backend=FakeBackend())


def test_several_retrievers_share_one_index(tmp_path, capsys):
    cfg = NiahConfig(
        reader="none",
        haystacks=("needles",),
        tokens=(20_000,),
        needles=(6,),
        depths=3,
        trials=1,
        chars_per_token=4.0,
        k=5,
        retriever="bm25+cheap",
        max_samples=4,
    )
    builds = []

    class Counting(FakeBackend):
        def build(self, *a):
            builds.append(a)
            super().build(*a)

    out = tmp_path / "two"
    res = run_niah(cfg, out, quiet=True, backend=Counting())
    assert len(builds) == 1  # one index, asked by both retrievers
    assert [r["retriever"] for r in res["rows"]] == ["bm25", "cheap"]
    assert all(r["samples"] == 4 for r in res["rows"])  # max_samples: the first 4 questions
    assert set(res["rows"][0]["recall_by_stage"]) == {"bm25"}
    assert set(res["rows"][1]["recall_by_stage"]) == {"bm25", "static"}
    keys = [json.loads(x)["key"] for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 8
    assert (out / "heatmap_needles_single_n6_bm25.png").read_bytes()[:8] == PNG
    assert "| needles | single | bm25 | 20K |" in capsys.readouterr().out
    res2 = run_niah(cfg, out, resume=True, quiet=True, backend=Counting())
    assert len(builds) == 1 and _no_latency(res2["rows"]) == _no_latency(res["rows"])
    with pytest.raises(ValueError, match="repeated"):
        NiahConfig(retriever="bm25+bm25").check()


def test_dense_retriever_ranks_by_cosine():
    from evals.retrievers import DenseRetriever

    class BagOfWords:  # stands in for the sentence-transformers model
        def encode(self, texts, **kw):
            out = np.zeros((len(texts), 64), np.float32)
            for i, t in enumerate(texts):
                for w in re.findall(r"[a-z]+", t.lower()):
                    out[i, hash(w) % 64] += 1
            return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    idx = FakeIndex([("a", "apple pear " * 50 + "zebra lion tiger " * 40)], m=100)
    r = DenseRetriever(idx, depth=3, model=BagOfWords())
    typed = r.search("lion tiger zebra", 2)
    assert [n.chunk for n in typed.neighbours] == typed.hops[0].final and list(typed.latency_ms) == [
        "dense",
        "total",
    ]
    res = check_result(typed, 2)
    assert len(res["final"]) == 2 and len(res["stages"]["dense"]) == 3
    assert all("lion" in t for t in idx.chunk_text(res["final"]))


def test_retriever_protocol_and_factory():
    idx = FakeIndex([("a", "hello world " * 100)])
    r = make_retriever("cheap", idx, depth=5)
    assert isinstance(r, IndexRetriever)
    assert isinstance(r, Retriever)  # the one protocol: search(query, k, hops=1) -> SearchResult
    res = check_result(r.search("hello", 3), 3)
    assert (
        len(res["final"]) == 3 and set(res["stages"]) == {"bm25", "static"} and "total" in res["latency_ms"]
    )
    with pytest.raises(ValueError, match="at most 1 hop"):
        r.search("hello", 3, hops=2)
    with pytest.raises(ValueError, match="unknown retriever"):
        make_retriever("nope", idx)
    with pytest.raises(ValueError, match="cannot load"):
        make_retriever("no_such_module_xyz:make", idx)
    with pytest.raises(ValueError, match="not a SearchResult"):
        check_result({"final": [1]}, 3)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eval", "niah", "--haystack", "bogus", "--out", "X"], "unknown haystack"),
        (["eval", "niah", "--tokens", "12Q", "--out", "X"], "bad size"),
        (["eval", "niah", "--haystack", "text:/no/such/folder", "--out", "X"], "no such file or folder"),
        (["eval", "niah", "--task", "riddles", "--out", "X"], "unknown task"),
        (["eval", "niah", "--needles", "0", "--out", "X"], "needles"),
        (["eval", "niah", "--tokens", "1M"], "--out is required"),
        (["eval", "niah", "--tokens", "1M,2M", "--index", "/tmp", "--out", "X"], "exactly one haystack"),
    ],
)
def test_cli_bad_input_is_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("retro: error:") and message in err and "\n" not in err
    assert not (tmp_path / "X").exists()


@pytest.mark.slow
def test_end_to_end_real_index(tmp_path):
    """50K tokens, 8 needles: haystack -> index.build -> BM25 + static retrieval -> the shipped reader
    answers from the neighbours -> scores, answer recall beside retrieval recall, two-panel heatmap."""
    pytest.importorskip("index.build")
    cfg = NiahConfig(haystacks=("noise",), tokens=(50_000,), needles=(8,), depths=4, trials=1, k=10)
    res = run_niah(cfg, tmp_path / "e2e", quiet=True)
    (row,) = res["rows"]
    assert 45_000 <= row["context_tokens"] <= 56_000  # calibrated sizes land near the target
    assert row["unfindable_needles"] == 0  # every needle sentence survives tokenisation in some neighbour
    assert row["retrieval_recall"] >= 0.75  # unique keys over pure noise
    assert set(row["recall_by_stage"]) == {"bm25", "static"}
    samples = [json.loads(x) for x in (tmp_path / "e2e" / "samples.jsonl").read_text().splitlines()]
    assert all(s["context_tokens"] == row["context_tokens"] for s in samples)
    assert (tmp_path / "e2e" / "heatmap_noise_single_n8.png").read_bytes()[:8] == PNG
    assert all(s["answer_recall"] in (0.0, 1.0) and s["abstained"] in (True, False) for s in samples)
    assert row["answer_recall"] is not None and set(row["answer_by_depth"]) <= set(row["recall_by_depth"])
    for s in samples:  # an answer is cited where it occurs in the evidence, or the reader abstained
        a = s["answer"]
        assert a["abstained"] == (a["text"] is None)
        texts = {n["rank"]: n["text"] for n in s["search"]["neighbours"]}
        for c in a["citations"]:
            assert (
                a["text"] in texts[c["rank"]][c["char_start"] : c["char_end"]]
                or texts[c["rank"]][c["char_start"] : c["char_end"]] in a["text"]
            )


def test_eval_group_is_made_in_one_place():
    """`eval lm` (retro/) and `eval niah` (evals/) join the one `eval` group pipelines.cli makes."""
    from evals import cli as evals_cli
    from pipelines.cli import build_parser
    from retro import cli as retro_cli

    parser = build_parser()
    assert parser.parse_args(["eval", "lm", "RUN", "--data", "NB", "-k", "3"]).func is retro_cli.cmd_eval_lm
    assert parser.parse_args(["eval", "niah", "-k", "5"]).k == 5
    assert parser.parse_args(["eval", "niah"]).func is evals_cli.cmd_niah
    assert parser.parse_args(["demo"]).func is evals_cli.cmd_demo


def test_cli_repeated_retriever_and_max_samples():
    import argparse

    from evals import cli as evals_cli

    parser = argparse.ArgumentParser()
    evals_cli.register(parser.add_subparsers(dest="command"))
    argv = ["eval", "niah", "--retriever", "bm25", "--retriever", "cascade,n2=16", "--max-samples", "5"]
    cfg = evals_cli._config(parser.parse_args(argv))
    assert cfg.retriever == "bm25+cascade,n2=16" and cfg.retrievers() == ("bm25", "cascade,n2=16")
    assert cfg.max_samples == 5
    assert evals_cli._config(parser.parse_args(["eval", "niah"])).retriever == "cheap"


def test_multihop_stage_ranks_are_per_round():
    from evals.needles import Sample
    from evals.niah import _score

    sample = Sample(
        "q0", "multihop", "What is the value of VAR B?", ("7",), ("n0", "n1"), {"chain": ["A", "B"]}
    )
    needles = {
        nid: {"text": t, "doc_id": "a", "offset": 0, "depth": 0.5, "depth_bucket": 0, "straddle": False}
        for nid, t in (("n0", "VAR A = 7."), ("n1", "VAR B = VAR A."))
    }
    located = {
        "n0": {"gold_chunks": [50], "method": "exact", "straddles": False},
        "n1": {"gold_chunks": [10], "method": "exact", "straddles": False},
    }
    rounds = [{"stages": {"bm25": [10, 1, 2]}}, {"stages": {"bm25": [50, 3, 4]}}]
    res = {"final": [10, 1, 50, 3], "stages": {"bm25": [10, 1, 2, 50, 3, 4]}}
    scored, retrieved = _score(res, sample, needles, located, 2, rounds)
    assert [nd["stage_ranks"]["bm25"] for nd in scored] == [1, 1]  # round 2's own rank, not 4
    assert [nd["final_rank"] for nd in scored] == [3, 1]  # 1-based, as `retro ask` ranks neighbours
    assert [r["rank"] for r in retrieved] == [1, 2, 3, 4] and retrieved[2]["stage_ranks"]["bm25"] == 4
    assert all(nd["found"] for nd in scored)


def test_reused_index_gets_the_haystack_it_was_built_over(tmp_path):
    """--index: chars/token comes from the index's tokenizer.model, so the regenerated haystack matches."""

    class Calibrating(FakeBackend):
        def tokenizer(self, texts, path):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text("fake model")
            return Path(path)

        def chars_per_token(self, tokenizer, texts):
            assert Path(tokenizer).read_text() == "fake model"
            return 3.3

        def build(self, corpus, out, overrides, tokenizer, quiet):
            super().build(corpus, out, overrides, tokenizer, quiet)
            (Path(out) / "tokenizer.model").write_text(Path(tokenizer).read_text())

    cfg = NiahConfig(
        haystacks=("noise",), tokens=(20_000,), needles=(3,), depths=3, trials=1, k=5, reader="none"
    )
    first = run_niah(cfg, tmp_path / "a", quiet=True, backend=Calibrating())
    index = tmp_path / "a" / "cells" / first["cells"][0]["cell"] / "index"
    again = run_niah(
        NiahConfig(**{**cfg.__dict__, "index": str(index)}), tmp_path / "b", quiet=True, backend=Calibrating()
    )
    assert again["cells"][0]["sha256"] == first["cells"][0]["sha256"]
    assert _no_latency(again["rows"]) == _no_latency(first["rows"])
